"""Wall time of recording the same handful of atlas runs on a local Ray of 1 and of 2 workers (one CPU each).

    python benchmarks/bench_ray_record.py              # 6 small runs, 3 rounds of 1 against 2 workers; a few minutes
    python benchmarks/bench_ray_record.py --rounds 1 --workers 1 2 4
    python benchmarks/bench_ray_record.py --smoke      # 2 tiny runs, 1 round (tests)

Each round records the same runs into an empty folder with `atlas.record(backend="ray", threads=1)` on a fresh
local Ray started with `num_cpus=WORKERS` (so at most that many one-thread tasks at once). The clock runs from
`ray.init` to the last run written, so starting Ray and its workers (importing torch, loading the model) is counted,
as it is in a real recording. The disk cache of frozen features is off, so every round does the same work.
Results: benchmarks/results/bench_ray_record.json (speed-up: 1 worker's median wall time over each one's). The
records of every setup are checked to be the same numbers (timings aside).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _results

BASE = dict(max_train_samples=128, max_eval_samples=64, num_train_epochs=1, freeze_layers=5, evals_per_epoch=2)
RUNS = [dict(learning_rate=lr, seed=seed) for lr in (1e-4, 5e-4, 2e-3) for seed in (42, 1)]
ASIDE = ("load_s", "cache_s", "train_s", "finish_s", "features_from")  # how long, and where the features came from


def one_recording(workers: int, planned: list) -> tuple[dict, list[dict]]:
    import ray

    from lmtune_widgets import atlas

    folder = Path(tempfile.mkdtemp(prefix="lmtune-bench-ray-"))
    atlas.grid = lambda: planned  # the bench is the driver: only it plans (the tasks get their config)
    try:
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 object_store_memory=100 * 1024 ** 2)
        try:
            count = atlas.record(folder=folder, backend="ray", threads=1, quiet=True)
        finally:
            ray.shutdown()
        wall = time.perf_counter() - start
        records = [json.loads(line) for path in folder.glob("*.jsonl") for line in path.read_text().splitlines()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if count != len(planned):
        raise SystemExit(f"{workers} worker(s) recorded {count} of {len(planned)} runs")
    run_s = [sum(r["meta"][k] for k in ("load_s", "cache_s", "train_s", "finish_s")) for r in records]
    return {"wall": wall, "run": statistics.median(run_s)}, records


def numbers_only(records: list[dict]) -> list[str]:
    out = []
    for record in records:
        record = {**record, "meta": {k: v for k, v in record["meta"].items() if k not in ASIDE},
                  "history": {k: v for k, v in record["history"].items() if k != "elapsed_s"}}
        out.append(json.dumps(record, sort_keys=True))
    return sorted(out)


def main() -> None:
    parser = _results.parser(__doc__)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="Ray workers (CPUs) of each setup")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base, runs = BASE, RUNS
    if args.smoke:  # the same path: a local Ray, one task per run, the driver writing
        base, runs, args.workers, args.rounds = _results.SMOKE, RUNS[:2], [1, 2], 1
    os.environ["LMTUNE_FEATURE_CACHE"] = "0"  # before Ray starts: its workers inherit it
    from lmtune_widgets import FineTuneConfig

    planned = [("bench", FineTuneConfig(**base, **run)) for run in runs]
    before = _results.load_average()
    print(f"{len(planned)} runs of {base} on {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}")
    results: dict[int, list[dict]] = {workers: [] for workers in args.workers}
    records: dict[int, list[str]] = {}
    for round_ in range(args.rounds):  # interleaved, so a busy spell on the machine hits every setting
        for workers in args.workers:
            found, written = one_recording(workers, planned)
            results[workers].append(found)
            records.setdefault(workers, numbers_only(written))
            print(f"round {round_ + 1}: {workers} Ray worker(s): {found['wall']:.1f} s (median run "
                  f"{found['run']:.1f} s; load average {os.getloadavg()[0]:.1f})", flush=True)
    identical = all(found == records[args.workers[0]] for found in records.values())
    one = statistics.median(r["wall"] for r in results[args.workers[0]])
    medians, ratios = {}, {}
    print(f"\n| Ray workers | wall time (median) | speed-up over {args.workers[0]} | median run |")
    print("| --- | --- | --- | --- |")
    for workers, rounds in results.items():
        wall = statistics.median(r["wall"] for r in rounds)
        medians[str(workers)] = {"wall_s": wall, "run_s": statistics.median(r["run"] for r in rounds)}
        ratios[f"speedup_{workers}"] = one / wall
        each = ", ".join(f"{r['wall']:.1f}" for r in rounds)
        print(f"| {workers} | {wall:.1f} s ({each}) | {one / wall:.2f}x "
              f"| {medians[str(workers)]['run_s']:.1f} s |")
    print(f"records of every setup the same numbers: {identical}")
    if not identical:
        raise SystemExit("the setups recorded different numbers")
    _results.write("bench_ray_record", args, medians, ratios, before,
                   rounds={str(w): [r["wall"] for r in rounds] for w, rounds in results.items()},
                   identical_records=identical,
                   settings={"base": base, "runs": len(runs), "rounds": args.rounds, "workers": args.workers,
                             "threads": 1})


if __name__ == "__main__":
    main()
