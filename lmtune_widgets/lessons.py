"""What the lesson notebooks share: set-up, quick mode, sweeps, the predict-then-run exercise, results, and the
recorded evidence said in words (each picture drawn by `plotting`, each lookup made by `atlas`).

    from lmtune_widgets import lessons
    device = lessons.setup()                              # quiet logs; says CPU or GPU
    base = lessons.base_config(QUICK)                     # the defaults, shrunk when QUICK
    runs = lessons.sweep(base, "learning_rate", [1e-5, 1e-4, 1e-3])
    lessons.show(plot_runs(runs, labels=...))             # a static picture that GitHub shows
    lessons.save_results(RESULTS_PATH, best=...)
    groups = lessons.recorded_sweep("learning_rate", [1e-4, 5e-4])   # recorded seeds as bands: no training
    lessons.recorded_grid("freeze_layers", [0, 4], "learning_rate", [1e-4, 2e-3])  # two knobs: a line per value
    lessons.is_it_real(first, second)                     # the one rule, said plainly
    lessons.check_claims("01")                            # the lesson's claims, checked on the recorded runs
    atlas.recorded(learning_rate=1e-3)                    # recorded seeds (was lessons.recorded)
    plotting.plot_tradeoff(groups, field)                 # and plot_errors, colours_for (were lessons.)

`QUICK = True` (papermill in CI) shrinks every live run to a few seconds so the whole series executes fast;
`QUICK = False` is what learners run. Sweeps and comparisons come from the recorded runs (the atlas: several seeds
per setting, drawn as bands at once), the same in both modes, and every claim a lesson makes is checked on them
by its last cell (`check_claims`), so CI asserts each lesson's claims on every run.

Within one kernel, settings that were already trained are not trained again: a run is deterministic for a given
configuration and seed (tested), so `run_once`, `sweep` and the exercise reuse the earlier run's curves and say so.

`lessons.recorded`, `colours_for`, `plot_tradeoff` and `plot_errors` moved to `atlas` and `plotting`; the old names
still work for this release, with a DeprecationWarning.
"""
from __future__ import annotations

import json
import math
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

    from .atlas import device_note

    device = f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"Training will run on: {device}")
    note = device_note()
    if note:
        print(note)
    if in_colab():
        _colab_setup()
    return device


def _colab_setup() -> None:
    """In Colab: its widget stack, and where the kit keeps what it computes once."""
    import ipywidgets

    from .feature_cache import cache_root

    if int(ipywidgets.__version__.split(".")[0]) >= 8:  # Colab ships 7.7; 8 needs Colab's own widget manager
        from google.colab import output

        output.enable_custom_widget_manager()
        print(f"ipywidgets {ipywidgets.__version__}: Colab's custom widget manager is on (Colab ships 7.7, which "
              "needs none).")
    print(f"Computed once and kept in {cache_root()}: the runtime's own disk, emptied when the runtime is reset "
          "(then the first run computes them again, in seconds for MiniLM, under a minute for the LLM).")


def base_config(quick: bool, **overrides: Any) -> FineTuneConfig:
    """The kit's defaults with a lesson's overrides; shrunk to a few seconds per run when `quick`."""
    config = FineTuneConfig(**overrides)
    if quick:
        config = config.replace(**{k: v for k, v in QUICK_SETTINGS.items() if k not in ("num_train_epochs",)},
                                num_train_epochs=min(config.num_train_epochs, 2))
    return config


_DONE: dict[FineTuneConfig, Run] = {}  # finished runs of this kernel, by their full settings


