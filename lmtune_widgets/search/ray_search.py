"""Hyperparameter search with Ray Tune: ASHA or HyperBand early stopping, on a local Ray or a cluster.

    result = search(base, n_trials=8, backend="ray")  # a cluster: address="ray://HOST:10001"
    result.best_params, result.trials

Ray Tune stops a trial by ASHA or HyperBand, comparing trials at the same amount of data seen (`data_seen` is
their time attribute); Optuna's TPE proposes the trials (OptunaSearch), as in the Optuna search.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FineTuneConfig
from .objective import data_seen_step, objective_value, reportable_loss


@dataclass
class TuneResult:
    """What a Ray Tune search found: the best settings, one summary per trial, and Ray's own ResultGrid.

    A trial's `value` is the lowest validation loss it reported (what ASHA compares); `kept_loss`, for a trial that
    trained to the end, is its kept model's loss on the whole validation split, as an Optuna trial is scored."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # params, value, data_seen, kept_loss, status, error
    results: Any = None  # ray.tune.ResultGrid: every reported metric, as Ray keeps it

    def __repr__(self) -> str:
        states = [t["status"] for t in self.trials]
        return (f"TuneResult(best_value={self.best_value:.4f}, trials={len(states)}, "
                f"stopped_early={states.count('stopped early')}, errors={states.count('error')})")


def search_ray(base, n_trials, space, seed, scheduler, address, num_cpus, storage, study_name, callbacks):
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # OptunaSearch's own in-memory study

    max_t = max(1, round(base.num_train_epochs * base.evals_per_epoch))  # the last data_seen_step of a trial
    target = dict(metric="eval_loss", mode="min")
    if scheduler == "asha":
        chosen = ASHAScheduler(time_attr="data_seen", max_t=max_t, grace_period=1, reduction_factor=2, **target)
    elif scheduler == "hyperband":
        chosen = HyperBandScheduler(time_attr="data_seen", max_t=max_t, reduction_factor=2, **target)
    else:
        raise ValueError(f"scheduler={scheduler!r} is not valid; choose 'asha' or 'hyperband'")
    started_here = start_ray(address, num_cpus)
    try:
        tuner = tune.Tuner(
            tune.with_resources(_RayTrial(base, tuple(callbacks)), {"cpu": 1}),
            tune_config=tune.TuneConfig(num_samples=n_trials, scheduler=chosen,
                                        search_alg=OptunaSearch(space=_SpaceOnly(space), seed=seed, **target),
                                        reuse_actors=True),  # a reused worker keeps torch and the model files loaded
            run_config=tune.RunConfig(name=study_name, storage_path=_folder(storage), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      progress_reporter=tune.CLIReporter()),  # in a notebook: no empty HTML output
        )
        with _environment(RAY_AIR_NEW_OUTPUT="0"):  # the classic reporter prints nothing at verbose=0
            grid = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    trials = []
    for result in grid:
        frame = result.metrics_dataframe
        losses = [] if frame is None or "eval_loss" not in frame else list(frame["eval_loss"])
        reached = int((result.metrics or {}).get("data_seen", -1))
        status = "error" if result.error else "finished" if reached >= max_t else "stopped early"
        trials.append({"params": {k: v for k, v in (result.config or {}).items()}, "status": status,
                       "value": min(losses) if losses else math.nan, "data_seen": reached,
                       "kept_loss": (result.metrics or {}).get("kept_loss", math.nan),
                       "error": str(result.error).strip().splitlines()[-1] if result.error else None})
    done = [t for t in trials if t["status"] != "error" and math.isfinite(t["value"])]
    if not done:
        first = trials[0]["error"] if trials else "no trial ran"
        raise RuntimeError(f"every Ray Tune trial failed; the first: {first}")
    best = min(done, key=lambda t: t["value"])
    return TuneResult(best_params=best["params"], best_value=best["value"], trials=trials, results=grid)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start a local Ray (or join `address`) unless one is running; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")  # workers' output: Ray's logs
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=200 * 1024 ** 2, **quiet)
    return True


@contextlib.contextmanager
def _environment(**values: str):
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _folder(storage: str | None) -> str | None:
    if storage is None or "://" in storage:
        return storage
    Path(storage).mkdir(parents=True, exist_ok=True)
    return str(Path(storage).resolve())


class _SpaceOnly:
    """OptunaSearch wants a define-by-run space that returns None (ours returns the values), and pickles it."""

    def __init__(self, space):
        self.space = space

    def __call__(self, trial) -> None:
        self.space(trial)


class _RayTrial:
    """One Ray Tune trial: a fine-tune that reports every evaluation point at its data seen."""

    def __init__(self, base: FineTuneConfig, callbacks: tuple):
        self.base, self.callbacks = base, callbacks

    def __call__(self, params: dict[str, Any]) -> None:
        from ray import tune

        from ..training import Callback, fine_tune

        class Report(Callback):
            def __init__(self):
                self.reported, self.last = set(), None

            def on_evaluate(self, run, point):
                step = data_seen_step(point, run.config)
                if step in self.reported:
                    return
                self.reported.add(step)
                metrics = {"eval_loss": reportable_loss(point), "eval_accuracy": point["eval_accuracy"],
                           "data_seen": step}
                if step >= round(run.config.num_train_epochs * run.config.evals_per_epoch):
                    self.last = metrics  # the scheduler ends a trial at its last point: held until the run has ended
                else:
                    tune.report(metrics)

        report = Report()
        run = fine_tune(self.base.replace(**params), callbacks=[report, *self.callbacks], keep_model=False)
        if report.last is not None:  # with the kept model's loss (`objective_value`), as Optuna's trials score
            tune.report({**report.last, "kept_loss": objective_value(run)})
