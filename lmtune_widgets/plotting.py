"""Pictures of runs: the curves of one run, several runs overlaid, a planned learning-rate schedule.

    from lmtune_widgets.plotting import plot_run, plot_runs, plot_schedules, to_png
    fig = plot_run(run)                  # loss, accuracy and learning rate; best epoch marked
    fig = plot_runs([run_a, run_b])      # the same panels, one colour per run
    png = to_png(fig)                    # bytes, for an ipywidgets.Image or a file

Every function returns a `matplotlib.figure.Figure` built without pyplot, so drawing from a background
thread is safe and nothing piles up in pyplot's list of open figures.
"""
from __future__ import annotations

import functools
import io
import math
from typing import Sequence

import matplotlib.style
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .config import config_key

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
VERDICT_COLOURS = {"good fit": "#2ca02c", "overfitting": "#ff7f0e", "underfitting": "#1f77b4", "diverged": "#d62728"}


def _own_style(function):
    """Draw in matplotlib's default style whatever the global state (Optuna's plots switch it to ggplot)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.style.context("default"):
            return function(*args, **kwargs)

    return wrapper


def _finite(values):
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in values]


def _axes(width: float = 11.0, height: float = 3.4):
    # Fixed margins, not a layout engine: measuring every label again on each redraw cost the panel 2x.
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.15, top=0.8, wspace=0.3)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3, sharex=True)  # one time axis: the three panels line up
    loss_ax.set(title="Loss (lower is better)", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    lr_ax.set(title="Learning rate", xlabel="epoch", ylabel="learning rate")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
    return fig, loss_ax, acc_ax, lr_ax


def _step_epochs(run, count: int) -> list[float]:
    """The epoch at the end of each of the first `count` optimizer steps."""
    steps_per_epoch = run.meta.get("steps_per_epoch") or 1
    return [(k + 1) / steps_per_epoch for k in range(count)]


def _draw(run, loss_ax, acc_ax, lr_ax, colour: str, label: str | None, show_train: bool = True) -> None:
    epochs = [h["epoch"] for h in run.history]
    if show_train:
        loss_ax.plot(epochs, _finite(run.column("train_loss")), "--", color=colour, alpha=0.75,
                     label=None if label else "train")
    loss_ax.plot(epochs, _finite(run.column("eval_loss")), "-o", color=colour, markersize=3,
                 label=None if label else "validation")
    acc_ax.plot(epochs, _finite(run.column("eval_accuracy")), "-o", color=colour, markersize=3, label=label)
    lr_ax.plot(_step_epochs(run, len(run.learning_rates)), run.learning_rates, color=colour, label=label)


@_own_style
def plot_run(run, title: str | None = None) -> Figure:
    """Train and validation loss, validation accuracy and the learning rate of one run, best epoch marked."""
    from .runs import diagnose

    fig, loss_ax, acc_ax, lr_ax = _axes()
    if run.history:
        _draw(run, loss_ax, acc_ax, lr_ax, COLOURS[0], None)
        acc_ax.axhline(run.meta.get("chance_accuracy", 0.5), color="grey", lw=1, ls=":", label="chance")
        diagnosis = diagnose(run) if run.status != "running" else None
        best = run.best
        if best is not None:
            for ax in (loss_ax, acc_ax):
                ax.axvline(best["epoch"], color="#2ca02c", lw=1.2, ls=":")
            loss_ax.plot([best["epoch"]], [best["eval_loss"]], "*", color="#2ca02c", markersize=13,
                         label=f"lowest validation loss (epoch {best['epoch']:.2f})")
        if diagnosis is not None:
            fig.suptitle(title or f"{diagnosis.verdict.upper()}: highest accuracy on the curve {diagnosis.best_accuracy:.1%}",
                         color=VERDICT_COLOURS[diagnosis.verdict], fontweight="bold")
        elif title:
            fig.suptitle(title)
        loss_ax.legend(fontsize=8)
    else:
        fig.suptitle(title or "waiting for the first evaluation ...")
    _limit_loss_axis(loss_ax, [run])
    _limit_lr_axis(lr_ax, [run])
    acc_ax.set_ylim(0, 1.02)
    if run.status != "running":
        _note(loss_ax, [run])
    return fig


@_own_style
def plot_runs(runs: Sequence, labels: Sequence[str] | None = None, title: str | None = None,
              show_train: bool = True) -> Figure:
    """Several runs overlaid (one colour each): validation loss solid, training loss dashed. Runs that differ
    only by seed are drawn as one shaded seed band (`plot_bands`), labelled with the first one's label."""
    labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(len(runs))]
    groups = _seed_groups(runs, labels)
    if len(groups) < len(runs):
        return plot_bands([g for g, _ in groups], [label for _, label in groups], title=title)
    fig, loss_ax, acc_ax, lr_ax = _axes()
    for i, (run, label) in enumerate(zip(runs, labels)):
        _draw(run, loss_ax, acc_ax, lr_ax, COLOURS[i % len(COLOURS)], label, show_train)
    if runs:
        chances = [run.meta.get("chance_accuracy", 0.5) for run in runs]
        if len(set(chances)) == 1:  # guessing: one grey line, or one per run in its colour when the tasks differ
            acc_ax.axhline(chances[0], color="grey", lw=1, ls=":")
        else:
            for i, chance in enumerate(chances):
                acc_ax.axhline(chance, color=COLOURS[i % len(COLOURS)], lw=1, ls=":")
        acc_ax.legend(fontsize=7, loc="lower right")  # one entry per run (colour)
        if show_train:
            loss_ax.set_title("Loss (solid: validation, dashed: train)")
    _limit_loss_axis(loss_ax, runs)
    _limit_lr_axis(lr_ax, runs)
    acc_ax.set_ylim(0, 1.02)
    _note(loss_ax, list(runs))
    if title:
        fig.suptitle(title)
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


