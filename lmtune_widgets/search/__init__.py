"""Hyperparameter search with Optuna (one process, or many sharing one database) or with Ray Tune.

    from lmtune_widgets.search import search
    study = search(FineTuneConfig(max_train_samples=800), n_trials=12, storage="sqlite:///study.db")
    study.best_params, study.best_value

    # a class-wide study: every learner's process joins one study on a PostgreSQL server
    study = search(base, n_trials=5, storage="postgresql+psycopg://postgres:PASSWORD@HOST:54320/postgres",
                   study_name="workshop", learner="ada")

    # Ray Tune with ASHA early stopping, on a local Ray (or a cluster: address="ray://HOST:10001")
    result = search(base, n_trials=8, backend="ray")
    result.best_params, result.trials

Each trial is a real fine-tune. Every evaluation point is reported at the amount of data seen so far,
counted in evaluation intervals (`data_seen_step`), not at the optimizer step: batch size is searched too,
and batch 8 takes four times as many steps as batch 32 to see the same examples. Optuna prunes a trial
whose validation loss is worse than the median of the other trials at the same point (MedianPruner); Ray
Tune stops it by ASHA or HyperBand. The objective is the kept model's loss on the whole validation split.

With a database server (any Optuna RDB URL that is not SQLite) the study is shared:
- it is joined, created if missing and never deleted (`fresh=True` starts it afresh); `n_trials` counts this
  call's trials, as in Optuna;
- each worker seeds its sampler on its own (the same seed everywhere would propose the same first trials),
  and TPE's constant liar steers it away from the trials other workers are running;
- every running trial writes a heartbeat; a trial whose worker died is marked FAIL by the next worker
  that asks for a trial, and the others go on;
- if the database goes away, `search` raises `StudyUnavailable`, one line long; finished trials are stored.
SQLite stays the lessons' default: a fresh study in a local file, one process, seeded for repeatability.

`add_run_to_study` files a panel run into a study as a finished trial (`landscape.class_landscape` draws a
whole class's study for the instructor). `python -m lmtune_widgets.search --help` runs a worker from a terminal.
`compare_engines(base, n_trials, space)` runs one budget with each engine and measures what each costs.
"""
from __future__ import annotations

import argparse
import contextlib
import getpass
import math
import os
import secrets
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..config import FineTuneConfig

HEARTBEAT_SECONDS = 10  # a running trial in a shared study writes a heartbeat this often
DIVERGED_VALUE = 1e3  # the objective of a run that blew up (worse than any real loss)


class StudyUnavailable(RuntimeError):
    """The study's database cannot be reached (its message is one line: which database, what is kept)."""


def default_space(trial) -> dict[str, Any]:
    """The ranges lessons 01-07 point to."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [8, 16, 32]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
        "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.3),
    }


# --------------------------------------------------------------------------------------------- shared pieces
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


def _reportable(point: dict[str, Any]) -> float:
    return point["eval_loss"] if math.isfinite(point["eval_loss"]) else DIVERGED_VALUE


def _is_server(storage: str | None) -> bool:
    return bool(storage) and not storage.startswith("sqlite")


def _database_error(error: BaseException | None) -> BaseException | None:
    """The database error behind `error` (looking through its causes), or None if it is not one."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                              sqlalchemy.exc.DisconnectionError, StorageInternalError)):
            return error
        error = error.__cause__ or error.__context__
    return None


def _unavailable(storage: str, error: BaseException, finished: int | None = None) -> StudyUnavailable:
    from sqlalchemy.engine import make_url

    where = make_url(storage).render_as_string(hide_password=True)
    error = _database_error(error) or error
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    kept = "" if finished is None else f"; the {finished} trial(s) this worker finished are stored there"
    return StudyUnavailable(f"the study database {where} is not answering ({reason[0] if reason else 'no reason'})"
                            f"{kept}. Start the database again, then run the search again to continue.")


