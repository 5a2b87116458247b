"""What the lesson notebooks share: set-up, quick mode, sweeps, the predict-then-run exercise, results.

    from lmtune_widgets import lessons
    device = lessons.setup()                              # quiet logs; says CPU or GPU
    base = lessons.base_config(QUICK)                     # the defaults, shrunk when QUICK
    runs = lessons.sweep(base, "learning_rate", [1e-5, 1e-4, 1e-3])
    lessons.show(plot_runs(runs, labels=...))             # a static picture that GitHub shows
    lessons.save_results(RESULTS_PATH, best=...)

`QUICK = True` (papermill in CI) shrinks every run to a few seconds so the whole series executes fast;
`QUICK = False` is what learners run, and what the lesson assertions at the end of each notebook check.

Within one kernel, settings that were already trained are not trained again: a run is deterministic for a given
configuration and seed (tested), so `run_once`, `sweep` and the exercise reuse the earlier run's curves and say so.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from .config import FineTuneConfig
from .runs import Run, diagnose

VERDICTS = ("underfitting", "good fit", "overfitting", "diverged")
# QUICK: small data, one trainable layer, a short run: seconds, not minutes (the lesson is not asserted)
QUICK_SETTINGS = dict(max_train_samples=96, max_eval_samples=64, freeze_layers=5, evals_per_epoch=2,
                      num_train_epochs=1)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def setup() -> str:
    """Quiet the libraries' logs and say where training will run."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*is experimental.*")  # optuna's matplotlib plots say so each call
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import torch

    device = f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"Training will run on: {device}")
    return device


def base_config(quick: bool, **overrides: Any) -> FineTuneConfig:
    """The kit's defaults with a lesson's overrides; shrunk to a few seconds per run when `quick`."""
    config = FineTuneConfig(**overrides)
    if quick:
        config = config.replace(**{k: v for k, v in QUICK_SETTINGS.items() if k not in ("num_train_epochs",)},
                                num_train_epochs=min(config.num_train_epochs, 2))
    return config


_DONE: dict[FineTuneConfig, Run] = {}  # finished runs of this kernel, by their full settings


def _train(config: FineTuneConfig, keep_model: bool) -> tuple[Run, str]:
    """Fine-tune, or reuse this kernel's earlier run of exactly these settings. Returns the run and a timing note."""
    from .training import fine_tune

    earlier = _DONE.get(config)
    if earlier is not None:
        return earlier, "reused (these settings ran before)"
    t = time.perf_counter()
    run = fine_tune(config, keep_model=keep_model)
    if run.status not in ("stopped", "failed"):  # a stopped run is not what these settings give
        _DONE[config] = run
    return run, f"{time.perf_counter() - t:.1f} s"


def run_once(config: FineTuneConfig, label: str = "") -> Run:
    """One fine-tune with a one-line report; a new run keeps its weights (`run.predict`)."""
    run, took = _train(config, keep_model=True)
    d = diagnose(run)
    print(f"{label or 'run'}: {d.verdict} (status {run.status}), best validation accuracy {d.best_accuracy:.1%}, "
          f"{took}")
    return run


def sweep(base: FineTuneConfig, field: str, values: Iterable[Any], **fixed: Any) -> list[Run]:
    """Fine-tune once per value of `field` (weights are not kept: only the curves)."""
    runs = []
    for value in values:
        run, took = _train(base.replace(**{field: value}, **fixed), keep_model=False)
        d = diagnose(run)
        print(f"{field}={value!r:>8}: {d.verdict:12s} best validation accuracy {d.best_accuracy:6.1%}  "
              f"status {run.status:8s} {took:>6}")
        runs.append(run)
    return runs


def table(runs: list[Run], field: str) -> list[dict[str, Any]]:
    """A row per run: the value of `field`, the verdict, best accuracy and epoch, time."""
    rows = []
    for run in runs:
        d = diagnose(run)
        rows.append({field: getattr(run.config, field), "verdict": d.verdict, "status": run.status,
                     "best_accuracy": round(d.best_accuracy, 4),
                     "best_epoch": None if d.best_epoch is None else round(d.best_epoch, 2),
                     "final_eval_loss": round(run.history[-1]["eval_loss"], 4) if run.history else None,
                     "train_seconds": round(run.meta.get("train_s", 0.0), 1)})
    return rows


def show(fig) -> None:
    """Display a figure as a PNG: visible in every viewer, including GitHub and nbviewer."""
    from IPython.display import Image, display

    from .plotting import to_png

    display(Image(to_png(fig, dpi=90, tight=True)))


def check_prediction(prediction: str, run: Run) -> str:
    """Compare the learner's predicted curve shape with what `diagnose` reads from the real curves."""
    if prediction not in VERDICTS:
        raise ValueError(f"prediction={prediction!r} is not valid: choose one of {', '.join(VERDICTS)}")
    d = diagnose(run)
    if prediction == d.verdict:
        return f"Right: the curves say {d.verdict}. {d.reason}"
    return f"Not quite: you predicted {prediction}, the curves say {d.verdict}. {d.reason} {d.advice}"


def predict_then_run(config: FineTuneConfig, prediction: str | None = None):
    """The exercise: pick the shape you expect, then run. With `prediction` given (papermill), it just runs.

    Returns the widget to display, or None when it ran immediately.
    """
    import ipywidgets as widgets

    if prediction is not None:
        run = run_once(config, "your run")
        print(check_prediction(prediction, run))
        from .plotting import plot_run

        show(plot_run(run))
        return None
    choice = widgets.RadioButtons(options=VERDICTS, description="I predict:", style={"description_width": "80px"})
    button = widgets.Button(description="Run and check", button_style="primary")
    answer = widgets.HTML()
    picture = widgets.Image(format="png")

    def go(_):
        from .plotting import plot_run, to_png

        button.disabled = True
        answer.value = "<i>training ...</i>"
        try:
            run, _ = _train(config, keep_model=True)
            picture.value = to_png(plot_run(run))
            answer.value = f"<b>{check_prediction(choice.value, run)}</b>"
        except Exception as error:  # shown, never lost
            answer.value = f"<pre style='color:#b00020'>{type(error).__name__}: {error}</pre>"
        finally:
            button.disabled = False

    button.on_click(go)
    return widgets.VBox([choice, button, answer, picture])


def save_results(path: str | os.PathLike, **results: Any) -> None:
    """Write a lesson's key results as JSON (what tests/test_notebooks.py checks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float))
    print(f"results written to {path}")
