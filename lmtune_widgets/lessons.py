"""What the lesson notebooks share: set-up, quick mode, sweeps, the predict-then-run exercise, results.

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

`QUICK = True` (papermill in CI) shrinks every live run to a few seconds so the whole series executes fast;
`QUICK = False` is what learners run. Sweeps and comparisons come from the recorded runs (the atlas: several seeds
per setting, drawn as bands at once), the same in both modes, and every claim a lesson makes is checked on them
by its last cell (`check_claims`), so CI asserts each lesson's claims on every run.

Within one kernel, settings that were already trained are not trained again: a run is deterministic for a given
configuration and seed (tested), so `run_once`, `sweep` and the exercise reuse the earlier run's curves and say so.
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
def recorded(config: FineTuneConfig | None = None, **changes: Any) -> list[Run]:
    """The recorded seeds of `config` (the defaults) with `changes`; ValueError naming it if it is not recorded."""
    from . import atlas

    config = (config or FineTuneConfig()).replace(**changes)
    found = atlas.load().runs(config)
    if not found:
        raise ValueError(f"not recorded: {config.changes() or 'the defaults'} (see `make atlas`)")
    return found


_COLOUR_OF: dict[tuple, str] = {}  # settings (apart from the seed) -> colour, for this kernel: one colour a setting


def colours_for(configs: Iterable[FineTuneConfig]) -> list[str]:
    """A colour for each setting, the same in every picture of a lesson: the defaults are always the first colour,
    and any other setting keeps the colour it got when first drawn (unless a setting already in this picture has it)."""
    from .config import config_key
    from .plotting import COLOURS

    if not _COLOUR_OF:
        _COLOUR_OF[config_key(FineTuneConfig())] = COLOURS[0]
    used: list[str] = []
    for config in configs:
        key = config_key(config)
        colour = _COLOUR_OF.get(key)
        if colour is None or colour in used:
            free = [c for c in COLOURS if c not in used]
            fresh = [c for c in free if c not in _COLOUR_OF.values()]
            colour = (fresh or free or COLOURS)[0]
            _COLOUR_OF.setdefault(key, colour)
        used.append(colour)
    return used


def _number(value: Any) -> str:
    """1e-05, 3.2e-05, 0.1, 16: as short as the value allows."""
    if isinstance(value, float) and value and abs(value) < 1e-2:
        short = f"{value:.0e}"
        return short if float(short) == value else f"{value:.1e}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label(field: str, value: Any) -> str:
    return f"{field} {_number(value)}"


def recorded_sweep(field: str, values: Iterable[Any], base: FineTuneConfig | None = None,
                   labels: list[str] | None = None, title: str | None = None, reference: Any = None,
                   curves: Iterable[Any] | None = None, measure=None, what: str = "kept accuracy",
                   draw: bool = True) -> dict[Any, list[Run]]:
    """The recorded seeds of `base` with `field` set to each value, at once (no training). Draws the curves of
    `curves` (by default every value, or four spread out when there are more) as seed bands, then the kept accuracy
    (or `measure`, named `what`) of every seed against the value, with the reference's range shaded: a value whose
    range stays clear of the shading differs from it by the one rule. Prints one line per value. Returns
    {value: runs}."""
    base = base or FineTuneConfig()
    values = list(values)
    reference = getattr(base, field) if reference is None else reference
    if reference not in values:
        values.append(reference)  # judged against, not listed: drawn only if asked for
    names = dict(zip(values, labels or [_label(field, value) for value in values]))
    names.setdefault(reference, _label(field, reference))
    settings = {value: base.replace(**{field: value}) for value in values}
    found = recorded_compare(settings, reference, names, title, curves, measure, what, draw, axis=field)
    return found


def recorded_compare(settings: dict[Any, FineTuneConfig], reference: Any, names: dict[Any, str] | None = None,
                     title: str | None = None, curves: Iterable[Any] | None = None, measure=None,
                     what: str = "kept accuracy", draw: bool = True, axis: str = "settings") -> dict[Any, list[Run]]:
    """Like `recorded_sweep`, for any recorded settings ({key: config}), each judged against `reference` (a key)."""
    from collections import Counter

    from .plotting import plot_bands
    from .runs import accuracy_range, compare_runs, kept_accuracy

    measure = measure or kept_accuracy
    groups = {key: recorded(config) for key, config in settings.items()}
    names = names or {key: str(key) for key in settings}
    against = groups[reference]
    verdicts = {key: "reference" if key == reference else compare_runs(found, against, measure, what).verdict
                for key, found in groups.items()}
    keys = list(groups)
    if draw:
        if curves is None:
            curves = keys if len(keys) <= 5 else [keys[round(i * (len(keys) - 1) / 3)] for i in range(4)]
        curves = list(curves)
        if curves:  # each setting keeps one colour in all the lesson's pictures
            show(plot_bands([groups[k] for k in curves], [names[k] for k in curves], title=title,
                            colours=colours_for(settings[k] for k in curves)))
        show(_sweep_figure(axis, groups, names, verdicts, against, measure, what, title))
    fmt = (lambda x: f"{x:6.1%}") if "accuracy" in what or "rate" in what else (lambda x: f"{x:5.2f}")
    for key, found in groups.items():
        low, high = accuracy_range(found, measure)
        shapes = ", ".join(f"{n} {v}" for v, n in Counter(diagnose(r).verdict for r in found).items())
        rule = {"higher": "higher (real)", "lower": "lower (real)"}.get(verdicts[key], verdicts[key])
        print(f"{names[key]:>22}: {what} {fmt(low)} to {fmt(high)} over {len(found)} seeds ({shapes}); "
              f"against {names[reference]}: {rule}")
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


def plot_tradeoff(groups: dict[Any, list[Run]], field: str, title: str | None = None):
    """Every recorded seed as a point: the kept model's accuracy on the task against its sentence similarity
    (what it still knows from pretraining), one colour per value of `field`."""
    import matplotlib
    from matplotlib.figure import Figure

    from .evidence_measures import similarity
    from .runs import kept_accuracy

    fig = Figure(figsize=(6.4, 3.6))
    fig.subplots_adjust(left=0.12, right=0.72, bottom=0.15, top=0.88)
    ax = fig.subplots()
    shades = matplotlib.colormaps["viridis"]  # one value after another, light to dark: no red or green verdicts here
    for i, (value, found) in enumerate(groups.items()):
        ax.plot([similarity(r) for r in found], [kept_accuracy(r) for r in found], "o",
                color=shades(0.9 - 0.85 * i / max(1, len(groups) - 1)), markeredgecolor="black", markeredgewidth=0.4,
                label=_number(value))
    before = next((r.meta.get("similarity_before") for found in groups.values() for r in found), None)
    if before is not None:
        ax.axvline(before, color="grey", ls=":", lw=1)
        ax.annotate("before\nfine-tuning", (before, 1), xycoords=("data", "axes fraction"), fontsize=7, ha="right",
                    va="top", xytext=(-3, -3), textcoords="offset points")
    ax.set(xlabel="sentence similarity kept (Spearman; right is better)", ylabel="kept accuracy on the task")
    ax.grid(alpha=0.3)
    ax.legend(title=field, fontsize=7, title_fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_title(title or "What the task gains against what pretraining loses", fontsize=10)
    return fig


def _side_by_side(points: list[float], gap: float = 4.5) -> list[float]:
    """A sideways shift in points for each value, so seeds that kept the same accuracy show as separate dots."""
    shifts, seen = [], {}
    for point in points:
        key = round(point, 4)
        seen[key] = seen.get(key, 0) + 1
        shifts.append(seen[key] - 1)
    count = {key: n for key, n in seen.items()}
    return [gap * (k - (count[round(p, 4)] - 1) / 2) for p, k in zip(points, shifts)]


def _sweep_figure(field, groups, names, verdicts, against, measure, what, title):
    """Every seed's kept accuracy (a dot) against the swept value, each value's range as a bar, the reference's
    range shaded across: bars that overlap the shading are within the noise. Seeds that kept the same accuracy
    sit side by side."""
    import math

    from matplotlib.figure import Figure
    from matplotlib.transforms import ScaledTranslation

    from .runs import accuracy_range

    values = list(groups)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    logscale = numeric and min(values) > 0 and max(values) / min(values) >= 20
    xs = values if numeric else list(range(len(values)))
    lower_is_better = "loss" in what  # green reads as better and red as worse: for a loss, lower is green
    colours = {"reference": "black", "higher": "#d62728" if lower_is_better else "#2ca02c",
               "lower": "#2ca02c" if lower_is_better else "#d62728"}
    better, worse = ("lower", "higher") if lower_is_better else ("higher", "lower")
    fig = Figure(figsize=(6.4, 3.4))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.19, top=0.8)
    ax = fig.subplots()
    low, high = accuracy_range(against, measure)
    ax.axhspan(low, high, color="grey", alpha=0.2, lw=0, label="the reference's range")
    for x, (value, found) in zip(xs, groups.items()):
        points = [measure(r) for r in found if math.isfinite(measure(r))]
        colour = colours.get(verdicts[value], "#7f7f7f")
        ax.vlines(x, min(points), max(points), color=colour, lw=2, alpha=0.6)
        for point, shift in zip(points, _side_by_side(points)):
            ax.plot([x], [point], "o", color=colour, markersize=4,
                    transform=ax.transData + ScaledTranslation(shift / 72, 0, fig.dpi_scale_trans))
    positive = [v for v in values if numeric and v > 0]
    if logscale:
        ax.set_xscale("log")
    elif numeric and 0 in values and len(positive) >= 2 and max(positive) / min(positive) >= 20:
        # a sweep from 0 over decades (weight decay 0, 0.01 ... 1): log spacing, with 0 one step left of the rest
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.6)
    ax.set_xticks(xs)
    ax.set_xticklabels([names[v].replace(f"{field} ", "") for v in values], fontsize=8,
                       rotation=30 if not numeric else 0)
    ax.minorticks_off()
    ax.set(xlabel=field, ylabel=what)
    ax.grid(alpha=0.3)
    ax.set_title((title + ": " if title else "") + f"{what} of every seed\n"
                 f"(black and the shading: the reference; green/red: {better}/{worse} than it\n"
                 "by the rule; grey: within the noise)", fontsize=9)
    return fig


def recorded_grid(line_field: str, line_values: Iterable[Any], x_field: str, x_values: Iterable[Any],
                  base: FineTuneConfig | None = None, names: dict[Any, str] | None = None, title: str | None = None,
                  draw: bool = True, measure=None, what: str = "kept accuracy",
                  lower_is_better: bool = False, colours_like: FineTuneConfig | None = None,
                  ) -> dict[Any, dict[Any, list[Run]]]:
    """A recorded two-knob grid, at once: the kept accuracy (or `measure`, named `what`) of every seed (a dot)
    against `x_field`, one line per value of `line_field` (the seeds' mean, their range shaded), each line's best
    value starred. Combinations that were not recorded are left out and named. Prints each line's best value and
    its range. `colours_like`: draw each line in the colour its value has on that base (the same grid on another
    task keeps its colours). Returns {line value: {x value: runs}}."""
    from matplotlib.figure import Figure

    from .evidence_measures import mean_of
    from .runs import accuracy_range, kept_accuracy

    base = base or FineTuneConfig()
    names = names or {}
    measure = measure or kept_accuracy
    grid: dict[Any, dict[Any, list[Run]]] = {}
    missing = []
    for line in line_values:
        grid[line] = {}
        for x in x_values:
            try:
                grid[line][x] = recorded(base, **{line_field: line, x_field: x})
            except ValueError:
                missing.append(f"{_label(line_field, line)}, {_label(x_field, x)}")
    if missing:
        print("not recorded (left out): " + "; ".join(missing))
    pick = min if lower_is_better else max
    best = {line: pick(cells, key=lambda x: mean_of(cells[x], measure)) for line, cells in grid.items() if cells}
    if draw:
        fig = Figure(figsize=(6.4, 3.6))
        fig.subplots_adjust(left=0.12, right=0.72, bottom=0.15, top=0.88)
        ax = fig.subplots()
        drawn = [line for line, cells in grid.items() if cells]
        line_colours = dict(zip(drawn, colours_for((colours_like or base).replace(**{line_field: line}) for line in drawn)))
        for line, cells in grid.items():
            if not cells:
                continue
            colour, xs = line_colours[line], list(cells)
            ax.fill_between(xs, [accuracy_range(cells[x], measure)[0] for x in xs],
                            [accuracy_range(cells[x], measure)[1] for x in xs], color=colour, alpha=0.18, lw=0)
            ax.plot(xs, [mean_of(cells[x], measure) for x in xs], "-", color=colour, lw=1.5,
                    label=names.get(line, _label(line_field, line)))
            for x in xs:
                ax.plot([x] * len(cells[x]), [measure(r) for r in cells[x]], "o", color=colour, markersize=3)
            ax.plot([best[line]], [mean_of(cells[best[line]], measure)], "*", markersize=14, markerfacecolor="none",
                    markeredgecolor=colour, markeredgewidth=1.6)  # hollow: stars of lines that meet stay visible
        chance = next((r.meta.get("chance_accuracy") for cells in grid.values() for found in cells.values() for r in found), None)
        if chance and measure is kept_accuracy:
            values = [measure(r) for cells in grid.values() for found in cells.values() for r in found]
            values = [v for v in values if math.isfinite(v)]
            if values and min(values) - chance > max(values) - min(values):  # drawn, chance would squash the lines
                ax.text(0.01, 0.02, f"chance ({chance:.0%}) is below the scale", transform=ax.transAxes,
                        fontsize=7, color="grey")
            else:
                ax.axhline(chance, color="grey", lw=1, ls=":")
        numeric = all(isinstance(x, (int, float)) for cells in grid.values() for x in cells)
        if numeric and x_field == "learning_rate":
            ax.set_xscale("log")
            recorded_xs = sorted({x for cells in grid.values() for x in cells})
            if len(recorded_xs) <= 8:  # ticks at the recorded values, not at powers of ten between them
                ax.set_xticks(recorded_xs, [_number(x) for x in recorded_xs], fontsize=8)
                ax.minorticks_off()
        ax.set(xlabel=x_field.replace("_", " "), ylabel=f"{what} (each dot a seed)")
        ax.grid(alpha=0.3)
        if any(grid.values()):
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            ax.text(0.5, 0.5, "not recorded yet", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_title(title or f"{what.capitalize()}: {x_field} for each {line_field}", fontsize=10)
        show(fig)
    fmt = (lambda x: f"{x:.1%}") if "accuracy" in what else (lambda x: f"{x:.3f}")
    for line, cells in grid.items():
        if cells:
            low, high = accuracy_range(cells[best[line]], measure)
            print(f"{names.get(line, _label(line_field, line)):>22}: best at {_label(x_field, best[line])}, {what} "
                  f"{fmt(low)} to {fmt(high)} over {len(cells[best[line]])} seeds")
    return grid


def is_it_real(first: list[Run], second: list[Run], names: tuple[str, str] = ("first", "second"),
               title: str | None = None) -> str:
    """Two settings, each recorded with several seeds: their bands side by side, and the rule's verdict in words."""
    from .plotting import plot_bands
    from .runs import compare_runs

    show(plot_bands([first, second], list(names), title=title,
                    colours=colours_for(group[0].config for group in (first, second) if group) if first and second
                    else None))
    verdict = compare_runs(first, second)
    answer = f"{names[0]} against {names[1]}: {verdict}"
    print(answer)
    return verdict.verdict


def check_claims(lesson: str) -> None:
    """Every claim this lesson makes, checked on the recorded runs (an AssertionError if one does not hold)."""
    from .evidence import assert_claims

    assert_claims(lesson)


# ------------------------------------------------------------------------------------------------ errors by kind
def plot_errors(groups: dict[str, list[Run]], title: str = "Error rate of the kept model, by kind of message"):
    """For each named group of recorded seeds (a panel each): every seed's error rate on each kind of message
    (the data's `phenomenon` column) as a dot, the range as a bar, with the number of messages of that kind."""
    from matplotlib.figure import Figure

    from .evidence_measures import error_rate

    fig = Figure(figsize=(4.2 * len(groups), 2.9))
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.18, top=0.8, wspace=0.45)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (name, found) in zip(axes, groups.items()):
        counts = found[0].kept.get("errors_by_phenomenon") or {}
        kinds = sorted(counts, key=lambda k: -counts[k][1])
        for y, kind in enumerate(kinds):
            rates = [error_rate(kind)(r) for r in found]
            ax.hlines(y, min(rates), max(rates), color="#1f77b4", lw=3, alpha=0.5)
            ax.plot(rates, [y] * len(rates), "o", color="#1f77b4", markersize=4)
        ax.set_yticks(range(len(kinds)))
        ax.set_yticklabels([f"{k} ({counts[k][1]})" for k in kinds], fontsize=8)
        ax.set(xlabel="error rate", xlim=(0, 1))
        ax.set_title(f"{name}, {len(found)} seeds", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def show_errors(run: Run, count: int = 8) -> list[dict[str, Any]]:
    """The validation messages the run's kept model gets wrong (the first `count`), with their kind."""
    from .data import load_splits

    validation = load_splits(run.config.task, run.config.dataset).validation
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
        rows.append({"settings": name, "seeds": len(found), "low": low, "high": high,
                     "against the defaults": "-" if name == "the defaults" else compare_runs(found, defaults).verdict})
    rows.sort(key=lambda r: (-r["low"], -r["high"]))
    others = sum(1 for row in rows if row["settings"] != "the defaults")
    own = next(row for row in rows if row["settings"] == "the defaults")
    print(f"the defaults: {own['low']:.1%} to {own['high']:.1%} over {own['seeds']} seeds (the reference)")
    print(f"{len(rows)} recorded settings on the defaults' data (the defaults and {others} others); "
          f"the {min(top, len(rows))} with the best lowest seed:")
    for row in rows[:top]:
        print(f"{row['settings'][:44]:>44}: {row['low']:.1%} to {row['high']:.1%} over {row['seeds']} seeds, "
              f"{row['against the defaults']}")
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
        verdict = "reference" if name == reference else compare_runs(found, best[reference][1]).verdict
        rows.append({"method": name, "learning_rate": rate, "trainable": found[0].meta["trainable_parameters"],
                     "total": found[0].meta["total_parameters"], "seconds_per_epoch": round(seconds, 1),
                     "step_memory_gb": round((bill.total - bill.bytes["weights"]) / 1e9, 2),
                     "kept_accuracy": [round(low, 4), round(high, 4)], "mean_accuracy": round(mean_of(found), 4),
                     "forgot": [round(min(lost), 3), round(max(lost), 3)], "against_reference": verdict})
        print(f"{name:>24} at {_number(rate)}: {rows[-1]['trainable'] / 1e6:6.2f} M trainable, {seconds:5.0f} s per epoch, "
              f"+{rows[-1]['step_memory_gb']:.2f} GB a step; kept {low:.1%} to {high:.1%} over {len(found)} seeds; "
              f"forgot {min(lost):+.3f} to {max(lost):+.3f} nats; against {reference}: {verdict}")
    return rows
