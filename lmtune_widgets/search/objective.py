"""What a search trial is: the space it is drawn from, where its evaluation points lie, and the score it is ranked by.

Each trial is a real fine-tune. Every evaluation point is reported at the amount of data seen so far,
counted in evaluation intervals (`data_seen_step`), not at the optimizer step: batch size is searched too,
and batch 8 takes four times as many steps as batch 32 to see the same examples. The objective is the kept
model's loss on the whole validation split (`objective_value`). Optuna's trials, Ray Tune's and the runs filed
into a class study are all reported and scored by these, so that they compare.
"""
from __future__ import annotations

import math
from typing import Any

from ..config import FineTuneConfig

DIVERGED_VALUE = 1e3  # the objective of a run that blew up (worse than any real loss)


def default_space(trial) -> dict[str, Any]:
    """The ranges lessons 01-07 point to."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [8, 16, 32]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
        "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.3),
    }


def data_seen_step(point: dict[str, Any], config: FineTuneConfig) -> int:
    """The evaluation interval an evaluation point lies at, measured in data seen: round(epoch x evals_per_epoch).

    A point's `epoch` is optimizer steps / steps per epoch, that is examples seen / training examples, so
    the same number means the same amount of data whatever the batch size: on 800 examples with 3
    evaluations an epoch, batch 8 evaluates at step 33 and batch 32 at step 8, and both are step 1 here.
    """
    return round(point["epoch"] * config.evals_per_epoch)


def objective_value(run) -> float:
    """What the search minimises: the loss of the model the run keeps, on the whole validation split (not the
    best of its evaluation points on a sample, which flatters every trial by picking its luckiest moment); the
    lowest evaluated loss when the kept model was not scored; DIVERGED_VALUE if the run blew up."""
    if run.status == "diverged":
        return DIVERGED_VALUE
    kept = run.kept.get("validation_loss")
    if isinstance(kept, (int, float)) and math.isfinite(kept):
        return float(kept)
    losses = [h["eval_loss"] for h in run.history if math.isfinite(h["eval_loss"])]
    return min(losses) if losses else DIVERGED_VALUE


def reportable_loss(point: dict[str, Any]) -> float:
    """The loss an evaluation point reports to a pruner or scheduler: DIVERGED_VALUE for a blown-up point, which
    compares as the worst (a NaN compares as nothing)."""
    return point["eval_loss"] if math.isfinite(point["eval_loss"]) else DIVERGED_VALUE
