"""The panel's two pictures, each one figure built once and redrawn in place.

    curves = CurvesFigure()
    curves.show_run(run, title="epoch 1.00: ...")     # what plotting.plot_run draws
    curves.show_bands(recorded, live=run)              # what plotting.plot_bands([recorded], ["recorded"], live=run) draws
    png = curves.png()                                 # PNG bytes for an ipywidgets.Image
    schedule = ScheduleFigure(); schedule.show(rates, title); schedule.png()

`plotting` builds a new figure for every picture (right for lessons, which draw once). The panel redraws its
curves at every evaluation point and on every control change, so here the lines, bands and titles of one figure
are updated (`set_data`) and only the drawing and PNG encoding are paid again.

Style without global state: matplotlib reads its global `rcParams` whenever it makes an artist (and while
drawing, for new tick labels). `matplotlib.style.context` would change those globals for every thread, losing or
mixing the learner's own style when two threads draw at once. These figures instead take matplotlib's default
style from a dict (`STYLE`) and give every property it decides explicitly, to each artist: the learner's style
never reaches them and is never touched. Not thread-safe by themselves: the panel draws under its lock.
"""
from __future__ import annotations

import io
import math

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, font_scalings
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from .plotting import (COLOURS, NOTE_STYLE, VERDICT_COLOURS, _end_of_plan, _finite, _limit_loss_axis, _limit_lr_axis,
                       _step_epochs, loss_note)

STYLE = dict(matplotlib.rcParamsDefault)  # matplotlib's default style, as a plain dict (read, never applied)
DPI = 90  # as plotting.to_png


def _size(value) -> float:
    """A font size from the style ('large', 'medium', 10) in points, against the style's own base size."""
    return float(STYLE["font.size"]) * font_scalings[value] if isinstance(value, str) else float(value)


def _font(size="font.size", weight="font.weight") -> FontProperties:
    return FontProperties(family=STYLE["font.family"], style=STYLE["font.style"], variant=STYLE["font.variant"],
                          stretch=STYLE["font.stretch"], weight=STYLE.get(weight, weight),
                          size=_size(STYLE.get(size, size)))


def _text_style(text, size="font.size", weight="font.weight", color="text.color") -> None:
    text.set_fontproperties(_font(size, weight))
    text.set_color(STYLE.get(color, color))
    text.set_usetex(False)
    text.set_antialiased(STYLE["text.antialiased"])


def _line_style(**overrides) -> dict:
    """Every Line2D property the style would otherwise decide."""
    return {"linewidth": STYLE["lines.linewidth"], "markersize": STYLE["lines.markersize"],
            "markeredgewidth": STYLE["lines.markeredgewidth"], "antialiased": STYLE["lines.antialiased"],
            "dash_capstyle": STYLE["lines.dash_capstyle"], "dash_joinstyle": STYLE["lines.dash_joinstyle"],
            "solid_capstyle": STYLE["lines.solid_capstyle"], "solid_joinstyle": STYLE["lines.solid_joinstyle"],
            **overrides}


def _legend(ax, handles, fontsize: float, **overrides):
    """A legend styled from STYLE. Its frame's line width is set on the frame itself: matplotlib 3.11 also takes it
    as `legend(linewidth=...)` (rcParam legend.linewidth, None: the patches' width); 3.10 has neither."""
    keys = ("loc", "frameon", "framealpha", "fancybox", "shadow", "numpoints", "scatterpoints", "markerscale",
            "borderpad", "labelspacing", "handlelength", "handleheight", "handletextpad", "borderaxespad",
            "columnspacing", "labelcolor")
    style = {key: STYLE[f"legend.{key}"] for key in keys}
    if style["labelcolor"] in (None, "None"):
        style["labelcolor"] = STYLE["text.color"]
    face = STYLE["legend.facecolor"]
    edge = STYLE["legend.edgecolor"]
    legend = ax.legend(handles=handles, **{**style, "prop": _font(fontsize),
                                           "facecolor": STYLE["axes.facecolor"] if face == "inherit" else face,
                                           "edgecolor": STYLE["axes.edgecolor"] if edge == "inherit" else edge,
                                           **overrides})
    legend.get_frame().set_linewidth(STYLE.get("legend.linewidth") or STYLE["patch.linewidth"])
    return legend