@contextlib.contextmanager
def unavailable_on_database_error(storage: str | None, finished: Callable[[], int] | None = None) -> Iterator[None]:
    """Turn a database error raised in the block (the driver's, SQLAlchemy's or Optuna's, found through the causes)
    into `StudyUnavailable`, one line without the driver's traceback; every other error passes unchanged.

    The one place a lost database is reported, for opening a storage, making a study, running trials and filing a
    run alike. `finished` counts the trials this worker stored, read when the error comes (the message says they
    are kept). With no `storage` (a study in memory) nothing is turned.
    """
    try:
        yield
    except StudyUnavailable:  # from a block within (opening the storage, say): said once, as it is
        raise
    except Exception as error:
        if storage and _database_error(error) is not None:
            raise _unavailable(storage, error, None if finished is None else finished()) from None
        raise


@contextlib.contextmanager
def _quiet_heartbeat_errors():
    """When the database goes away, Optuna's heartbeat thread dies with it: the main thread reports that."""
    previous = threading.excepthook

    def hook(args):
        if _database_error(args.exc_value) is None:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


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


def open_storage(storage: str, heartbeat_interval: int | None = None):
    """An Optuna RDBStorage with settings for a database across a network.

    A dead connection is noticed (pre-ping, TCP keepalives, a 10 s connect timeout) instead of hanging,
    and tables created by two workers at the same moment (a known race on a fresh database) are retried.
    """
    import optuna
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if storage.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
                                         "keepalives_interval": 5, "keepalives_count": 3}
    with unavailable_on_database_error(storage):
        for attempt in range(3):
            try:
                with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                                      heartbeat_interval=heartbeat_interval)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                if attempt == 2:
                    raise
                time.sleep(0.5 + secrets.randbelow(1000) / 1000)  # another worker is creating the tables


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "anonymous"


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------------------------- the search
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
        return _search_ray(base, n_trials, space, seed, scheduler, address, num_cpus, storage, study_name, callbacks)
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
    learner = learner or _login_name()
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
                trial.report(_reportable(point), step=step)
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

    with unavailable_on_database_error(storage, lambda: finished[0]), _quiet_heartbeat_errors(), _quiet_transformers():
        study.optimize(objective, n_trials=n_trials, callbacks=[count_stored])
    return study


# --------------------------------------------------------------------------------------------- Ray Tune
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


def _search_ray(base, n_trials, space, seed, scheduler, address, num_cpus, storage, study_name, callbacks):
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
    started_here = _start_ray(address, num_cpus)
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


def _start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
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
                metrics = {"eval_loss": _reportable(point), "eval_accuracy": point["eval_accuracy"], "data_seen": step}
                if step >= round(run.config.num_train_epochs * run.config.evals_per_epoch):
                    self.last = metrics  # the scheduler ends a trial at its last point: held until the run has ended
                else:
                    tune.report(metrics)

        report = Report()
        run = fine_tune(self.base.replace(**params), callbacks=[report, *self.callbacks], keep_model=False)
        if report.last is not None:  # with the kept model's loss (`objective_value`), as Optuna's trials score
            tune.report({**report.last, "kept_loss": objective_value(run)})


# --------------------------------------------------------------------------------------------- two engines, one budget
@dataclass
class EngineCost:
    """One engine's search of a budget, and what it cost on this machine (one search, one sampler seed)."""

    engine: str
    best_value: float  # the best kept validation loss among the trials that trained to the end
    finished: int  # trials that trained to the end
    stopped_early: int  # pruned (Optuna's median rule) or stopped (Ray's ASHA) before the end
    failed: int
    wall_s: float  # the whole call, Ray's start and shutdown included
    first_result_s: float  # until the first trial's first evaluation: what the engine costs before any result
    startup_s: float  # starting the engine itself: Ray's local cluster; 0 for Optuna, which runs in this process
    processes: int  # at the busiest moment, this process included
    peak_memory_mb: float  # resident memory summed over those processes (shared libraries counted in each)


