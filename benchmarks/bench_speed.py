"""Speed and memory of the default run, and the same configuration through `transformers.Trainer`.

    python benchmarks/bench_speed.py            # 3 alternating rounds (about 5 minutes on 2 CPU cores)
    python benchmarks/bench_speed.py --rounds 1

Each round runs, in fresh processes and one after the other (never at the same time):
  1. the CLI (`python -m lmtune_widgets run`): whole-process wall time and peak memory (max RSS);
  2. `fine_tune` in a process: setup, frozen-feature cache, training + evaluation, time to the first point;
  3. `Trainer` on the same model, data, freezing and hyperparameters (AdamW groups, linear warmup schedule,
     batch size, epochs, evaluation as often), with dynamic padding.
The machine is shared and noisy: the figures printed are medians over rounds, and the ratio of medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

KIT = r"""
import json, resource, time
t0 = time.perf_counter()
from transformers.utils import logging; logging.set_verbosity_error()
from lmtune_widgets import FineTuneConfig, fine_tune, diagnose
cfg = FineTuneConfig()
t1 = time.perf_counter()
run = fine_tune(cfg)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "fine_tune_s": t2 - t1, "setup_s": run.meta["setup_s"],
                  "cache_s": run.meta["cache_s"], "train_eval_s": run.meta["train_s"],
                  "first_point_s": run.history[0]["elapsed_s"], "best_accuracy": run.best_accuracy,
                  "verdict": diagnose(run).verdict,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRAINER = r"""
import json, math, resource, time
import numpy as np, torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.utils import logging; logging.set_verbosity_error()
from lmtune_widgets import FineTuneConfig
from lmtune_widgets.data import load_splits
from lmtune_widgets.models import freeze_bottom, load_model
from lmtune_widgets.training import schedule_steps
cfg = FineTuneConfig()
splits = load_splits(cfg.task)
model, tok = load_model(cfg.model_name, len(splits.label_names), cfg.dropout, seed=cfg.seed)
freeze_bottom(model, cfg.freeze_layers)
def prep(split, n):
    split = split.select(range(min(n, len(split))))
    return split.map(lambda b: tok(b["text"], truncation=True, max_length=cfg.max_length), batched=True,
                     remove_columns=["text"])
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


def python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli() -> dict:
    code = ("import resource, runpy, sys, time; t = time.perf_counter(); sys.argv = ['lmtune_widgets', 'run', "
            "'--quiet']\ntry:\n    runpy.run_module('lmtune_widgets', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import json; print(json.dumps({'cli_s': time.perf_counter() - t, "
            "'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    start = time.perf_counter()
    result = python(code)
    result["process_s"] = time.perf_counter() - start  # interpreter start-up included
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-trainer", action="store_true")
    args = parser.parse_args()
    rows: dict[str, list] = {}
    for round_ in range(args.rounds):
        measured = {f"cli_{k}": v for k, v in cli().items()}
        measured.update({f"kit_{k}": v for k, v in python(KIT).items()})
        if not args.no_trainer:
            measured.update({f"trainer_{k}": v for k, v in python(TRAINER).items()})
        print(f"round {round_ + 1}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in measured.items()), flush=True)
        for k, v in measured.items():
            rows.setdefault(k, []).append(v)
    print("\nmedians over", args.rounds, "rounds")
    for k, values in rows.items():
        if isinstance(values[0], (int, float)):
            print(f"  {k:28s} {statistics.median(values):9.3f}   (all: {', '.join(f'{v:.2f}' for v in values)})")
        else:
            print(f"  {k:28s} {values}")
    if not args.no_trainer:
        kit, trainer = statistics.median(rows["kit_train_eval_s"]), statistics.median(rows["trainer_train_eval_s"])
        gap = statistics.median(rows["kit_best_accuracy"]) - statistics.median(rows["trainer_best_accuracy"])
        print(f"\n  Trainer / kit time (training + evaluation): {trainer / kit:.2f}x")
        print(f"  kit - Trainer best accuracy: {gap * 100:+.1f} points")


if __name__ == "__main__":
    main()