def _new_figure(width: float, height: float) -> tuple[Figure, FigureCanvasAgg]:
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor=STYLE["figure.facecolor"],
                 edgecolor=STYLE["figure.edgecolor"], linewidth=0.0, frameon=STYLE["figure.frameon"], layout="none")
    return fig, FigureCanvasAgg(fig)


def _style_axes(ax) -> None:
    """Give an axes every look the style decides: face, spines, ticks, tick labels, grid, titles and labels."""
    ax.set_facecolor(STYLE["axes.facecolor"])
    ax.set_axisbelow(STYLE["axes.axisbelow"])
    ax.set_xmargin(STYLE["axes.xmargin"])
    ax.set_ymargin(STYLE["axes.ymargin"])
    for spine in ax.spines.values():
        spine.set(edgecolor=STYLE["axes.edgecolor"], linewidth=STYLE["axes.linewidth"], antialiased=True)
    for name, axis in (("xtick", ax.xaxis), ("ytick", ax.yaxis)):
        axis.set_major_formatter(ScalarFormatter(useOffset=STYLE["axes.formatter.useoffset"],
                                                 useMathText=STYLE["axes.formatter.use_mathtext"],
                                                 useLocale=STYLE["axes.formatter.use_locale"]))
        axis.get_major_formatter().set_powerlimits(STYLE["axes.formatter.limits"])
        axis.set_major_locator(MaxNLocator(5))
        labels = {"labelsize": _size(STYLE[f"{name}.labelsize"]),
                  "labelcolor": STYLE[f"{name}.color"] if STYLE[f"{name}.labelcolor"] == "inherit"
                  else STYLE[f"{name}.labelcolor"], "labelfontfamily": STYLE["font.family"]}
        for which in ("major", "minor"):
            ax.tick_params(axis=name[0], which=which, direction=STYLE[f"{name}.direction"],
                           length=STYLE[f"{name}.{which}.size"], width=STYLE[f"{name}.{which}.width"],
                           pad=STYLE[f"{name}.{which}.pad"], color=STYLE[f"{name}.color"], **labels,
                           grid_color=STYLE["grid.color"], grid_linestyle=STYLE["grid.linestyle"],
                           grid_linewidth=STYLE["grid.linewidth"], grid_alpha=0.3)
        sides = ("bottom", "top") if name == "xtick" else ("left", "right")
        ax.tick_params(axis=name[0], which="both", **{side: STYLE[f"{name}.{side}"] for side in sides},
                       **{f"label{side}": STYLE[f"{name}.label{side}"] for side in sides})
        _text_style(axis.get_offset_text(), size=STYLE[f"{name}.labelsize"], color=labels["labelcolor"])
        _text_style(axis.label, size="axes.labelsize", weight="axes.labelweight", color="axes.labelcolor")
        axis.labelpad = STYLE["axes.labelpad"]
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3, color=STYLE["grid.color"], linestyle=STYLE["grid.linestyle"],
            linewidth=STYLE["grid.linewidth"])


def _set_title(ax, text: str, size="axes.titlesize") -> None:
    # y given: matplotlib then skips measuring every tick label to lift a title above top ticks (there are none)
    ax.set_title(text, loc="center", pad=STYLE["axes.titlepad"], y=1.0 if STYLE["axes.titley"] is None else STYLE["axes.titley"],
                 fontproperties=_font(size, "axes.titleweight"),
                 color=STYLE["text.color"] if STYLE["axes.titlecolor"] == "auto" else STYLE["axes.titlecolor"])


def _png(canvas: FigureCanvasAgg) -> bytes:
    buffer = io.BytesIO()
    canvas.print_png(buffer, pil_kwargs={"compress_level": 1})  # fast to encode; a PNG 10% larger
    return buffer.getvalue()