@_own_style
def plot_bands(groups: Sequence[Sequence], labels: Sequence[str], title: str | None = None, live=None,
               live_label: str = "your run", colours: Sequence[str] | None = None) -> Figure:
    """Settings run with several seeds, one colour each: the shaded band spans the lowest to the highest seed at
    each evaluation, the line is their mean (validation loss solid, training loss dashed). `live`, one more run,
    is drawn on top in black: does it land inside the band? `colours` (one per group) keeps a setting's colour
    the same as in a lesson's other pictures; by default COLOURS in order."""
    from .runs import seed_band

    fig, loss_ax, acc_ax, lr_ax = _axes()
    for i, (runs, label) in enumerate(zip(groups, labels)):
        colour = colours[i] if colours is not None else COLOURS[i % len(COLOURS)]
        band = [row for row in seed_band(list(runs)) if row["eval_loss"] and row["eval_accuracy"]]
        epochs = [row["epoch"] for row in band]
        for ax, key in ((loss_ax, "eval_loss"), (acc_ax, "eval_accuracy")):
            low = _finite([row[key]["min"] for row in band])
            high = _finite([row[key]["max"] for row in band])
            ax.fill_between(epochs, low, high, color=colour, alpha=0.22, lw=0)
            ax.plot(epochs, _finite([row[key]["mean"] for row in band]), "-", color=colour, lw=1.6,
                    label=f"{label} ({len(runs)} seed{'s' * (len(runs) != 1)})" if ax is acc_ax else None)
        loss_ax.plot(epochs, _finite([row["train_loss"]["mean"] if row["train_loss"] else math.nan for row in band]),
                     "--", color=colour, lw=1, alpha=0.75)
        if runs:
            lr_ax.plot(_step_epochs(runs[0], len(runs[0].learning_rates)), runs[0].learning_rates, color=colour)
    shown = [run for runs in groups for run in runs[:1]]
    if live is not None and live.history:
        _draw(live, loss_ax, acc_ax, lr_ax, "black", live_label)
        shown.append(live)
    if shown:
        acc_ax.axhline(shown[0].meta.get("chance_accuracy", 0.5), color="grey", lw=1, ls=":")
        acc_ax.legend(fontsize=7, loc="lower right")
    loss_ax.set_title("Loss (solid: validation, dashed: train)")
    everything = [run for runs in groups for run in runs] + ([live] if live is not None and live.history else [])
    _limit_loss_axis(loss_ax, everything)
    _limit_lr_axis(lr_ax, shown)
    acc_ax.set_ylim(0, 1.02)
    _note(loss_ax, everything)
    if title:
        fig.suptitle(title)
    return fig


