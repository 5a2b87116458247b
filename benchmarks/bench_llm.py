"""The lesson's LoRA run on the bundled LLM (preset "llm_lora") at several seeds: zero-shot against fine-tuned
accuracy, seconds per training example, and where the time goes. One JSON line per seed, then the medians.

    python benchmarks/bench_llm.py 42,1,2 [THREADS] ['{"learning_rate": 1e-3}']
    python benchmarks/bench_llm.py --smoke      # one seed, 8 messages, two steps of LoRA r=2 in the top block

Results: benchmarks/results/bench_llm.json (the ratio: fine-tuned accuracy over zero-shot accuracy).
"""
import json
import statistics
import time

import torch

import _results
from lmtune_widgets import FineTuneConfig, fine_tune
from lmtune_widgets.training import Callback

# The smallest run of the same path: 8 messages, two optimizer steps of batch 4 (the first at warmup's rate 0), LoRA r=2 in the top block only
# (the 29 blocks below it are frozen features, computed once), evaluated at step 0 and after the step.
SMOKE = dict(max_train_samples=8, max_eval_samples=8, lora_r=2, freeze_layers=29, per_device_train_batch_size=4,
             evals_per_epoch=1)
FIGURES = ("zero_shot_accuracy", "final_accuracy", "zero_shot_loss", "final_loss", "s_per_example", "wall_s",
           "load_s", "cache_s", "train_s", "finish_s")


class StepTimes(Callback):
    """Seconds of each optimizer step alone (forward, backward, step), without the evaluations."""

    def __init__(self):
        self.seconds, self.start = [], 0.0

    def on_step_begin(self, run, step):
        self.start = time.perf_counter()

    def on_step_end(self, run, step, loss):
        self.seconds.append(time.perf_counter() - self.start)


def one_seed(seed: int, overrides: dict) -> dict:
    config = FineTuneConfig.from_preset("llm_lora", seed=seed, **overrides)
    steps, t = StepTimes(), time.perf_counter()
    run = fine_tune(config, callbacks=[steps], keep_model=False)
    assert run.status == "finished", run.error
    return {
        "seed": seed, "changes": config.changes(), "status": run.status, "wall_s": round(time.perf_counter() - t, 1),
        "zero_shot_accuracy": run.history[0]["eval_accuracy"], "final_accuracy": run.history[-1]["eval_accuracy"],
        "accuracies": [h["eval_accuracy"] for h in run.history],
        "zero_shot_loss": run.history[0]["eval_loss"], "final_loss": run.history[-1]["eval_loss"],
        "s_per_example": sum(steps.seconds) / (len(steps.seconds) * config.effective_batch_size),
        **{k: run.meta[k] for k in ("load_s", "cache_s", "train_s", "finish_s", "trainable_parameters",
                                    "total_parameters", "num_train", "num_eval", "mean_train_tokens", "threads")}}


def main() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    parser = _results.parser(__doc__)
    parser.add_argument("seeds", nargs="?", default="42,1,2", help="comma-separated seeds (default 42,1,2)")
    parser.add_argument("threads", nargs="?", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON of settings to change in the preset")
    args = parser.parse_args()
    seeds, overrides = [int(s) for s in args.seeds.split(",")], json.loads(args.overrides)
    if args.smoke:
        seeds, overrides = [42], {**SMOKE, **overrides}
    torch.set_num_threads(args.threads)
    before = _results.load_average()
    rows = []
    for seed in seeds:
        rows.append(one_seed(seed, overrides))
        print(json.dumps(rows[-1]), flush=True)
    medians = {k: statistics.median(row[k] for row in rows) for k in FIGURES}
    ratio = medians["final_accuracy"] / medians["zero_shot_accuracy"]
    print(f"medians over {len(seeds)} seed(s): zero-shot accuracy {medians['zero_shot_accuracy']:.3f}, after "
          f"fine-tuning {medians['final_accuracy']:.3f} ({ratio:.2f}x), {medians['s_per_example']:.3f} s per "
          f"training example, whole run {medians['wall_s']:.1f} s")
    _results.write("bench_llm", args, medians, {"final_over_zero_shot_accuracy": ratio}, before, rounds=rows,
                   settings={"preset": "llm_lora", "overrides": overrides, "seeds": seeds, "threads": args.threads})


if __name__ == "__main__":
    main()
