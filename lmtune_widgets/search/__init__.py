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

Each trial is a real fine-tune, reported at the data it has seen and scored by its kept model's validation loss.
One module per job, each with the rest of the story:
- `objective`: the space searched, where a trial's evaluation points lie (data seen), the score it is ranked by;
- `optuna_search`: `search`, with Optuna's median pruning, alone or in a study shared through a database server;
- `ray_search`: `search(..., backend="ray")`, with Ray Tune's ASHA or HyperBand;
- `engines`: `compare_engines`, one budget searched by each engine, and what each costs;
- `class_study`: the class's shared study: opening its database, its errors as `StudyUnavailable`, filing runs
  (`add_run_to_study`);
- `cli`: `python -m lmtune_widgets.search --help` runs a worker from a terminal.
"""
import warnings

from .class_study import (HEARTBEAT_SECONDS, StudyUnavailable, add_run_to_study, login_name, open_storage,
                          unavailable_on_database_error)
from .cli import main
from .engines import EngineCost, compare_engines
from .objective import DIVERGED_VALUE, data_seen_step, default_space, objective_value
from .optuna_search import search
from .ray_search import TuneResult

__all__ = ["search", "TuneResult", "compare_engines", "EngineCost", "add_run_to_study", "open_storage",
           "StudyUnavailable", "unavailable_on_database_error", "login_name", "default_space", "data_seen_step",
           "objective_value", "DIVERGED_VALUE", "HEARTBEAT_SECONDS", "main"]


def __getattr__(name):
    if name == "_login_name":  # the panel's name for it before the split; a branch made before may still use it
        warnings.warn("lmtune_widgets.search._login_name is now login_name", DeprecationWarning, stacklevel=2)
        return login_name
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