def _timeline(path: str):
    """A training callback that notes, in a file every process can append to, when each trial first evaluated and
    how it ended (Ray's trials run in worker processes, Optuna's here). Made here: training imports torch."""
    import json

    from ..training import Callback

    class Timeline(Callback):
        def on_train_begin(self, run):
            self.evaluated = False

        def on_evaluate(self, run, point):
            if not self.evaluated:
                self.evaluated = True
                self.note(kind="evaluate")

        def on_train_end(self, run):
            if run.status in ("finished", "diverged"):
                self.note(kind="end", value=objective_value(run))

        def note(self, **event):
            with open(path, "a") as file:
                file.write(json.dumps({"t": time.time(), **event}) + "\n")

    return Timeline()


@contextlib.contextmanager
def _peak_processes(every: float = 0.2):
    """Sample this process and its children while the block runs; yields a dict that ends up holding the peaks."""
    import psutil

    peak, done = {"processes": 1, "memory_mb": 0.0}, threading.Event()

    def sample():
        me = psutil.Process()
        while not done.is_set():
            rss, count = 0, 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss, count = rss + process.memory_info().rss, count + 1
            peak["processes"], peak["memory_mb"] = max(peak["processes"], count), max(peak["memory_mb"], rss / 2**20)
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True, name="lmtune-sampler")
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def compare_engines(base: FineTuneConfig, n_trials: int, space: Callable[[Any], dict[str, Any]] = default_space,
                    seed: int = 0, num_cpus: int | None = None, folder: str | None = None) -> list[EngineCost]:
    """The same space and budget searched by Optuna (TPE, median pruning, in this process) and by Ray Tune (ASHA,
    on a local Ray of `num_cpus` CPUs), one after the other; returns what each found and cost, Optuna first.

    Both sample with Optuna's TPE from `seed`, so they start from the same first proposals. Both score a trial by
    its kept model's validation loss (`objective_value`), read from the trials themselves. One call is one
    measurement: the numbers move from call to call (machine load, seeds), so compare engines over several.
    """
    import json
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix="lmtune-engines-")
    costs = []
    for engine in ("optuna", "ray"):
        notes = Path(folder) / f"{engine}.jsonl"
        notes.unlink(missing_ok=True)
        started = time.time()
        with _peak_processes() as peak:
            startup = 0.0
            if engine == "ray":
                import ray

                _start_ray(num_cpus=num_cpus)
                startup = time.time() - started
            try:
                found = search(base, n_trials=n_trials, space=space, seed=seed, backend=engine,
                               callbacks=[_timeline(str(notes))], num_cpus=num_cpus,
                               storage=str(Path(folder) / "ray") if engine == "ray" else None)
            finally:
                if engine == "ray":
                    ray.shutdown()
        wall = time.time() - started
        events = [json.loads(line) for line in notes.read_text().splitlines()] if notes.exists() else []
        firsts = [e["t"] - started for e in events if e["kind"] == "evaluate"]
        values = [e["value"] for e in events if e["kind"] == "end"]
        if engine == "optuna":
            states = [t.state.name for t in found.trials]
            counts = (states.count("COMPLETE"), states.count("PRUNED"), states.count("FAIL"))
        else:
            states = [t["status"] for t in found.trials]
            counts = (states.count("finished"), states.count("stopped early"), states.count("error"))
        costs.append(EngineCost(engine, min(values) if values else math.nan, *counts, wall_s=wall,
                                first_result_s=min(firsts) if firsts else math.nan, startup_s=startup,
                                processes=peak["processes"], peak_memory_mb=peak["memory_mb"]))
    return costs


# --------------------------------------------------------------------------------------------- the class study
class _Recorder:
    """Stands in for an Optuna trial: answers a space's suggest_* calls with a config's own values."""

    def __init__(self, values: dict[str, Any]):
        self.values, self.distributions = values, {}

    def suggest_float(self, name, low, high, *, step=None, log=False):
        from optuna.distributions import FloatDistribution

        return self._note(name, FloatDistribution(low, high, step=step, log=log))

    def suggest_int(self, name, low, high, *, step=1, log=False):
        from optuna.distributions import IntDistribution

        return self._note(name, IntDistribution(low, high, step=step, log=log))

    def suggest_categorical(self, name, choices):
        from optuna.distributions import CategoricalDistribution

        return self._note(name, CategoricalDistribution(choices))

    def _note(self, name, distribution):
        self.distributions[name] = distribution
        return self.values[name]


