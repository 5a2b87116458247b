"""Hyperparameter search with Optuna, in one process or in many sharing one database (Ray Tune: `ray_search`).

Optuna prunes a trial whose validation loss is worse than the median of the other trials at the same point,
the same amount of data seen (MedianPruner); a trial is scored by its kept model's loss (`objective`).

With a database server (any Optuna RDB URL that is not SQLite) the study is shared:
- it is joined, created if missing and never deleted (`fresh=True` starts it afresh); `n_trials` counts this
  call's trials, as in Optuna;
- each worker seeds its sampler on its own (the same seed everywhere would propose the same first trials),
  and TPE's constant liar steers it away from the trials other workers are running;
- every running trial writes a heartbeat; a trial whose worker died is marked FAIL by the next worker
  that asks for a trial, and the others go on;
- if the database goes away, `search` raises `StudyUnavailable`, one line long; finished trials are stored.
SQLite stays the lessons' default: a fresh study in a local file, one process, seeded for repeatability.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Callable, Iterable

from ..config import FineTuneConfig
from .class_study import (HEARTBEAT_SECONDS, login_name, open_storage, quiet_heartbeat_errors,
                          unavailable_on_database_error)
from .objective import data_seen_step, default_space, objective_value, reportable_loss
from .ray_search import search_ray


def _is_server(storage: str | None) -> bool:
    return bool(storage) and not storage.startswith("sqlite")


@contextlib.contextmanager
def _quiet_transformers():
    """Every trial loads the model again: its load report and progress bar would fill a notebook."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def search(base: FineTuneConfig, n_trials: int = 12, storage: str | None = None, study_name: str = "lmtune",
           space: Callable[[Any], dict[str, Any]] = default_space, seed: int | None = 0, *,
           fresh: bool | None = None, learner: str | None = None, backend: str = "optuna",
           heartbeat_interval: int = HEARTBEAT_SECONDS, callbacks: Iterable = (), pruner=None,
           scheduler: str = "asha", address: str | None = None, num_cpus: int | None = None):
    """Search `space` around `base` for `n_trials` trials; returns the Optuna study (or, with Ray, a `TuneResult`).

    storage: an Optuna RDB URL ("sqlite:///study.db", "postgresql+psycopg://user:pw@host:port/db"), or None
        for memory. With backend="ray", the folder (or URI) Ray Tune keeps its results in.
    fresh: start the study afresh (delete it first). Default: True for SQLite and memory (the lessons),
        False for a database server, where the study is joined and never deleted.
    seed: the sampler's seed for a fresh study; a worker joining a shared study draws its own.
    learner: the name stored with each trial (default: the login name).
    heartbeat_interval: seconds between heartbeats of a running trial in a shared study.
    callbacks: extra training callbacks given to every trial's `fine_tune`.
    pruner: an Optuna pruner (default: MedianPruner after 2 finished trials, never at the step-0 point).
    scheduler, address, num_cpus: Ray Tune only: "asha" or "hyperband"; a cluster to join (default: a
        local Ray with `num_cpus` CPUs, all of this machine's by default).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials={n_trials} is out of range: allowed from 1 upwards")
    if heartbeat_interval < 1:
        raise ValueError(f"heartbeat_interval={heartbeat_interval} is out of range: allowed from 1 second upwards")
    if backend == "ray":
        return search_ray(base, n_trials, space, seed, scheduler, address, num_cpus, storage, study_name, callbacks)
    if backend != "optuna":
        raise ValueError(f"backend={backend!r} is not valid; choose 'optuna' or 'ray'")
    return _search_optuna(base, n_trials, storage, study_name, space, seed, fresh, learner, heartbeat_interval,
                          callbacks, pruner)


def _search_optuna(base, n_trials, storage, study_name, space, seed, fresh, learner, heartbeat_interval, callbacks,
                   pruner):
    import optuna

    from ..training import Callback, StopTraining, fine_tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shared = _is_server(storage)
    fresh = not shared if fresh is None else fresh
    if storage and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    rdb = open_storage(storage, heartbeat_interval if shared else None) if storage else None
    # A fresh study repeats itself from `seed`; joined workers each draw a seed, or all would propose alike.
    sampler_seed = seed if fresh else secrets.randbits(31)
    with unavailable_on_database_error(storage):
        if fresh and rdb is not None:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=study_name, storage=rdb)  # start afresh, keep the database
        study = optuna.create_study(direction="minimize", storage=rdb, study_name=study_name, load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=not fresh),
                                    pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    learner = learner or login_name()
    finished = [0]

    def objective(trial) -> float:
        trial.set_user_attr("learner", learner)
        trial.set_user_attr("worker", _worker_name())
        trial.set_user_attr("sampler_seed", sampler_seed)

        class Report(Callback):
            def __init__(self):
                self.pruned, self.reported = False, set()

            def on_evaluate(self, run, point):
                step = data_seen_step(point, run.config)
                if step in self.reported:  # a closing point a step after the last interval: same data seen
                    return
                self.reported.add(step)
                trial.report(reportable_loss(point), step=step)
                if trial.should_prune():
                    self.pruned = True
                    raise StopTraining

        report = Report()
        run = fine_tune(base.replace(**space(trial)), callbacks=[report, *callbacks], keep_model=False)
        if report.pruned:
            raise optuna.TrialPruned()
        return objective_value(run)

    def count_stored(study, trial) -> None:  # Optuna calls this once the trial's end is stored
        finished[0] += trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    with unavailable_on_database_error(storage, lambda: finished[0]), quiet_heartbeat_errors(), _quiet_transformers():
        study.optimize(objective, n_trials=n_trials, callbacks=[count_stored])
    return study
