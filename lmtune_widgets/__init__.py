"""lmtune-widgets: learn the hyperparameters of fine-tuning by moving sliders on a real fine-tune.

    from lmtune_widgets import FineTuneConfig, fine_tune, diagnose
    run = fine_tune(FineTuneConfig.from_preset("overfit"))
    print(diagnose(run))

Importing the package is cheap: torch, transformers and ipywidgets load only when first needed.
"""
from importlib import import_module

from .config import PRESETS, FineTuneConfig, describe, field_names
from .runs import Diagnosis, Run, diagnose

__version__ = "0.1.0"

_LAZY = {
    "fine_tune": "training", "Callback": "training", "StopTraining": "training", "planned_learning_rates": "planning",
    "TuningPanel": "panel", "lr_find": "lr_finder", "plot_run": "plotting", "plot_runs": "plotting",
}

__all__ = ["FineTuneConfig", "PRESETS", "Run", "Diagnosis", "diagnose", "describe", "field_names", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lmtune_widgets' has no attribute {name!r}")
