"""Pictures of runs: the curves of one run, several runs overlaid, seed bands, schedules, and the recorded
evidence (a sweep, a two-knob grid, errors by kind, what fine-tuning forgets).

    from lmtune_widgets.plotting import plot_run, plot_runs, plot_bands, to_png
    fig = plot_run(run)                  # loss, accuracy and learning rate; best epoch marked
    fig = plot_runs([run_a, run_b])      # the same panels, one colour per run
    fig = plot_bands([seeds_a, seeds_b], ["a", "b"], live=run)   # seed bands, a live run on top in black
    png = to_png(fig)                    # bytes, for an ipywidgets.Image or a file

The three panels are drawn into axes by `draw_run` and `draw_bands`: `plot_run` and `plot_bands` into a new figure
(`curves_figure`), the panel's `CurvesFigure` into its own figure again and again. Those functions give every
artist matplotlib's default look themselves (`figure_style`), so they draw the same whatever style the notebook
set, from any thread, and never touch matplotlib's global settings. The other pictures are drawn once from a
notebook cell, in a style context (`figure_style.default_style`) that puts the globals back as they were.

Every `plot_` function returns a `matplotlib.figure.Figure` built without pyplot, so nothing piles up in pyplot's
list of open figures.
"""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .config import FineTuneConfig, config_key
from .figure_style import (STYLE, default_style, line_style, new_figure, set_suptitle, set_title, style_axes,
                           style_text, styled_legend)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
VERDICT_COLOURS = {"good fit": "#2ca02c", "overfitting": "#ff7f0e", "underfitting": "#1f77b4", "diverged": "#d62728"}
LOSS_TITLE = "Loss (lower is better)"
LOSS_TITLE_OVERLAID = "Loss (solid: validation, dashed: train)"


# ------------------------------------------------------------------------------------------------ colours and names
_COLOUR_OF: dict[tuple, str] = {}  # settings (apart from the seed) -> colour, for this kernel: one colour a setting
_NEAR = [{"#d62728", "#e377c2"}, {"#1f77b4", "#17becf"}]  # pairs of COLOURS too alike for two lines of one picture
_LINE_OF: dict[tuple[str, tuple], str] = {}  # (x field, settings apart from it) -> colour of a grid's line


def _same_run(config: FineTuneConfig) -> FineTuneConfig:
    """One spelling of settings that train identically: transformers' "constant" schedule ignores warmup, so it is
    constant_with_warmup with warmup_ratio 0 (lesson 06's "neither" cell of the warmup x decay grid)."""
    if config.lr_scheduler_type == "constant" or (config.lr_scheduler_type == "constant_with_warmup"
                                                   and config.warmup_ratio == 0):
        return config.replace(lr_scheduler_type="constant", warmup_ratio=0.0)
    return config


def colour_key(config: FineTuneConfig, without: str | None = None) -> tuple:
    """What gives a setting its colour: its `config_key` (no seed), equal for two spellings of the same run;
    `without` leaves out one field (a grid's x field: every point of one line)."""
    key = config_key(_same_run(config))
    return tuple(item for item in key if item[0] != without) if without else key


def colours_for(configs: Iterable[FineTuneConfig], along: str | None = None) -> list[str]:
    """A colour for each setting, the same in every picture of a lesson: the defaults are always the first colour,
    and any other setting keeps the colour it got when first drawn (unless a setting already in this picture has it).
    Every lesson picture of settings takes its colours from here. `along`: each config is a grid's line along that
    field (`plot_grid`), so a later picture of the same settings at another value of it (one point of the line)
    keeps the line's colour. A setting never drawn gets a colour that no other setting of the lesson has, while
    there are colours left."""
    if not _COLOUR_OF:
        _COLOUR_OF[colour_key(FineTuneConfig())] = COLOURS[0]
    used: list[str] = []
    for config in configs:
        key = colour_key(config)
        colour = _COLOUR_OF.get(key)
        if colour is None:  # one point of a line drawn before
            colour = next((c for (field, rest), c in _LINE_OF.items() if colour_key(config, field) == rest), None)
        if colour is None or colour in used:
            free = [c for c in COLOURS if c not in used]
            taken = set(_COLOUR_OF.values()) | set(_LINE_OF.values())
            fresh = [c for c in free if c not in taken]
            apart = [c for c in fresh if not any({c, u} in _NEAR for u in used)]  # not red beside pink
            colour = (apart or fresh or free or COLOURS)[0]
        _COLOUR_OF.setdefault(key, colour)
        if along:
            _LINE_OF.setdefault((along, colour_key(config, along)), colour)
        used.append(colour)
    return used


