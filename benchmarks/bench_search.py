"""Wall time of one Optuna search run by 1, 2 and 4 worker processes sharing one study on PostgreSQL.

    python benchmarks/bench_search.py                 # = make benchmark-search; about 15 minutes on 2 cores
    python benchmarks/bench_search.py --setups 1x2 2x1 --rounds 1     # WORKERSxTHREADS
    python benchmarks/bench_search.py --smoke         # 2 tiny trials, 1 x 1 against 2 x 1, 1 round (tests)

Every round runs the same 8 trials (settings enqueued in advance, no pruning), split evenly between the
workers, on a throwaway PostgreSQL: only the number of processes (and torch threads in each) changes. The
clock runs from starting the workers to the last one exiting, so it includes what each extra worker costs to
start (importing torch, loading the model, computing its frozen features).
Results: benchmarks/results/bench_search.json (speed-up: the first setup's median wall time over each one's).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _results

ROOT = _results.ROOT
BASE = dict(max_train_samples=256, max_eval_samples=128, freeze_layers=4, num_train_epochs=1, evals_per_epoch=2)
TRIALS = [dict(learning_rate=lr, per_device_train_batch_size=batch, dropout=0.1, weight_decay=0.01, warmup_ratio=0.1)
          for lr in (1e-4, 5e-4, 1e-3, 2e-3) for batch in (16, 32)]
WORKER = """
import sys, optuna
from lmtune_widgets import FineTuneConfig
from lmtune_widgets.search import search
from transformers.utils import logging
logging.set_verbosity_error(); logging.disable_progress_bar()
search(FineTuneConfig(**{base}), n_trials=int(sys.argv[3]), storage=sys.argv[1], study_name=sys.argv[2],
       pruner=optuna.pruners.NopPruner())
"""


def one_search(url: str, name: str, workers: int, threads: int, base: dict = BASE, trials: list = TRIALS) -> dict:
    import optuna

    study = optuna.create_study(study_name=name, storage=url, direction="minimize")
    for params in trials:
        study.enqueue_trial(params)
    env = {**_results.ENV, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", WORKER.format(base=base), url, name,
                                   str(len(trials) // workers)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a worker failed: {err[-1500:]}")
    wall = time.perf_counter() - start
    done = optuna.load_study(study_name=name, storage=url).trials
    assert len(done) == len(trials) and all(t.state.name == "COMPLETE" for t in done)
    per_trial = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    return {"wall": wall, "trial": statistics.median(per_trial), "threads": threads}


def main() -> None:
    import optuna

    from lmtune_widgets import classroom

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = _results.parser(__doc__)
    parser.add_argument("--setups", nargs="+", default=["1x2", "1x1", "2x1", "4x1"],
                        help="WORKERSxTHREADS: worker processes, and torch threads in each")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base, trials = BASE, TRIALS
    if args.smoke:  # the same path: a server, enqueued trials, worker processes sharing the study
        base, trials, args.setups, args.rounds = _results.SMOKE, TRIALS[:2], ["1x1", "2x1"], 1
    setups = [tuple(int(n) for n in text.split("x")) for text in args.setups]
    before = _results.load_average()
    folder = Path(tempfile.mkdtemp(prefix="lmtune-bench-pg-"))
    server = classroom.start(folder, port=classroom.free_port())
    print(f"{len(trials)} trials of {base} on {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}")
    results: dict[tuple[int, int], list[dict]] = {setup: [] for setup in setups}
    try:
        for round_ in range(args.rounds):  # interleaved, so a busy spell on the machine hits every setting
            for workers, threads in setups:
                found = one_search(server.local_url, f"bench-{workers}x{threads}-{round_}", workers, threads, base,
                                   trials)
                results[workers, threads].append(found)
                print(f"round {round_ + 1}: {workers} worker(s) x {found['threads']} thread(s): {found['wall']:.1f} s "
                      f"(median trial {found['trial']:.1f} s; load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        classroom.stop(folder, mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)
    one = statistics.median(r["wall"] for r in results[setups[0]])
    medians, ratios = {}, {}
    print("\n| workers | threads each | wall time (median) | speed-up | median trial |")
    print("| --- | --- | --- | --- | --- |")
    for (workers, threads), rounds in results.items():
        wall = statistics.median(r["wall"] for r in rounds)
        each = ", ".join(f"{r['wall']:.1f}" for r in rounds)
        trial = statistics.median(r["trial"] for r in rounds)
        medians[f"{workers}x{threads}"] = {"wall_s": wall, "trial_s": trial}
        ratios[f"speedup_{workers}x{threads}"] = one / wall
        print(f"| {workers} | {rounds[0]['threads']} | {wall:.1f} s ({each}) | {one / wall:.2f}x "
              f"| {trial:.1f} s |")
    _results.write("bench_search", args, medians, ratios, before,
                   rounds={f"{w}x{t}": [r["wall"] for r in rounds] for (w, t), rounds in results.items()},
                   settings={"base": base, "trials": len(trials), "rounds": args.rounds, "setups": args.setups})

if __name__ == "__main__":
    main()
