"""Hyperparameter search with Optuna: TPE sampling, and median pruning from the run's own evaluations.

    from lmtune_widgets.search import search
    study = search(FineTuneConfig(max_train_samples=800), n_trials=12, storage="sqlite:///study.db")
    study.best_params, study.best_value

Each trial is a real fine-tune. Every evaluation point is reported to Optuna (`trial.report`); when the
validation loss is worse than the median of earlier trials at the same step, the trial is pruned: the run
is stopped (its history kept) and the trial marked PRUNED. The objective is the lowest validation loss.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from .config import FineTuneConfig
from .training import Callback, StopTraining, fine_tune


def default_space(trial) -> dict[str, Any]:
    """The ranges lessons 01-07 point to."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [8, 16, 32]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
        "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.3),
    }


def search(base: FineTuneConfig, n_trials: int = 12, storage: str | None = None, study_name: str = "lmtune",
           space: Callable[[Any], dict[str, Any]] = default_space, seed: int = 0):
    """Run an Optuna study over `space` around `base`; returns the study (a fresh one each call)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            optuna.delete_study(study_name=study_name, storage=storage)  # start afresh, keep the file
        except KeyError:
            pass
    study = optuna.create_study(direction="minimize", storage=storage, study_name=study_name,
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))

    def objective(trial) -> float:
        class Report(Callback):
            pruned = False

            def on_evaluate(self, run, point):
                value = point["eval_loss"] if math.isfinite(point["eval_loss"]) else 1e3
                trial.report(value, step=point["step"])
                if trial.should_prune():
                    self.pruned = True
                    raise StopTraining

        report = Report()
        run = fine_tune(base.replace(**space(trial)), callbacks=[report], keep_model=False)
        if report.pruned:
            raise optuna.TrialPruned()
        losses = [h["eval_loss"] for h in run.history if math.isfinite(h["eval_loss"])]
        return min(losses) if losses and run.status != "diverged" else 1e3

    study.optimize(objective, n_trials=n_trials)
    return study