def _trial_params(config: FineTuneConfig, space) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(params, distributions, the rest) of a config, as `space` names them; float ranges widen to fit."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    recorder = _Recorder(config.to_dict())
    space(recorder)
    params, distributions, outside = {}, {}, {}
    for name, distribution in recorder.distributions.items():
        value = recorder.values[name]
        if isinstance(distribution, FloatDistribution) and distribution.step is None:
            distribution = FloatDistribution(min(distribution.low, value), max(distribution.high, value),
                                             log=distribution.log)
        fits = value in distribution.choices if isinstance(distribution, CategoricalDistribution) else \
            distribution.low <= value <= distribution.high
        if fits:
            params[name], distributions[name] = value, distribution
        else:  # a new choice would clash with the study's own distribution: keep the value aside
            outside[name] = value
    return params, distributions, outside


def add_run_to_study(run, storage: str, study_name: str, learner: str,
                     space: Callable[[Any], dict[str, Any]] = default_space):
    """File a finished run (from the panel, say) into a study as a trial, with the learner's name attached.

    The trial's value is the kept model's validation loss (`objective_value`); its intermediate values are its
    evaluation points at their data seen, as `search` records them; a stopped run goes in as PRUNED. Settings outside
    the searched ranges are kept: a float range is widened to hold the value, a batch size that is not
    among the choices goes into the user attribute "outside_space". Returns the stored FrozenTrial.
    """
    import optuna

    if run.status not in ("finished", "diverged", "stopped") or not run.history:
        raise ValueError(f"run.status={run.status!r}: only a run that has ended, with evaluation points, can be added")
    params, distributions, outside = _trial_params(run.config, space)
    intermediate = {}
    for point in run.history:
        intermediate.setdefault(data_seen_step(point, run.config), _reportable(point))
    stopped = run.status == "stopped"
    token = secrets.token_hex(8)  # finds the stored trial again among everyone's
    attrs = {"learner": learner, "source": "panel", "run_status": run.status, "run_token": token,
             "settings": run.config.to_share_string(), "best_accuracy": run.best_accuracy}
    if outside:
        attrs["outside_space"] = outside
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE,
        value=None if stopped else objective_value(run), params=params, distributions=distributions,
        user_attrs=attrs, intermediate_values=intermediate)
    with unavailable_on_database_error(storage):
        study = optuna.create_study(direction="minimize", storage=open_storage(storage), study_name=study_name,
                                    load_if_exists=True)
        study.add_trial(trial)
        return next(t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("run_token") == token)


# --------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """A search worker from a terminal; start several, on one machine or many, on one storage URL."""
    parser = argparse.ArgumentParser(prog="python -m lmtune_widgets.search", description=main.__doc__)
    parser.add_argument("--storage", required=True, help="an Optuna RDB URL (or, with --backend ray, a folder)")
    parser.add_argument("--study-name", default="lmtune")
    parser.add_argument("--trials", type=int, default=4, help="trials this worker runs")
    parser.add_argument("--learner", default=None, help="your name, stored with each trial")
    parser.add_argument("--settings", default="{}",
                        help='the base settings as a share string, e.g. {"max_train_samples":400}')
    parser.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    parser.add_argument("--fresh", action="store_true", help="delete the study first (careful: everyone's trials)")
    parser.add_argument("--heartbeat", type=int, default=HEARTBEAT_SECONDS, help="seconds between heartbeats")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (several workers on one machine: cores / workers; 1 on a shared machine)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        base = FineTuneConfig.from_share_string(args.settings)
        found = search(base, n_trials=args.trials, storage=args.storage, study_name=args.study_name,
                       learner=args.learner, backend=args.backend, fresh=args.fresh or None,
                       heartbeat_interval=args.heartbeat)
    except (StudyUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; finished trials are stored", file=sys.stderr)
        return 130
    print(f"best so far: {found.best_value:.4f} with {found.best_params}")
    return 0