def _train(config: FineTuneConfig, keep_model: bool, thorough: bool = False) -> tuple[Run, str]:
    """Fine-tune, or reuse this kernel's earlier run of exactly these settings. Returns the run and a timing note.
    `thorough` also scores what the kept model still knows (its sentence similarity, lesson 10)."""
    from .training import fine_tune

    earlier = _DONE.get(config)
    if earlier is not None and (not thorough or "similarity" in earlier.kept):
        return earlier, "reused (these settings ran before)"
    t = time.perf_counter()
    run = fine_tune(config, keep_model=keep_model, thorough=thorough)
    if run.status not in ("stopped", "failed"):  # a stopped run is not what these settings give
        _DONE[config] = run
    return run, f"{time.perf_counter() - t:.1f} s"


def run_once(config: FineTuneConfig, label: str = "", thorough: bool = False) -> Run:
    """One fine-tune with a one-line report; a new run keeps its weights (`run.predict`). `thorough` also reports
    the kept model's sentence similarity before and after (what fine-tuning made it forget)."""
    run, took = _train(config, keep_model=True, thorough=thorough)
    d = diagnose(run)
    print(f"{label or 'run'}: {d.verdict} (status {run.status}), best validation accuracy {d.best_accuracy:.1%}, "
          f"{took}")
    if thorough and "similarity" in run.kept:
        print(f"sentence similarity (Spearman): {run.meta['similarity_before']:.2f} before fine-tuning, "
              f"{run.kept['similarity']:.2f} after")
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


# ------------------------------------------------------------------------------------------------ recorded evidence
def recorded_sweep(field: str, values: Iterable[Any], base: FineTuneConfig | None = None,
                   labels: list[str] | None = None, title: str | None = None, reference: Any = None,
                   curves: Iterable[Any] | None = None, measure=None, what: str = "kept accuracy",
                   draw: bool = True, book=None) -> dict[Any, list[Run]]:
    """The recorded seeds of `base` with `field` set to each value, at once (no training), from the bundled atlas
    or from `book` (an `atlas.Book`, e.g. of other data: `atlas.load(folder=...).on_file(path)`). Draws the curves of
    `curves` (by default every value, or four spread out when there are more) as seed bands, then the kept accuracy
    (or `measure`, named `what`) of every seed against the value, with the reference's range shaded: a value whose
    range stays clear of the shading differs from it by the one rule. Prints one line per value. Returns
    {value: runs}."""
    from .plotting import setting_label

    base = base or FineTuneConfig()
    values = list(values)
    reference = getattr(base, field) if reference is None else reference
    if reference not in values:
        values.append(reference)  # judged against, not listed: drawn only if asked for
    names = dict(zip(values, labels or [setting_label(field, value) for value in values]))
    names.setdefault(reference, setting_label(field, reference))
    settings = {value: base.replace(**{field: value}) for value in values}
    found = recorded_compare(settings, reference, names, title, curves, measure, what, draw, axis=field, book=book)
    return found