def _colours_of_runs(groups: Sequence[Sequence]) -> list[str]:
    """`colours_for` the settings of each group of runs (a group's first run; COLOURS in order if one is empty)."""
    if all(groups):
        return colours_for(group[0].config for group in groups)
    return [COLOURS[i % len(COLOURS)] for i in range(len(groups))]


def short_number(value: Any) -> str:
    """1e-05, 3.2e-05, 0.1, 16: as short as the value allows."""
    if isinstance(value, float) and value and abs(value) < 1e-2:
        short = f"{value:.0e}"
        return short if float(short) == value else f"{value:.1e}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_label(field: str, value: Any) -> str:
    """'learning_rate 5e-04': a setting as the pictures and the lessons' printed lines name it."""
    return f"{field} {short_number(value)}"


# ------------------------------------------------------------------------------------------------ the three panels
def _finite(values):
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in values]


class Panels(NamedTuple):
    """The three panels of a run's picture, on one time axis."""

    loss: Axes
    accuracy: Axes
    rate: Axes


def curves_figure(width: float = 11.0, height: float = 3.4) -> tuple[Figure, Panels]:
    """A new figure with the three panels (loss, validation accuracy, learning rate), empty, sharing one time axis
    so they line up."""
    fig = new_figure(width, height)
    # Fixed margins, not a layout engine: measuring every label again on each redraw cost the panel 2x.
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.15, top=0.8, wspace=0.3, hspace=0.2)
    panels = Panels(*fig.subplots(1, 3, sharex=True))
    for ax, (title, ylabel) in zip(panels, ((LOSS_TITLE, "cross-entropy"), ("Validation accuracy", "accuracy"),
                                            ("Learning rate", "learning rate"))):
        style_axes(ax)
        set_title(ax, title)
        ax.set_xlabel("epoch", loc="center")
        ax.set_ylabel(ylabel, loc="center")
    clear_panels(panels)
    return fig, panels


def clear_panels(panels: Panels) -> None:
    """The panels as `curves_figure` makes them, to draw into again: what was drawn goes, the scales are linear,
    and the ranges come from what is drawn next (a panel left empty shows 0 to 1, not the last picture's range)."""
    for ax in panels:
        for artist in [*ax.lines, *ax.collections, *ax.texts]:
            artist.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        if ax.get_yscale() != "linear":  # a sweep over decades drew the learning rate on a log scale
            ax.set_yscale("linear")
            style_axes(ax)
        ax.yaxis.get_major_formatter().set_powerlimits(STYLE["axes.formatter.limits"])
        ax.relim()
        ax.set(xlim=(0, 1), ylim=(0, 1))
    for ax in panels:  # after every set_xlim: one on a shared axis turns autoscaling off on all three
        ax.set_autoscale_on(True)


def _step_epochs(run, count: int) -> list[float]:
    """The epoch at the end of each of the first `count` optimizer steps."""
    steps_per_epoch = run.meta.get("steps_per_epoch") or 1
    return [(k + 1) / steps_per_epoch for k in range(count)]


LOSS_AXIS_CAP = 3.0  # the loss axis stops here: a diverged run's huge losses would flatten every other curve
NOTE_STYLE = dict(x=0.97, y=0.95, ha="right", va="top", fontsize=7, zorder=1.5,  # under the lines, over the grid
                  bbox=dict(boxstyle="square", facecolor="white", alpha=0.85, edgecolor="none", pad=2))


def _losses(runs) -> list[float]:
    return [v for run in runs for key in ("train_loss", "eval_loss") for v in _finite(run.column(key))
            if not math.isnan(v)]


def _limit_loss_axis(ax, runs) -> None:
    """Keep a diverged run's huge losses from flattening every other curve (`loss_note` says what is cut off)."""
    values = _losses(runs)
    if values:
        ax.set_ylim(0, min(max(values) * 1.1, LOSS_AXIS_CAP) + 0.05)