@_own_style
def plot_step_losses(runs: Sequence, labels: Sequence[str], title: str | None = None) -> Figure:
    """The training loss of every optimizer step, one panel per run: how noisy each step is, and how many."""
    fig = Figure(figsize=(11.0, 3.0))
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.17, top=0.76 if title else 0.86, wspace=0.08)
    axes = fig.subplots(1, len(runs), sharex=True, sharey=True, squeeze=False)[0]
    for i, (ax, run, label) in enumerate(zip(axes, runs, labels)):
        epochs = _step_epochs(run, len(run.train_losses))
        ax.plot(epochs, _finite(run.train_losses), "-" if len(epochs) > 40 else "-o", color=COLOURS[i % len(COLOURS)],
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


@_own_style
def plot_schedules(schedules: dict[str, Sequence[float]], title: str = "Planned learning rate",
                   width: float = 5.5, height: float = 3.0, side_by_side: bool = False) -> Figure:
    """Learning rate against optimizer step for one or more named schedules: overlaid on one axes, or with
    `side_by_side` one small panel each on a shared scale (schedules that coincide over most steps, such as
    constant and constant_with_warmup, then cannot hide each other)."""
    fig = Figure(figsize=(width, height))
    if side_by_side:
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.2, top=0.76, wspace=0.08)
        axes = list(fig.subplots(1, len(schedules), sharex=True, sharey=True, squeeze=False)[0])
        fig.suptitle(title)
    else:
        fig.subplots_adjust(left=0.17, right=0.97, bottom=0.2, top=0.86)
        axes = [fig.subplots()] * len(schedules)
    for i, (ax, (name, rates)) in enumerate(zip(axes, schedules.items())):
        ax.plot(range(1, len(rates) + 1), rates, color=COLOURS[i % len(COLOURS)], label=name,
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
    note = loss_note(runs)
    if note:
        loss_ax.text(s=note, transform=loss_ax.transAxes, **NOTE_STYLE)
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


@_own_style
def to_png(fig: Figure, dpi: int = 90, tight: bool = False) -> bytes:
    """The figure as PNG bytes (`tight` trims to the drawn area, for figures made elsewhere, e.g. Optuna's)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


@_own_style
def plot_weight_norms(runs: Sequence, labels: Sequence[str], colours: Sequence[str] | None = None) -> Figure:
    """How the size (L2 norm) of the trainable weights changes, in % of its size before training, at each
    evaluation, one line per run. (In %, not raw: a norm of 110 that loses 5 would look like a collapse on an axis
    from 105 to 111.)"""
    fig = Figure(figsize=(5.5, 3.2))
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.16, top=0.88)
    ax = fig.subplots()
    for i, (run, label) in enumerate(zip(runs, labels)):
        norms = _finite(run.column("weight_norm"))
        start = norms[0] if norms and norms[0] > 0 else math.nan
        ax.plot([h["epoch"] for h in run.history], [100 * (n / start - 1) for n in norms], "-o", markersize=3,
                color=colours[i] if colours is not None else COLOURS[i % len(COLOURS)], label=label)
    ax.axhline(0, color="grey", lw=1, ls=":")
    ax.set(title="Size of the trainable weights", xlabel="epoch", ylabel="change from the start (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


@_own_style
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


@_own_style
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
