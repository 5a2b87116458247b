"""The class's shared study: its database opened for a network, one path for that database's errors, runs filed in.

With a database server (any Optuna RDB URL that is not SQLite) every learner's search and panel join one study.
If the database goes away, whoever was talking to it raises `StudyUnavailable`, one line long, and what was
finished stays stored: `unavailable_on_database_error` is where every such error becomes one.

`add_run_to_study` files a panel run into a study as a finished trial (the panel files through
`panel_runner.StudyFiler`; `landscape.class_landscape` draws a whole class's study for the instructor).
"""
from __future__ import annotations

import contextlib
import getpass
import secrets
import threading
import time
import warnings
from typing import Any, Callable, Iterator

from ..config import FineTuneConfig
from .objective import data_seen_step, default_space, objective_value, reportable_loss

HEARTBEAT_SECONDS = 10  # a running trial in a shared study writes a heartbeat this often


class StudyUnavailable(RuntimeError):
    """The study's database cannot be reached (its message is one line: which database, what is kept)."""


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
def quiet_heartbeat_errors():
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


def login_name() -> str:
    """The name a trial is stored under when the learner gives none (the panel's default too)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "anonymous"


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
        intermediate.setdefault(data_seen_step(point, run.config), reportable_loss(point))
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
