"""The lesson's LoRA run on the bundled LLM (preset "llm_lora") at several seeds: zero-shot against fine-tuned
accuracy, seconds per training example, and where the time goes. One JSON line per seed.

    python benchmarks/bench_llm.py 42,1,2 [THREADS] ['{"learning_rate": 1e-3}']
"""
import json
import sys
import time

import torch

from lmtune_widgets import FineTuneConfig, fine_tune
from lmtune_widgets.training import Callback


class StepTimes(Callback):
    """Seconds of each optimizer step alone (forward, backward, step), without the evaluations."""

    def __init__(self):
        self.seconds, self.start = [], 0.0

    def on_step_begin(self, run, step):
        self.start = time.perf_counter()

    def on_step_end(self, run, step, loss):
        self.seconds.append(time.perf_counter() - self.start)


def main(seeds: list[int], threads: int, overrides: dict) -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(threads)
    for seed in seeds:
        config = FineTuneConfig.from_preset("llm_lora", seed=seed, **overrides)
        steps, t = StepTimes(), time.perf_counter()
        run = fine_tune(config, callbacks=[steps], keep_model=False)
        print(json.dumps({
            "seed": seed, "changes": config.changes(), "status": run.status, "wall_s": round(time.perf_counter() - t, 1),
            "zero_shot_accuracy": run.history[0]["eval_accuracy"], "final_accuracy": run.history[-1]["eval_accuracy"],
            "accuracies": [h["eval_accuracy"] for h in run.history],
            "zero_shot_loss": run.history[0]["eval_loss"], "final_loss": run.history[-1]["eval_loss"],
            "s_per_example": sum(steps.seconds) / (len(steps.seconds) * config.effective_batch_size),
            **{k: run.meta[k] for k in ("load_s", "cache_s", "train_s", "finish_s", "trainable_parameters",
                                        "total_parameters", "num_train", "num_eval", "mean_train_tokens", "threads")}}),
            flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1].split(",")], int(sys.argv[2]) if len(sys.argv) > 2 else 1,
         json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