def loss_note(runs) -> str:
    """What the loss panel would otherwise leave unsaid: losses above the axis, and runs that ended before their
    planned epochs (diverged or stopped), with where they ended. "" when there is nothing to say."""
    lines = []
    values = _losses(runs)
    if values and max(values) * 1.1 > LOSS_AXIS_CAP:
        lines.append(f"off the scale: losses up to {max(values):.3g}")
    for status, why in (("diverged", "diverged (the loss blew up)"), ("stopped", "stopped")):
        ended = [run for run in runs if run.status == status and run.history]
        if ended:
            last = max(run.history[-1]["epoch"] for run in ended)
            planned = max(run.config.num_train_epochs for run in ended)
            who = "" if len(runs) == 1 else f"all {len(runs)} runs " if len(ended) == len(runs) else \
                f"{len(ended)} of {len(runs)} runs "
            lines.append(f"{who}{why}:\nended by epoch {last:.2g} of {planned}")
    return "\n".join(lines)


def _end_of_plan(runs) -> float | None:
    """The planned length in epochs when a run ended early (diverged or stopped), so the axis shows what is missing."""
    if any(run.status in ("diverged", "stopped") and run.history for run in runs):
        return float(max(run.config.num_train_epochs for run in runs))
    return None


def _note(loss_ax, runs) -> None:
    """`loss_note` in the loss panel's corner, and the time axis as long as planned when a run ended early."""
    note = loss_note(runs)
    if note:
        text = loss_ax.text(NOTE_STYLE["x"], NOTE_STYLE["y"], note, transform=loss_ax.transAxes,
                            **{k: v for k, v in NOTE_STYLE.items() if k not in ("x", "y", "fontsize")})
        style_text(text, size=NOTE_STYLE["fontsize"])
    end = _end_of_plan(runs)
    if end is not None:
        loss_ax.set_xlim(-0.05 * end, end * 1.05)


def _limit_lr_axis(ax, runs) -> None:
    """Linear from 0; a log scale when the runs' peak rates are a decade or more apart (a sweep over decades)."""
    values = [v for run in runs for v in run.learning_rates if math.isfinite(v) and v > 0]
    if not values:
        return
    peaks = [peak for peak in (max(run.learning_rates, default=0.0) for run in runs) if peak > 0]
    if max(peaks) / min(peaks) > 10:
        ax.set_yscale("log")
        ax.set_ylim(min(values) / 2, max(values) * 2)
    else:
        ax.set_ylim(0, max(values) * 1.08)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))


def draw_curves(panels: Panels, run, colour: str, label: str | None, show_train: bool = True) -> None:
    """One run's lines in `colour`: training loss dashed, validation loss and accuracy with a dot per evaluation,
    the learning rate of every step. Labelled 'train' and 'validation' alone, or by `label` (on the accuracy)."""
    loss_ax, acc_ax, lr_ax = panels
    epochs = [h["epoch"] for h in run.history]
    if show_train:
        loss_ax.plot(epochs, _finite(run.column("train_loss")), "--", **line_style(color=colour, alpha=0.75),
                     label=None if label else "train")
    loss_ax.plot(epochs, _finite(run.column("eval_loss")), "-o", **line_style(color=colour, markersize=3),
                 label=None if label else "validation")
    acc_ax.plot(epochs, _finite(run.column("eval_accuracy")), "-o", **line_style(color=colour, markersize=3),
                label=label)
    lr_ax.plot(_step_epochs(run, len(run.learning_rates)), run.learning_rates, "-", **line_style(color=colour),
               label=label)


def _chance(acc_ax, value: float, colour: str = "grey", label: str | None = None) -> None:
    """Guessing's accuracy, dotted."""
    acc_ax.axhline(value, **line_style(color=colour, linewidth=1, linestyle=":"), label=label)


def draw_empty(panels: Panels, title: str | None) -> None:
    """The panels with nothing in them yet, and a title (before the first evaluation, or before any run)."""
    set_title(panels.loss, LOSS_TITLE)
    set_suptitle(panels.loss.figure, title)
    panels.accuracy.set_ylim(0, 1.02)