def recorded_compare(settings: dict[Any, FineTuneConfig], reference: Any, names: dict[Any, str] | None = None,
                     title: str | None = None, curves: Iterable[Any] | None = None, measure=None,
                     what: str = "kept accuracy", draw: bool = True, axis: str = "settings",
                     colours_at: dict[str, Any] | None = None, book=None) -> dict[Any, list[Run]]:
    """Like `recorded_sweep`, for any recorded settings ({key: config}), each judged against `reference` (a key);
    from `book` when given (a setting it lacks has no seeds: ValueError naming it). Each band is in its setting's
    colour (`plotting.colours_for`), or with `colours_at` (fields to change, e.g. {"learning_rate": 5e-4}) in the
    colour the setting has with them changed: the same comparison at another learning rate keeps the colours of the
    lesson's pictures at the first."""
    from collections import Counter

    from . import atlas
    from .plotting import colours_for, plot_bands, plot_sweep
    from .runs import accuracy_range, compare_runs, kept_accuracy

    measure = measure or kept_accuracy
    groups = {key: atlas.recorded(config) if book is None else book.runs(config) for key, config in settings.items()}
    if any(not found for found in groups.values()):
        raise ValueError("not recorded in this book: " + "; ".join(str(settings[k].changes() or "the defaults")
                                                                   for k, found in groups.items() if not found))
    names = names or {key: str(key) for key in settings}
    against = groups[reference]
    comparisons = {key: compare_runs(found, against, measure, what) for key, found in groups.items() if key != reference}
    verdicts = {key: comparisons[key].verdict if key in comparisons else "reference" for key in groups}
    keys = list(groups)
    if draw:
        if curves is None:
            curves = keys if len(keys) <= 5 else [keys[round(i * (len(keys) - 1) / 3)] for i in range(4)]
        curves = list(curves)
        if curves:  # each setting keeps one colour in all the lesson's pictures
            show(plot_bands([groups[k] for k in curves], [names[k] for k in curves], title=title,
                            colours=colours_for(settings[k].replace(**(colours_at or {})) for k in curves)))
        show(plot_sweep(groups, verdicts, against, axis, names, measure, what, title))
    fmt = (lambda x: f"{x:6.1%}") if "accuracy" in what or "rate" in what else (lambda x: f"{x:5.2f}")
    for key, found in groups.items():
        low, high = accuracy_range(found, measure)
        shapes = ", ".join(f"{n} {v}" for v, n in Counter(diagnose(r).verdict for r in found).items())
        mean = sum(measure(r) for r in found) / len(found) if found else math.nan
        rule = comparisons[key].short if key in comparisons else "reference"
        print(f"{names[key]:>22}: {what} {fmt(low)} to {fmt(high)} over {len(found)} seeds, mean {fmt(mean).strip()} "
              f"({shapes}); against {names[reference]}: {rule}")
    return groups


def recorded_rows(groups: dict[Any, list[Run]], field: str) -> list[dict[str, Any]]:
    """A row per swept value of a recorded sweep: its seeds, kept accuracy range and verdicts (for results files)."""
    from .runs import accuracy_range

    rows = []
    for value, found in groups.items():
        low, high = accuracy_range(found)
        rows.append({field: value, "seeds": len(found), "kept_accuracy_low": round(low, 4),
                     "kept_accuracy_high": round(high, 4), "verdicts": [diagnose(r).verdict for r in found]})
    return rows


def recorded_grid(line_field: str, line_values: Iterable[Any], x_field: str, x_values: Iterable[Any],
                  base: FineTuneConfig | None = None, names: dict[Any, str] | None = None, title: str | None = None,
                  draw: bool = True, measure=None, what: str = "kept accuracy",
                  lower_is_better: bool = False, colours_like: FineTuneConfig | None = None,
                  ) -> dict[Any, dict[Any, list[Run]]]:
    """A recorded two-knob grid, at once (`atlas.recorded_grid`), drawn (`plotting.plot_grid`: the kept accuracy, or
    `measure` named `what`, of every seed against `x_field`, a line per value of `line_field`, each line's best value
    starred). Combinations that were not recorded are left out and named. Prints each line's best value and its
    range. `colours_like`: draw each line in the colour its value has on that base (the same grid on another task
    keeps its colours). Returns {line value: {x value: runs}}."""
    from . import atlas
    from .plotting import plot_grid, setting_label
    from .runs import kept_accuracy

    measure = measure or kept_accuracy
    names = names or {}
    grid = atlas.recorded_grid(line_field, line_values, x_field, x_values, base)
    if grid.missing:
        print("not recorded (left out): " + "; ".join(f"{setting_label(line_field, line)}, {setting_label(x_field, x)}"
                                                     for line, x in grid.missing))
    if draw:
        show(plot_grid(grid, names, title, measure, what, lower_is_better, colours_like))
    fmt = (lambda x: f"{x:.1%}") if "accuracy" in what else (lambda x: f"{x:.3f}")
    for line, best in grid.best(measure, lower_is_better).items():
        low, high = grid.spread(line, best, measure)
        print(f"{names.get(line, setting_label(line_field, line)):>22}: best at {setting_label(x_field, best)}, {what} "
              f"{fmt(low)} to {fmt(high)} over {len(grid.cells[line][best])} seeds")
    return grid.cells


