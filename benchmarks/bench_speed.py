"""Speed and memory of the default run, the same configuration through `transformers.Trainer`, and the floor
this machine's matrix products put under the run.

    python benchmarks/bench_speed.py            # = make benchmark; 3 alternating rounds (about 5 minutes on 2 CPU cores)
    python benchmarks/bench_speed.py --rounds 1
    python benchmarks/bench_speed.py --smoke    # the same three processes on a tiny run, 1 round (tests)

Each round runs, in fresh processes and one after the other (never at the same time):
  1. the CLI (`python -m lmtune_widgets run`): whole-process wall time and peak memory (max RSS);
  2. `fine_tune` in a process: training + evaluation (`run.meta["train_s"]`), getting the frozen features
     (`cache_s`), scoring the kept model (`finish_s`), the rest of `fine_tune` (setup: model, data), time to
     the first point; then, in the same process, the floor: the floating-point operations of the run's
     training and evaluation points, counted by `torch.utils.flop_counter.FlopCounterMode` around a second,
     identical run (from the first step to the last evaluation point: matrix products and attention, the work
     a matmul floor is about), divided by the float32 matrix-product throughput measured right there
     (`bench_matmul.throughput`, 1024 x 1024, median of 20). floor seconds = FLOP / (FLOP/s);
  3. `Trainer` on the same model, data, freezing and hyperparameters (AdamW groups, linear warmup schedule,
     batch size, epochs, evaluation as often), with dynamic padding.
The machine is shared and noisy: the figures printed are medians over rounds, and ratios of medians:
Trainer / kit (training + evaluation seconds), and measured / floor. Results: benchmarks/results/bench_speed.json.
"""
from __future__ import annotations

import json

import _results