def draw_run(panels: Panels, run, title: str | None = None) -> None:
    """One run into the three panels: train and validation loss, validation accuracy, the learning rate, the best
    epoch marked; titled with the curves' verdict in its colour once the run is over (or `title`)."""
    from .runs import diagnose

    loss_ax, acc_ax, lr_ax = panels
    if not run.history:
        draw_empty(panels, title or "waiting for the first evaluation ...")
    else:
        set_title(loss_ax, LOSS_TITLE)
        draw_curves(panels, run, COLOURS[0], None)
        _chance(acc_ax, run.meta.get("chance_accuracy", 0.5), label="chance")
        best = run.best
        if best is not None:
            for ax in (loss_ax, acc_ax):
                ax.axvline(best["epoch"], **line_style(color="#2ca02c", linewidth=1.2, linestyle=":"))
            loss_ax.plot([best["epoch"]], [best["eval_loss"]], "*", **line_style(color="#2ca02c", markersize=13),
                         label=f"lowest validation loss (epoch {best['epoch']:.2f})")
        diagnosis = diagnose(run) if run.status != "running" else None
        if diagnosis is not None:
            set_suptitle(loss_ax.figure, title or f"{diagnosis.verdict.upper()}: highest accuracy on the curve "
                         f"{diagnosis.best_accuracy:.1%}", color=VERDICT_COLOURS[diagnosis.verdict], weight="bold")
        else:
            set_suptitle(loss_ax.figure, title)
        styled_legend(loss_ax, 8)
    _limit_loss_axis(loss_ax, [run])
    _limit_lr_axis(lr_ax, [run])
    acc_ax.set_ylim(0, 1.02)
    if run.status != "running":
        _note(loss_ax, [run])


def draw_bands(panels: Panels, groups: Sequence[Sequence], labels: Sequence[str], title: str | None = None,
               live=None, live_label: str = "your run", colours: Sequence[str] | None = None) -> None:
    """Settings run with several seeds into the three panels, one colour each (`colours`, by default COLOURS in
    order): the shaded band spans the lowest to the highest seed at each evaluation, the line is their mean
    (validation loss solid, training loss dashed). `live`, one more run, is drawn on top in black."""
    from .runs import seed_band

    loss_ax, acc_ax, lr_ax = panels
    for i, (runs, label) in enumerate(zip(groups, labels)):
        colour = colours[i] if colours is not None else COLOURS[i % len(COLOURS)]
        band = [row for row in seed_band(list(runs)) if row["eval_loss"] and row["eval_accuracy"]]
        epochs = [row["epoch"] for row in band]
        for ax, key in ((loss_ax, "eval_loss"), (acc_ax, "eval_accuracy")):
            low = _finite([row[key]["min"] for row in band])
            high = _finite([row[key]["max"] for row in band])
            ax.fill_between(epochs, low, high, color=colour, alpha=0.22, lw=0, antialiased=STYLE["patch.antialiased"])
            ax.plot(epochs, _finite([row[key]["mean"] for row in band]), "-", **line_style(color=colour, linewidth=1.6),
                    label=f"{label} ({len(runs)} seed{'s' * (len(runs) != 1)})" if ax is acc_ax else None)
        loss_ax.plot(epochs, _finite([row["train_loss"]["mean"] if row["train_loss"] else math.nan for row in band]),
                     "--", **line_style(color=colour, linewidth=1, alpha=0.75))
        if runs:
            lr_ax.plot(_step_epochs(runs[0], len(runs[0].learning_rates)), runs[0].learning_rates, "-",
                       **line_style(color=colour))
    shown = [run for runs in groups for run in runs[:1]]
    if live is not None and live.history:
        draw_curves(panels, live, "black", live_label)
        shown.append(live)
    if shown:
        _chance(acc_ax, shown[0].meta.get("chance_accuracy", 0.5))
        styled_legend(acc_ax, 7, loc="lower right")
    set_title(loss_ax, LOSS_TITLE_OVERLAID)
    everything = [run for runs in groups for run in runs] + ([live] if live is not None and live.history else [])
    _limit_loss_axis(loss_ax, everything)
    _limit_lr_axis(lr_ax, shown)
    acc_ax.set_ylim(0, 1.02)
    _note(loss_ax, everything)
    set_suptitle(loss_ax.figure, title)


def plot_run(run, title: str | None = None) -> Figure:
    """Train and validation loss, validation accuracy and the learning rate of one run, best epoch marked."""
    fig, panels = curves_figure()
    draw_run(panels, run, title)
    return fig


