"""The whole default CLI process, with the frozen features on disk (warm) and without (cold), side by side.

    python benchmarks/bench_process.py              # 3 rounds of cold + warm (2 minutes a round on 2 free cores,
                                                    # 10 on 2 cores loaded 3 to 5x)
    python benchmarks/bench_process.py --rounds 5
    python benchmarks/bench_process.py --parts      # training speed-ups tried, piece by piece (compiling: minutes)
    python benchmarks/bench_process.py --smoke      # 1 round of a tiny run (tests)

Each round runs `python -m lmtune_widgets run --quiet --out RUN.json` twice, in fresh processes, one after
the other: first with an empty feature cache ($LMTUNE_CACHE pointing at a new temporary folder: cold), then
with the cache that first process left (warm). For each it prints the process's wall time (interpreter
start-up included) and, from the saved run, training + evaluation (`train_s`: the loop with its evaluation
points), scoring the kept model (`finish_s`) and getting the frozen features (`cache_s`: computed or read).
The two runs of a round must agree on every number of their histories: the cache must not change a thing.
The machine is shared and noisy: the figures to quote are the medians and the ratio of medians, with the load.
Results: benchmarks/results/bench_process.json (the --parts figures are printed only).

`--parts` measures candidate speed-ups of training on one piece of a step each, in one process, alternating
with the code as it is, and says whether each gives bit-identical numbers (only such a change may land:
recorded runs must reproduce to 1e-6):
  adamw_foreach   AdamW(foreach=True): multi-tensor kernels instead of a loop over the tensors;
  adamw_fused     AdamW(fused=True): one fused kernel per tensor;
  layer_compiled  torch.compile (inductor, dynamic shapes) of one trainable layer, forward + backward.
The AdamW candidates run clip + update of the default run's 3.7 M trainable weights (20 steps of fixed random
gradients); the layer runs on a batch of 16 x 26 tokens in train mode (dropout on, as in training).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _results

ENV = dict(_results.ENV)
ENV.pop("LMTUNE_FEATURE_CACHE", None)


def cli(cache: Path, out: Path, config: dict) -> dict:
    """One CLI process (the default run, or `config`); its wall time and the timings its run recorded."""
    options = [x for k, v in config.items() for x in (f"--{k}", str(v))]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lmtune_widgets", "run", "--quiet", "--out", str(out), *options],
                          capture_output=True, text=True, env={**ENV, "LMTUNE_CACHE": str(cache)}, cwd=_results.ROOT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    run = json.loads(out.read_text())
    meta = run["meta"]
    return {"process_s": seconds, "train_s": meta["train_s"], "finish_s": meta["finish_s"],
            "cache_s": meta["cache_s"], "features_from": meta.get("features_from"),
            "numbers": ([{k: v for k, v in p.items() if k != "elapsed_s"} for p in run["history"]],
                        run["train_losses"], run["kept"].get("validation_loss"))}


PARTS = r"""
import copy, json, statistics, time
import torch
from transformers.utils import logging; logging.set_verbosity_error()
from lmtune_widgets import FineTuneConfig
from lmtune_widgets.models import freeze_bottom, load_model, transformer_layers
from lmtune_widgets.training import optimizer_groups
cfg = FineTuneConfig()
torch.manual_seed(0)
model, _ = load_model(cfg.model_name, 2, cfg.dropout)
freeze_bottom(model, cfg.freeze_layers)

def update(options):
    m = copy.deepcopy(model)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(optimizer_groups(m, cfg.weight_decay), lr=cfg.learning_rate, **options)
    g, seconds = torch.Generator().manual_seed(1), 0.0
    for _ in range(20):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 0.1
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t
    return seconds / 20 * 1000, [p.detach().clone() for p in params]

layer = transformer_layers(model)[-1].train()
compiled = torch.compile(copy.deepcopy(layer), dynamic=True)
x = torch.randn(16, 26, 384, generator=torch.Generator().manual_seed(2))

def layer_step(module):
    for p in module.parameters():
        p.grad = None
    torch.manual_seed(3)  # the same dropout masks
    t = time.perf_counter()
    out = module(x.clone().requires_grad_())
    out = out[0] if isinstance(out, tuple) else out
    out.square().mean().backward()
    return (time.perf_counter() - t) * 1000, [out.detach()] + [p.grad.clone() for p in module.parameters()]

t = time.perf_counter(); layer_step(compiled); compile_s = time.perf_counter() - t  # the first call compiles
candidates = {"adamw_as_is": lambda: update({}), "adamw_foreach": lambda: update({"foreach": True}),
              "adamw_fused": lambda: update({"fused": True}), "layer_eager": lambda: layer_step(layer),
              "layer_compiled": lambda: layer_step(compiled)}