KIT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from transformers.utils import logging; logging.set_verbosity_error()
from lmtune_widgets import FineTuneConfig, fine_tune, diagnose
from lmtune_widgets.training import Callback
cfg = FineTuneConfig(**CONFIG)
t1 = time.perf_counter()
run = fine_tune(cfg, keep_model=False)
t2 = time.perf_counter()
assert run.status == "finished", run.error
meta = run.meta
found = {"import_s": t1 - t0, "fine_tune_s": t2 - t1, "cache_s": meta["cache_s"], "train_eval_s": meta["train_s"],
         "finish_s": meta["finish_s"], "setup_s": (t2 - t1) - meta["cache_s"] - meta["train_s"] - meta["finish_s"],
         "first_point_s": run.history[0]["elapsed_s"], "best_accuracy": run.best_accuracy,
         "verdict": diagnose(run).verdict, "features_from": meta.get("features_from"),
         "steps": meta["total_steps"], "points": len(run.history),
         "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

# The floor: the same run again, its operations counted from the first step to the last evaluation point.
import torch
from torch.utils import flop_counter as fc
aten = torch.ops.aten
cpu_attention = {  # CPU attention kernels FlopCounterMode has no formula for: the same count as the GPU kernels'
    aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(g, q, k, v)}

class Count(Callback):
    def __init__(self):
        self.mode = fc.FlopCounterMode(display=False, custom_mapping=cpu_attention)
    def on_train_begin(self, run):
        self.mode.__enter__()
    def on_evaluate(self, run, point):
        if point["step"] == run.meta["total_steps"]:
            self.mode.__exit__(None, None, None)

count = Count()
again = fine_tune(cfg, callbacks=[count], keep_model=False)
assert again.history == run.history or all(a["eval_loss"] == b["eval_loss"] for a, b in zip(again.history, run.history))
sys.path.insert(0, "benchmarks")
from bench_matmul import throughput
speed = throughput(*MATMUL)
found.update({"flop": count.mode.get_total_flops(), "matmul_gflops": speed["gflops_median"],
              "matmul_gflops_best": speed["gflops_best"]})
found["floor_s"] = found["flop"] / (found["matmul_gflops"] * 1e9)
print(json.dumps(found))
"""

TRAINER = r"""
import json, math, resource, time
import numpy as np, torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.utils import logging; logging.set_verbosity_error()
from lmtune_widgets import FineTuneConfig
from lmtune_widgets.data import load_splits
from lmtune_widgets.models import freeze_bottom, load_model
from lmtune_widgets.planning import schedule_steps
cfg = FineTuneConfig(**CONFIG)
splits = load_splits(cfg.task)
model, tok = load_model(cfg.model_name, len(splits.label_names), cfg.dropout, seed=cfg.seed)
freeze_bottom(model, cfg.freeze_layers)
def prep(split, n):
    split = split.select(range(min(n, len(split))))
    return split.map(lambda b: tok(b["text"], truncation=True, max_length=cfg.max_length), batched=True,
                     remove_columns=[c for c in split.column_names if c != "label"])
train, val = prep(splits.train, cfg.max_train_samples), prep(splits.validation, cfg.max_eval_samples)
steps_per_epoch, total, warmup = schedule_steps(cfg, len(train))
args = TrainingArguments(output_dir="/tmp/lmtune-bench-trainer", learning_rate=cfg.learning_rate,
    per_device_train_batch_size=cfg.per_device_train_batch_size, per_device_eval_batch_size=128,
    num_train_epochs=cfg.num_train_epochs, weight_decay=cfg.weight_decay, lr_scheduler_type=cfg.lr_scheduler_type,
    warmup_steps=warmup, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, eval_strategy="steps",
    eval_steps=max(1, steps_per_epoch // cfg.evals_per_epoch), logging_steps=max(1, steps_per_epoch // cfg.evals_per_epoch),
    save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
def accuracy(p):
    return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                  data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
t = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - t
accs = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
print(json.dumps({"train_eval_s": seconds, "best_accuracy": max(accs), "points": len(accs),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CLI = r"""
import json, resource, runpy, sys, time
t = time.perf_counter()
sys.argv = ['lmtune_widgets', 'run', '--quiet', *ARGS]
try:
    runpy.run_module('lmtune_widgets', run_name='__main__')
except SystemExit as exit_:
    if exit_.code:
        raise
print(json.dumps({'cli_s': time.perf_counter() - t, 'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def cli(config: dict) -> dict:
    import time

    args = [x for k, v in config.items() for x in (f"--{k}", str(v))]
    start = time.perf_counter()
    result = _results.child(CLI.replace("ARGS", repr(args)))
    result["process_s"] = time.perf_counter() - start  # interpreter start-up included
    return result


def main() -> None:
    parser = _results.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-trainer", action="store_true")
    args = parser.parse_args()
    config, matmul = ({}, (1024, 20)) if not args.smoke else (_results.SMOKE, (256, 10))
    if args.smoke:
        args.rounds = 1
    before = _results.load_average()
    rows: dict[str, list] = {}
    for round_ in range(args.rounds):
        measured = {f"cli_{k}": v for k, v in cli(config).items()}
        kit = KIT.replace("CONFIG", repr(config)).replace("MATMUL", repr(matmul))
        measured.update({f"kit_{k}": v for k, v in _results.child(kit).items()})
        if not args.no_trainer:
            measured.update({f"trainer_{k}": v for k, v in _results.child(TRAINER.replace("CONFIG", repr(config))).items()})
        print(f"round {round_ + 1}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in measured.items()), flush=True)
        for k, v in measured.items():
            rows.setdefault(k, []).append(v)
    medians = {}
    print("\nmedians over", args.rounds, "rounds")
    for k, values in rows.items():
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            medians[k] = _results.median(values)
            print(f"  {k:28s} {medians[k]:12.3f}   (all: {', '.join(f'{v:.2f}' for v in values)})")
        else:
            print(f"  {k:28s} {values}")
    kit_s = medians["kit_train_eval_s"]
    ratios = {"measured_over_floor": kit_s / medians["kit_floor_s"]}
    print(f"\n  floor of the kit's training + evaluation: {medians['kit_flop'] / 1e12:.2f} TFLOP (FlopCounterMode) / "
          f"{medians['kit_matmul_gflops']:.0f} GFLOP/s (float32 matmul, this process) = {medians['kit_floor_s']:.2f} s")
    print(f"  measured {kit_s:.2f} s; measured / floor: {ratios['measured_over_floor']:.2f}x")
    if not args.no_trainer:
        trainer = medians["trainer_train_eval_s"]
        ratios["trainer_over_kit"] = trainer / kit_s
        gap = medians["kit_best_accuracy"] - medians["trainer_best_accuracy"]
        print(f"  Trainer / kit time (training + evaluation): {ratios['trainer_over_kit']:.2f}x "
              f"({trainer:.2f} s / {kit_s:.2f} s)")
        print(f"  kit - Trainer best accuracy: {gap * 100:+.1f} points")
    _results.write("bench_speed", args, medians, ratios, before, rounds=rows,
                   settings={"config": config or "defaults", "matmul": {"size": matmul[0], "repeats": matmul[1]},
                             "rounds": args.rounds, "trainer": not args.no_trainer})


if __name__ == "__main__":
    main()