def is_it_real(first: list[Run], second: list[Run], names: tuple[str, str] = ("first", "second"),
               title: str | None = None) -> str:
    """Two settings, each recorded with several seeds: their bands side by side, and the rule's verdict in words."""
    from .plotting import plot_bands
    from .runs import compare_runs

    show(plot_bands([first, second], list(names), title=title))  # each in its setting's colour (`colours_for`)
    verdict = compare_runs(first, second)
    answer = f"{names[0]} against {names[1]}: {verdict}"
    print(answer)
    return verdict.verdict


def check_claims(lesson: str) -> None:
    """Every claim this lesson makes, checked on the recorded runs (an AssertionError if one does not hold)."""
    from .evidence import assert_claims

    assert_claims(lesson)


# ------------------------------------------------------------------------------------------------ errors by kind
def show_errors(run: Run, count: int = 8) -> list[dict[str, Any]]:
    """The validation messages the run's kept model gets wrong (the first `count`), with their kind."""
    from .data import splits_for

    validation = splits_for(run.config).validation
    texts, labels = list(validation["text"]), list(validation["label"])
    kinds = list(validation["phenomenon"]) if "phenomenon" in validation.column_names else [""] * len(texts)
    predicted = run.predict(texts)
    wrong = [{"kind": kind or "", "label": run.label_names[label], "predicted": guess, "text": text}
             for text, label, kind, guess in zip(texts, labels, kinds, predicted) if guess != run.label_names[label]]
    print(f"{len(wrong)} of {len(texts)} validation messages wrong; the first {min(count, len(wrong))}:")
    for row in wrong[:count]:
        print(f"{row['kind']:>9} | said {row['predicted']:>8}, is {row['label']:>8} | {row['text']}")
    return wrong


def leaderboard(top: int = 8) -> list[dict[str, Any]]:
    """The recorded settings on the defaults' data, best lowest seed first: each one's kept accuracy over its seeds
    and whether it beats the defaults by the rule. A search over the recorded runs, with its noise shown."""
    from . import atlas
    from .evidence_measures import comparable_settings
    from .runs import accuracy_range, compare_runs

    book = atlas.load()
    settings = comparable_settings(book)
    defaults = book.runs(FineTuneConfig())
    rows = []
    for name, found in settings.items():
        low, high = accuracy_range(found)
        judged = None if name == "the defaults" else compare_runs(found, defaults)
        rows.append({"settings": name, "seeds": len(found), "low": low, "high": high,
                     "against the defaults": judged.verdict if judged else "-", "in words": judged.short if judged else "-"})
    rows.sort(key=lambda r: (-r["low"], -r["high"]))
    others = sum(1 for row in rows if row["settings"] != "the defaults")
    own = next(row for row in rows if row["settings"] == "the defaults")
    print(f"the defaults: {own['low']:.1%} to {own['high']:.1%} over {own['seeds']} seeds (the reference)")
    print(f"{len(rows)} recorded settings on the defaults' data (the defaults and {others} others); "
          f"the {min(top, len(rows))} with the best lowest seed:")
    for row in rows[:top]:
        print(f"{row['settings'][:44]:>44}: {row['low']:.1%} to {row['high']:.1%} over {row['seeds']} seeds, "
              f"{row['in words']}")
    return rows