def plot_runs(runs: Sequence, labels: Sequence[str] | None = None, title: str | None = None,
              show_train: bool = True) -> Figure:
    """Several runs overlaid (one colour each, `colours_for` their settings): validation loss solid, training loss
    dashed. Runs that differ only by seed are drawn as one shaded seed band (`plot_bands`), labelled with the first
    one's label."""
    labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(len(runs))]
    groups = _seed_groups(runs, labels)
    if len(groups) < len(runs):
        return plot_bands([g for g, _ in groups], [label for _, label in groups], title=title)
    fig, panels = curves_figure()
    loss_ax, acc_ax, lr_ax = panels
    colours = _colours_of_runs([[run] for run in runs])  # each setting in its colour of the lesson's other pictures
    for run, label, colour in zip(runs, labels, colours):
        draw_curves(panels, run, colour, label, show_train)
    if runs:
        chances = [run.meta.get("chance_accuracy", 0.5) for run in runs]
        if len(set(chances)) == 1:  # guessing: one grey line, or one per run in its colour when the tasks differ
            _chance(acc_ax, chances[0])
        else:
            for chance, colour in zip(chances, colours):
                _chance(acc_ax, chance, colour)
        styled_legend(acc_ax, 7, loc="lower right")  # one entry per run (colour)
        if show_train:
            set_title(loss_ax, LOSS_TITLE_OVERLAID)
    _limit_loss_axis(loss_ax, runs)
    _limit_lr_axis(lr_ax, runs)
    acc_ax.set_ylim(0, 1.02)
    _note(loss_ax, list(runs))
    set_suptitle(fig, title)
    return fig


def _seed_groups(runs: Sequence, labels: Sequence[str]) -> list[tuple[list, str]]:
    """Runs grouped by their settings apart from the seed, in order of first appearance; a run whose seed a group
    already has starts a group of its own (the same settings and seed twice are not seed replicates)."""
    groups: list[tuple[list, str]] = []
    keys: list[tuple] = []
    for run, label in zip(runs, labels):
        key = config_key(run.config)
        for (members, _), other in zip(groups, keys):
            if other == key and run.config.seed not in {m.config.seed for m in members}:
                members.append(run)
                break
        else:
            groups.append(([run], label))
            keys.append(key)
    return groups


def plot_bands(groups: Sequence[Sequence], labels: Sequence[str], title: str | None = None, live=None,
               live_label: str = "your run", colours: Sequence[str] | None = None) -> Figure:
    """Settings run with several seeds, one colour each (`draw_bands`): does `live`, drawn on top in black, land
    inside the band? Each setting keeps its colour of the lesson's other pictures (`colours_for` of each group's
    settings), or `colours` (one per group)."""
    fig, panels = curves_figure()
    draw_bands(panels, groups, labels, title, live, live_label,
               list(colours) if colours is not None else _colours_of_runs(groups))
    return fig


@default_style
def plot_step_losses(runs: Sequence, labels: Sequence[str], title: str | None = None) -> Figure:
    """The training loss of every optimizer step, one panel per run (in its setting's colour, `colours_for`): how
    noisy each step is, and how many."""
    fig = Figure(figsize=(11.0, 3.0))
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.17, top=0.76 if title else 0.86, wspace=0.08)
    axes = fig.subplots(1, len(runs), sharex=True, sharey=True, squeeze=False)[0]
    for ax, run, label, colour in zip(axes, runs, labels, _colours_of_runs([[run] for run in runs])):
        epochs = _step_epochs(run, len(run.train_losses))
        ax.plot(epochs, _finite(run.train_losses), "-" if len(epochs) > 40 else "-o", color=colour,
                lw=0.8, markersize=3)
        ax.set_title(f"{label}: {len(epochs)} steps", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    axes[0].set_ylabel("training loss of each step")
    finite = [v for run in runs for v in _finite(run.train_losses) if not math.isnan(v)]
    if finite:
        axes[0].set_ylim(0, min(max(finite) * 1.05, 3.0))
    if title:
        fig.suptitle(title)
    return fig


@default_style
def plot_schedules(schedules: dict[str, Sequence[float]], title: str = "Planned learning rate",
                   width: float = 5.5, height: float = 3.0, side_by_side: bool = False,
                   configs: Sequence[FineTuneConfig] | None = None) -> Figure:
    """Learning rate against optimizer step for one or more named schedules: overlaid on one axes, or with
    `side_by_side` one small panel each on a shared scale (schedules that coincide over most steps, such as
    constant and constant_with_warmup, then cannot hide each other). `configs`, the settings each schedule belongs
    to (one per schedule), colour each as that setting is in the lesson's other pictures (`colours_for`); without
    them, COLOURS in order."""
    fig = Figure(figsize=(width, height))
    if side_by_side:
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.2, top=0.76, wspace=0.08)
        axes = list(fig.subplots(1, len(schedules), sharex=True, sharey=True, squeeze=False)[0])
        fig.suptitle(title)
    else:
        fig.subplots_adjust(left=0.17, right=0.97, bottom=0.2, top=0.86)
        axes = [fig.subplots()] * len(schedules)
    colours = colours_for(configs) if configs is not None else [COLOURS[i % len(COLOURS)] for i in range(len(schedules))]
    for i, (ax, (name, rates), colour) in enumerate(zip(axes, schedules.items(), colours)):
        ax.plot(range(1, len(rates) + 1), rates, color=colour, label=name,
                ls="-" if side_by_side else ("-", "--", "-.", ":")[i % 4], lw=1.8)  # styles too: overlaid, they overlap
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if side_by_side:
            ax.set_title(name, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(3))
    if axes:
        axes[0].set_ylabel("learning rate")
        if not side_by_side:
            axes[0].set_title(title)
            if len(schedules) > 1:
                axes[0].legend(fontsize=8)
    return fig