times, results = {}, {}
for _ in range(ROUNDS):
    for name, run in candidates.items():
        ms, tensors = run()
        times.setdefault(name, []).append(ms)
        results.setdefault(name, tensors)
same = lambda a, b: all(torch.equal(x, y) for x, y in zip(results[a], results[b]))
diff = lambda a, b: max((x - y).abs().max().item() for x, y in zip(results[a], results[b]))
print(json.dumps({"compile_s": compile_s, "ms": {k: statistics.median(v) for k, v in times.items()},
                  "all_ms": times,
                  "same": {"adamw_foreach": same("adamw_foreach", "adamw_as_is"), "adamw_fused": same("adamw_fused", "adamw_as_is"),
                           "layer_compiled": same("layer_compiled", "layer_eager")},
                  "max_diff": {"adamw_foreach": diff("adamw_foreach", "adamw_as_is"), "adamw_fused": diff("adamw_fused", "adamw_as_is"),
                               "layer_compiled": diff("layer_compiled", "layer_eager")}}))
"""


def parts(rounds: int) -> None:
    before = load_average()
    done = subprocess.run([sys.executable, "-c", PARTS.replace("ROUNDS", str(rounds))], capture_output=True,
                          text=True, env=ENV)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"one step's pieces, medians over {rounds} alternating rounds (load average before/after: {before} / "
          f"{load_average()})")
    for name, ms in r["ms"].items():
        base = r["ms"]["adamw_as_is" if name.startswith("adamw") else "layer_eager"]
        print(f"  {name:15s} {ms:8.1f} ms  {ms / base:5.2f}x   bit-identical: {r['same'].get(name, True)}  "
              f"max difference {r['max_diff'].get(name, 0.0):.1e}   (all: {', '.join(f'{v:.0f}' for v in r['all_ms'][name])})")
    print(f"  compiling the layer (first call): {r['compile_s']:.1f} s")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    parser = _results.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", action="store_true", help="measure the variants on one step's pieces")
    args = parser.parse_args()
    if args.parts:
        return parts(max(args.rounds, 5))
    config = _results.SMOKE if args.smoke else {}
    if args.smoke:
        args.rounds = 1
    before = _results.load_average()
    rows: dict[str, dict[str, list]] = {"cold": {}, "warm": {}}
    loads, same = [load_average()], True
    with tempfile.TemporaryDirectory(prefix="lmtune-bench-") as tmp:
        for round_ in range(args.rounds):
            cache = Path(tmp) / f"cache{round_}"  # empty: this round's cold run computes and writes the features
            cold = cli(cache, Path(tmp) / "cold.json", config)
            warm = cli(cache, Path(tmp) / "warm.json", config)
            assert (cold["features_from"], warm["features_from"]) == ("computed", "disk"), (cold, warm)
            identical = cold.pop("numbers") == warm.pop("numbers")
            same &= identical
            loads.append(load_average())
            print(f"round {round_ + 1}: cold and warm histories identical: {identical}", flush=True)
            for name, measured in (("cold", cold), ("warm", warm)):
                print(f"round {round_ + 1} {name}: " + ", ".join(
                    f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in measured.items()), flush=True)
                for k, v in measured.items():
                    rows[name].setdefault(k, []).append(v)
    print(f"\nmedians over {args.rounds} rounds (load average, 1/5/15 min, before and after each round: {loads})")
    print(f"  {'':12s} {'cold':>8s} {'warm':>8s} {'warm/cold':>10s}")
    medians: dict[str, dict[str, float]] = {"cold": {}, "warm": {}}
    for k in ("process_s", "cache_s", "train_s", "finish_s"):
        cold, warm = _results.median(rows["cold"][k]), _results.median(rows["warm"][k])
        medians["cold"][k], medians["warm"][k] = cold, warm
        print(f"  {k:12s} {cold:8.2f} {warm:8.2f} {warm / cold:9.2f}x   "
              f"(cold: {', '.join(f'{v:.1f}' for v in rows['cold'][k])}; warm: {', '.join(f'{v:.1f}' for v in rows['warm'][k])})")
    print(f"  histories of cold and warm runs identical (every number but elapsed_s): {same}")
    ratios = {f"warm_over_cold_{k}": medians["warm"][k] / medians["cold"][k] for k in ("process_s", "train_s")}
    _results.write("bench_process", args, medians, ratios, before, identical_histories=same,
                   rounds={name: {k: v for k, v in row.items() if k != "features_from"} for name, row in rows.items()},
                   settings={"config": config or "defaults", "rounds": args.rounds})

if __name__ == "__main__":
    main()