class CurvesFigure:
    """Loss, validation accuracy and learning rate (the three panels of `plotting.plot_run`), redrawn in place.

    `show_run` draws one run as `plot_run` does; `show_bands` a recorded seed band, and a live run on it in black,
    as `plot_bands` does for one group; `show_empty` a blank picture with a title."""

    def __init__(self, width: float = 11.0, height: float = 3.4):
        self.figure, self.canvas = _new_figure(width, height)
        # the margins of plotting._axes: fixed, so a redraw never measures labels again
        self.figure.subplots_adjust(left=0.06, right=0.985, bottom=0.15, top=0.8, wspace=0.3, hspace=0.2)
        self.loss_ax, self.acc_ax, self.lr_ax = axes = self.figure.subplots(1, 3, sharex=True)
        for ax, (title, ylabel) in zip(axes, (("Loss (lower is better)", "cross-entropy"),
                                              ("Validation accuracy", "accuracy"), ("Learning rate", "learning rate"))):
            _style_axes(ax)
            _set_title(ax, title)
            ax.set_xlabel("epoch", loc="center")
            ax.set_ylabel(ylabel, loc="center")
        self.suptitle = self.figure.suptitle("", fontproperties=_font("figure.titlesize", "figure.titleweight"),
                                             color=STYLE["text.color"])
        _text_style(self.suptitle, "figure.titlesize", "figure.titleweight")
        def line(ax, fmt, **kw):
            return ax.plot([], [], fmt, **_line_style(**kw))[0]

        def hline(ax, **kw):
            return ax.axhline(0, **_line_style(**kw))

        def vline(ax, **kw):
            return ax.axvline(0, **_line_style(**kw))

        # Made in the order plot_bands and plot_run make them, so overlapping lines stack the same way.
        self.loss_band = self.loss_ax.fill_between([], [], [], color=COLOURS[0], alpha=0.22, lw=0,
                                                   antialiased=STYLE["patch.antialiased"])
        self.acc_band = self.acc_ax.fill_between([], [], [], color=COLOURS[0], alpha=0.22, lw=0,
                                                 antialiased=STYLE["patch.antialiased"])
        self.band_loss = line(self.loss_ax, "-", color=COLOURS[0], linewidth=1.6)
        self.band_acc = line(self.acc_ax, "-", color=COLOURS[0], linewidth=1.6)
        self.band_train = line(self.loss_ax, "--", color=COLOURS[0], linewidth=1, alpha=0.75)
        self.band_lr = line(self.lr_ax, "-", color=COLOURS[0])
        self.train = line(self.loss_ax, "--", color=COLOURS[0], alpha=0.75)
        self.eval_loss = line(self.loss_ax, "-o", color=COLOURS[0], markersize=3)
        self.eval_acc = line(self.acc_ax, "-o", color=COLOURS[0], markersize=3)
        self.lr = line(self.lr_ax, "-", color=COLOURS[0])
        self.chance = hline(self.acc_ax, color="grey", linewidth=1, linestyle=":", label="chance")
        self.best_loss_vline = vline(self.loss_ax, color="#2ca02c", linewidth=1.2, linestyle=":")
        self.best_acc_vline = vline(self.acc_ax, color="#2ca02c", linewidth=1.2, linestyle=":")
        self.best_star = line(self.loss_ax, "*", color="#2ca02c", markersize=13)
        style = {key: value for key, value in NOTE_STYLE.items() if key not in ("x", "y", "fontsize")}
        self.note = self.loss_ax.text(NOTE_STYLE["x"], NOTE_STYLE["y"], "", transform=self.loss_ax.transAxes, **style)
        _text_style(self.note, size=NOTE_STYLE["fontsize"])
        self.acc_ax.set_ylim(0, 1.02)
        self.show_empty("")

    # ------------------------------------------------------------------ what is shown
    def show_empty(self, title: str) -> None:
        """Blank axes and a title (before the first run, or on settings nobody recorded)."""
        self._hide_all()
        self._titles(title, band=False)
        self._limits([], [])
        for ax in (self.loss_ax, self.lr_ax):  # the ranges of axes that never held data
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)

    def show_run(self, run, title: str | None = None) -> None:
        """One run as `plotting.plot_run(run, title)` draws it."""
        from .runs import diagnose

        self._hide_all()
        if not run.history:
            self._titles(title or "waiting for the first evaluation ...", band=False)
            self._limits([run], [run])
            return
        self._live(run, COLOURS[0], band=False)
        self.chance.set_ydata([run.meta.get("chance_accuracy", 0.5)] * 2)
        self.chance.set_visible(True)
        best = run.best
        if best is not None:
            for vline in (self.best_loss_vline, self.best_acc_vline):
                vline.set_xdata([best["epoch"]] * 2)
                vline.set_visible(True)
            self.best_star.set_data([best["epoch"]], [best["eval_loss"]])
            self.best_star.set_label(f"lowest validation loss (epoch {best['epoch']:.2f})")
            self.best_star.set_visible(True)
        diagnosis = diagnose(run) if run.status != "running" else None
        if diagnosis is not None:
            self._titles(title or f"{diagnosis.verdict.upper()}: highest accuracy on the curve {diagnosis.best_accuracy:.1%}",
                         band=False, color=VERDICT_COLOURS[diagnosis.verdict], weight="bold")
        else:
            self._titles(title, band=False)
        _legend(self.loss_ax, [h for h in (self.train, self.eval_loss, self.best_star) if h.get_visible()], 8)
        self._limits([run], [run], noted=[run] if run.status != "running" else [])

    def show_bands(self, runs, label: str = "recorded", title: str | None = None, live=None,
                   live_label: str = "your run") -> None:
        """One group of seed replicates as a band (`plotting.plot_bands([runs], [label], title, live, live_label)`)."""
        from .runs import seed_band

        self._hide_all()
        band = [row for row in seed_band(list(runs)) if row["eval_loss"] and row["eval_accuracy"]]
        epochs = [row["epoch"] for row in band]
        for fill, mean, key in ((self.loss_band, self.band_loss, "eval_loss"),
                                (self.acc_band, self.band_acc, "eval_accuracy")):
            fill.set_data(epochs, _finite([row[key]["min"] for row in band]), _finite([row[key]["max"] for row in band]))
            fill.set_visible(True)
            mean.set_data(epochs, _finite([row[key]["mean"] for row in band]))
            mean.set_visible(True)
        self.band_acc.set_label(f"{label} ({len(runs)} seed{'s' * (len(runs) != 1)})")
        self.band_train.set_data(epochs, _finite([row["train_loss"]["mean"] if row["train_loss"] else math.nan
                                                  for row in band]))
        self.band_train.set_visible(True)
        shown = list(runs[:1])
        if runs:
            self.band_lr.set_data(_step_epochs(runs[0], len(runs[0].learning_rates)), runs[0].learning_rates)
            self.band_lr.set_visible(True)
        if live is not None and live.history:
            self._live(live, "black", band=True, label=live_label)
            shown.append(live)
        if shown:
            self.chance.set_ydata([shown[0].meta.get("chance_accuracy", 0.5)] * 2)
            self.chance.set_visible(True)
            _legend(self.acc_ax, [h for h in (self.band_acc, self.eval_acc) if h.get_visible()], 7, loc="lower right")
        self._titles(title, band=True)
        everything = list(runs) + ([live] if live is not None and live.history else [])
        self._limits(everything, shown, noted=everything)

    def png(self) -> bytes:
        return _png(self.canvas)

    # ------------------------------------------------------------------ helpers
    def _hide_all(self) -> None:
        for artist in (self.loss_band, self.acc_band, self.band_loss, self.band_acc, self.band_train, self.band_lr,
                       self.train, self.eval_loss, self.eval_acc, self.lr, self.chance, self.best_loss_vline,
                       self.best_acc_vline, self.best_star, self.note):
            artist.set_visible(False)
        for ax in (self.loss_ax, self.acc_ax):
            if ax.get_legend() is not None:
                ax.get_legend().remove()

    def _live(self, run, colour: str, band: bool, label: str | None = None) -> None:
        """A run's lines (plotting._draw): labelled 'train'/'validation' alone, or by `label` on a band."""
        epochs = [h["epoch"] for h in run.history]
        self.train.set_data(epochs, _finite(run.column("train_loss")))
        self.eval_loss.set_data(epochs, _finite(run.column("eval_loss")))
        self.eval_acc.set_data(epochs, _finite(run.column("eval_accuracy")))
        self.lr.set_data(_step_epochs(run, len(run.learning_rates)), run.learning_rates)
        self.train.set_label("_train" if band else "train")
        self.eval_loss.set_label("_validation" if band else "validation")
        self.eval_acc.set_label(label if band else "_accuracy")
        for artist in (self.train, self.eval_loss, self.eval_acc, self.lr):
            artist.set_color(colour)
            artist.set_visible(True)

    def _titles(self, suptitle: str | None, band: bool, color: str | None = None, weight: str | None = None) -> None:
        self.suptitle.set_text(suptitle or "")
        self.suptitle.set_color(color or STYLE["text.color"])
        self.suptitle.set_fontweight(weight or STYLE["figure.titleweight"])
        _set_title(self.loss_ax, "Loss (solid: validation, dashed: train)" if band else "Loss (lower is better)")

    def _limits(self, loss_runs, lr_runs, noted=()) -> None:
        """The axes' ranges as plotting sets them: x from the data, loss and learning rate capped, accuracy 0 to 1;
        and the note on the loss panel for the `noted` runs (plotting._note)."""
        axes = (self.loss_ax, self.acc_ax, self.lr_ax)
        if self.lr_ax.get_yscale() != "linear":  # a sweep over decades drew it on a log scale
            self.lr_ax.set_yscale("linear")
            _style_axes(self.lr_ax)
        for ax in axes:
            ax.set_autoscale_on(True)
            ax.relim(visible_only=True)
        for ax in axes:
            ax.autoscale_view()
        _limit_loss_axis(self.loss_ax, loss_runs)
        _limit_lr_axis(self.lr_ax, lr_runs)
        self.acc_ax.set_ylim(0, 1.02)
        note = loss_note(noted) if noted else ""
        self.note.set_text(note)
        self.note.set_visible(bool(note))
        end = _end_of_plan(noted) if noted else None
        if end is not None:
            self.loss_ax.set_xlim(-0.05 * end, end * 1.05)