@default_style
def to_png(fig: Figure, dpi: int = 90, tight: bool = False) -> bytes:
    """The figure as PNG bytes (`tight` trims to the drawn area, for figures made elsewhere, e.g. Optuna's)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


@default_style
def plot_weight_norms(runs: Sequence, labels: Sequence[str], colours: Sequence[str] | None = None) -> Figure:
    """How the size (L2 norm) of the trainable weights changes, in % of its size before training, at each
    evaluation, one line per run, in its setting's colour (`colours_for`, or `colours`). (In %, not raw: a norm of 110 that loses 5 would look like a collapse on an axis
    from 105 to 111.)"""
    fig = Figure(figsize=(5.5, 3.2))
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.16, top=0.88)
    ax = fig.subplots()
    colours = list(colours) if colours is not None else _colours_of_runs([[run] for run in runs])
    for run, label, colour in zip(runs, labels, colours):
        norms = _finite(run.column("weight_norm"))
        start = norms[0] if norms and norms[0] > 0 else math.nan
        ax.plot([h["epoch"] for h in run.history], [100 * (n / start - 1) for n in norms], "-o", markersize=3,
                color=colour, label=label)
    ax.axhline(0, color="grey", lw=1, ls=":")
    ax.set(title="Size of the trainable weights", xlabel="epoch", ylabel="change from the start (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


@default_style
def plot_parameters_by_layer(rows: Sequence[tuple[str, int, int]], title: str = "Parameters by part") -> Figure:
    """A bar per part of the model (embeddings, each layer, head): trainable in colour, frozen in grey."""
    fig = Figure(figsize=(6.5, 3.2))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.22, top=0.88)
    ax = fig.subplots()
    names = [r[0] for r in rows]
    ax.bar(names, [r[2] / 1e6 for r in rows], color="#cccccc", label="frozen")
    ax.bar(names, [r[1] / 1e6 for r in rows], color="#1f77b4", label="trainable")
    ax.set(title=title, ylabel="millions of parameters")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    return fig


@default_style
def plot_freezing_cost(rows: Sequence[dict], accuracy_label: str = "best validation accuracy") -> Figure:
    """Seconds per epoch (bars) and accuracy (line; each row's "best_accuracy", named by `accuracy_label`) against
    the number of frozen layers."""
    fig = Figure(figsize=(6.5, 3.4))
    fig.subplots_adjust(left=0.12, right=0.88, bottom=0.16, top=0.88)
    ax = fig.subplots()
    labels = [str(r["freeze_layers"]) for r in rows]
    ax.bar(labels, [r["seconds_per_epoch"] for r in rows], color="#cccccc")
    ax.set(xlabel="frozen layers (6 = head only, 0 = everything trains)", ylabel="seconds per epoch",
           title="Compute cost and accuracy as layers are unfrozen")
    acc = ax.twinx()
    acc.plot(labels, [r["best_accuracy"] for r in rows], "-o", color="#1f77b4")
    acc.set_ylabel(accuracy_label, color="#1f77b4")
    acc.set_ylim(0.4, 1.0)
    return fig


# ------------------------------------------------------------------------------------------------ recorded evidence
def _side_by_side(points: list[float], gap: float = 4.5) -> list[float]:
    """A sideways shift in points for each value, so seeds that kept the same accuracy show as separate dots."""
    shifts, seen = [], {}
    for point in points:
        key = round(point, 4)
        seen[key] = seen.get(key, 0) + 1
        shifts.append(seen[key] - 1)
    count = {key: n for key, n in seen.items()}
    return [gap * (k - (count[round(p, 4)] - 1) / 2) for p, k in zip(points, shifts)]


@default_style
def plot_sweep(groups: dict[Any, list], verdicts: dict[Any, str], against: list, field: str = "settings",
               names: dict[Any, str] | None = None, measure=None, what: str = "kept accuracy",
               title: str | None = None) -> Figure:
    """Every seed's kept accuracy (or `measure`, named `what`; a dot) against the swept value of `field`, each
    value's range as a bar coloured by its verdict against the reference (`verdicts`: "reference", "higher",
    "lower", "equivalent" (blue) or "can't tell" (grey)), the reference's range (of the runs `against`) shaded
    across. Seeds that kept the same accuracy sit side by side."""
    from matplotlib.transforms import ScaledTranslation

    from .runs import accuracy_range, kept_accuracy

    measure = measure or kept_accuracy
    names = names or {value: str(value) for value in groups}
    values = list(groups)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    logscale = numeric and min(values) > 0 and max(values) / min(values) >= 20
    xs = values if numeric else list(range(len(values)))
    lower_is_better = "loss" in what  # green reads as better and red as worse: for a loss, lower is green
    colours = {"reference": "black", "higher": "#d62728" if lower_is_better else "#2ca02c",
               "lower": "#2ca02c" if lower_is_better else "#d62728", "equivalent": "#1f77b4"}
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
                 "by the rule; blue: equivalent within ±1 point; grey: can't tell)", fontsize=9)
    return fig


@default_style
def plot_grid(grid, names: dict[Any, str] | None = None, title: str | None = None, measure=None,
              what: str = "kept accuracy", lower_is_better: bool = False,
              colours_like: FineTuneConfig | None = None) -> Figure:
    """A recorded two-knob grid (`atlas.recorded_grid`): the kept accuracy (or `measure`, named `what`) of every
    seed (a dot) against the grid's x setting, one line per value of its line setting (the seeds' mean, their range
    shaded), each line's best value starred. Each line keeps the colour its setting has in the lesson's other
    pictures (`colours_for`), or with `colours_like` the colour it has on that base (the same grid on another task
    keeps its colours)."""
    from .runs import kept_accuracy

    names = names or {}
    measure = measure or kept_accuracy
    line_field, x_field, cells_of = grid.line_field, grid.x_field, grid.cells
    best = grid.best(measure, lower_is_better)
    fig = Figure(figsize=(6.4, 3.6))
    fig.subplots_adjust(left=0.12, right=0.72, bottom=0.15, top=0.88)
    ax = fig.subplots()
    drawn = [line for line, cells in cells_of.items() if cells]
    line_colours = dict(zip(drawn, colours_for(((colours_like or grid.base).replace(**{line_field: line})
                                                for line in drawn), along=x_field)))
    for line in drawn:
        cells = cells_of[line]
        colour, xs = line_colours[line], list(cells)
        ax.fill_between(xs, [grid.spread(line, x, measure)[0] for x in xs],
                        [grid.spread(line, x, measure)[1] for x in xs], color=colour, alpha=0.18, lw=0)
        ax.plot(xs, [grid.mean(line, x, measure) for x in xs], "-", color=colour, lw=1.5,
                label=names.get(line, setting_label(line_field, line)))
        for x in xs:
            ax.plot([x] * len(cells[x]), [measure(r) for r in cells[x]], "o", color=colour, markersize=3)
        ax.plot([best[line]], [grid.mean(line, best[line], measure)], "*", markersize=14, markerfacecolor="none",
                markeredgecolor=colour, markeredgewidth=1.6)  # hollow: stars of lines that meet stay visible
    runs = [r for cells in cells_of.values() for found in cells.values() for r in found]
    chance = next((r.meta.get("chance_accuracy") for r in runs), None)
    if chance and measure is kept_accuracy:
        values = [v for v in (measure(r) for r in runs) if math.isfinite(v)]
        if values and min(values) - chance > max(values) - min(values):  # drawn, chance would squash the lines
            ax.text(0.01, 0.02, f"chance ({chance:.0%}) is below the scale", transform=ax.transAxes,
                    fontsize=7, color="grey")
        else:
            ax.axhline(chance, color="grey", lw=1, ls=":")
    numeric = all(isinstance(x, (int, float)) for cells in cells_of.values() for x in cells)
    if numeric and x_field == "learning_rate":
        ax.set_xscale("log")
        recorded_xs = sorted({x for cells in cells_of.values() for x in cells})
        if len(recorded_xs) <= 8:  # ticks at the recorded values, not at powers of ten between them
            ax.set_xticks(recorded_xs, [short_number(x) for x in recorded_xs], fontsize=8)
            ax.minorticks_off()
    ax.set(xlabel=x_field.replace("_", " "), ylabel=f"{what} (each dot a seed)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax.text(0.5, 0.5, "not recorded yet", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_title(title or f"{what.capitalize()}: {x_field} for each {line_field}", fontsize=10)
    return fig


@default_style
def plot_seed_grid(table: dict[tuple[Any, Any], Any], measure=None, what: str = "kept accuracy",
                   title: str | None = None) -> Figure:
    """A seed x data-seed table ({(seed, data_seed): run}) as a grid of the kept accuracy (or `measure`): a column
    changes only the head's initialisation, a row only the order of the batches; the diagonal is the plain runs."""
    from .runs import kept_accuracy

    measure = measure or kept_accuracy
    seeds = sorted({s for s, _ in table}, key=lambda s: (s != 42, s))
    orders = sorted({d for _, d in table}, key=lambda s: (s != 42, s))
    values = [[measure(table[s, d]) for d in orders] for s in seeds]
    fig = Figure(figsize=(5.4, 4.2))
    fig.subplots_adjust(left=0.2, right=0.93, bottom=0.16, top=0.84)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    points = "accuracy" in what or "rate" in what
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.1%}" if points else f"{value:.3g}", ha="center", va="center", fontsize=8,
                    color="white" if value < (min(map(min, values)) + max(map(max, values))) / 2 else "black",
                    weight="bold" if i == j else "normal")
    ax.set_xticks(range(len(orders)), [str(d) for d in orders])
    ax.set_yticks(range(len(seeds)), [str(s) for s in seeds])
    ax.set(xlabel="data_seed: the order of the batches", ylabel="seed: the head's initialisation")
    fig.colorbar(image, ax=ax, fraction=0.05)
    ax.set_title((title + "\n" if title else "") + f"{what}: along a row only the data order changes,\n"
                 "down a column only the initialisation (bold: data_seed = seed)", fontsize=9)
    return fig


@default_style
def plot_tradeoff(groups: dict[Any, list], field: str, title: str | None = None) -> Figure:
    """Every recorded seed as a point: the kept model's accuracy on the task against its sentence similarity
    (what it still knows from pretraining), one colour per value of `field`."""
    import matplotlib

    from .evidence_measures import similarity
    from .runs import kept_accuracy

    fig = Figure(figsize=(6.4, 3.6))
    fig.subplots_adjust(left=0.12, right=0.72, bottom=0.15, top=0.88)
    ax = fig.subplots()
    shades = matplotlib.colormaps["viridis"]  # one value after another, light to dark: no red or green verdicts here
    for i, (value, found) in enumerate(groups.items()):
        ax.plot([similarity(r) for r in found], [kept_accuracy(r) for r in found], "o",
                color=shades(0.9 - 0.85 * i / max(1, len(groups) - 1)), markeredgecolor="black", markeredgewidth=0.4,
                label=short_number(value))
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


@default_style
def plot_errors(groups: dict[str, list], title: str = "Error rate of the kept model, by kind of message") -> Figure:
    """For each named group of recorded seeds (a panel each): every seed's error rate on each kind of message
    (the data's `phenomenon` column) as a dot, the range as a bar, with the number of messages of that kind."""
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