def compare_methods(methods: dict[str, tuple[FineTuneConfig, Iterable[float]]], reference: str,
                    batch_size: int = 8, seq_len: int = 64) -> list[dict[str, Any]]:
    """Ways of fine-tuning the same model on the same data, each at its own best recorded learning rate (of the
    rates given: the one whose seeds keep the best mean), side by side: trainable weights, seconds per epoch, the memory a training step adds (`memory.estimate`, float32), the kept accuracy over the
    seeds and, for a decoder LLM, what it forgot (its next-token loss on everyday text after minus before). Each is
    judged against `reference` by the one rule. Prints a line per method; returns the rows. (Seconds: the fastest
    recorded seed, since a shared machine only ever slows a run down.)"""
    from . import atlas, memory
    from .evidence_measures import forgetting, mean_of, per_epoch_seconds, tuned
    from .plotting import short_number
    from .runs import accuracy_range, compare_runs

    book = atlas.load()
    best = {name: tuned(book, rates, **{k: v for k, v in config.to_dict().items() if k != "learning_rate"})
            for name, (config, rates) in methods.items()}
    rows = []
    for name, (rate, found) in best.items():
        config = found[0].config
        method = "lora" if config.lora_r else ("full" if config.freeze_layers == 0 else "freeze")
        layers = found[0].meta["num_layers"] - config.freeze_layers
        bill = memory.estimate(memory.SHAPES["135M"], method, "fp32", batch_size, seq_len, layers, config.lora_r or 8)
        low, high = accuracy_range(found)
        lost = [forgetting(r) for r in found]
        seconds = min(per_epoch_seconds(r) for r in found)  # the least disturbed by whatever else ran
        judged = None if name == reference else compare_runs(found, best[reference][1])
        verdict = judged.verdict if judged else "reference"
        rows.append({"method": name, "learning_rate": rate, "trainable": found[0].meta["trainable_parameters"],
                     "total": found[0].meta["total_parameters"], "seconds_per_epoch": round(seconds, 1),
                     "step_memory_gb": round((bill.total - bill.bytes["weights"]) / 1e9, 2),
                     "kept_accuracy": [round(low, 4), round(high, 4)], "mean_accuracy": round(mean_of(found), 4),
                     "forgot": [round(min(lost), 3), round(max(lost), 3)], "against_reference": verdict})
        print(f"{name:>24} at {short_number(rate)}: {rows[-1]['trainable'] / 1e6:6.2f} M trainable, "
              f"{seconds:5.0f} s per epoch, "
              f"+{rows[-1]['step_memory_gb']:.2f} GB a step; kept {low:.1%} to {high:.1%} over {len(found)} seeds; "
              f"forgot {min(lost):+.3f} to {max(lost):+.3f} nats; against {reference}: {judged.short if judged else verdict}")
    return rows


# ---------------------------------------------------------------------------------- moved (this release only)
def recorded(config: FineTuneConfig | None = None, **changes: Any) -> list[Run]:
    """Deprecated: `atlas.recorded`."""
    from . import atlas

    _moved("recorded", "atlas.recorded")
    return atlas.recorded(config, **changes)


def colours_for(configs: Iterable[FineTuneConfig]) -> list[str]:
    """Deprecated: `plotting.colours_for`."""
    from .plotting import colours_for

    _moved("colours_for", "plotting.colours_for")
    return colours_for(configs)


def plot_tradeoff(groups: dict[Any, list[Run]], field: str, title: str | None = None):
    """Deprecated: `plotting.plot_tradeoff`."""
    from .plotting import plot_tradeoff

    _moved("plot_tradeoff", "plotting.plot_tradeoff")
    return plot_tradeoff(groups, field, title)


def plot_errors(groups: dict[str, list[Run]], title: str = "Error rate of the kept model, by kind of message"):
    """Deprecated: `plotting.plot_errors`."""
    from .plotting import plot_errors

    _moved("plot_errors", "plotting.plot_errors")
    return plot_errors(groups, title)


def _moved(name: str, to: str) -> None:
    """Say where `lessons.<name>` went (to the caller of the old name): it works for this release only."""
    import warnings

    warnings.warn(f"lessons.{name} moved to {to}; lessons.{name} will be removed in the next release",
                  DeprecationWarning, stacklevel=3)