LEFT = 0.21  # plot_schedules' 0.17 cut the "l" of "learning rate" off beside ticks such as 0.0006


class ScheduleFigure:
    """The planned learning rate against optimizer step (`plotting.plot_schedules` for one schedule, with room on the
    left for ticks such as 0.0006 and the axis label, and a smaller title), in place."""

    def __init__(self, width: float = 4.4, height: float = 2.4):
        self.figure, self.canvas = _new_figure(width, height)
        self.figure.subplots_adjust(left=LEFT, right=0.97, bottom=0.2, top=0.86, wspace=0.2, hspace=0.2)
        self.ax = self.figure.subplots()
        _style_axes(self.ax)
        self.ax.xaxis.set_major_locator(matplotlib.ticker.AutoLocator())
        self.ax.yaxis.set_major_locator(matplotlib.ticker.AutoLocator())
        self.ax.set_xlabel("optimizer step", loc="center")
        self.ax.set_ylabel("learning rate", loc="center")
        self.line = self.ax.plot([], [], **_line_style(color=COLOURS[0], linestyle="-", linewidth=1.8))[0]

    def show(self, rates, title: str) -> None:
        self.line.set_data(range(1, len(rates) + 1), rates)
        _set_title(self.ax, title, size="medium")  # a title as long as "cosine_with_restarts: 1010 steps, ..."
        self.ax.relim()
        self.ax.autoscale_view()

    def png(self) -> bytes:
        return _png(self.canvas)
