"""The kit's look: matplotlib's default style, whatever style the learner's notebook has set.

    fig = new_figure(6.4, 3.4)                      # a Figure with its own Agg canvas, in the default style
    style_axes(ax); set_title(ax, "Loss")           # every look the style decides, given to the axes itself
    ax.plot(x, y, **line_style(color="grey"))       # every Line2D property the style decides, given to the line
    styled_legend(ax, fontsize=8)

matplotlib reads its global `rcParams` whenever it makes an artist (and while drawing, for new tick labels), and a
notebook may have changed them (Optuna's plots switch to ggplot; a learner may call `style.use`).
`matplotlib.style.context` would change those globals for every thread, losing or mixing the learner's own style
when two threads draw at once (the panel draws from its own thread). So the figures that the panel redraws in place
take matplotlib's default style from a dict (`STYLE`) and give every property it decides explicitly, to each artist:
the learner's style never reaches them and is never touched.

`default_style` is the simpler way, for pictures drawn once from a notebook cell: a style context around the call.
"""
from __future__ import annotations

import functools

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, font_scalings
from matplotlib.ticker import MaxNLocator, ScalarFormatter

STYLE = dict(matplotlib.rcParamsDefault)  # matplotlib's default style, as a plain dict (read, never applied)
DPI = 90  # what the kit's PNGs are drawn at


def default_style(function):
    """Draw in matplotlib's default style whatever the global state, for the call only (a style context: for a
    picture drawn once from a notebook cell, not for one drawn from a thread of the panel)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.style.context("default"):
            return function(*args, **kwargs)

    return wrapper


def font_size(value) -> float:
    """A font size from the style ('large', 'medium', 10) in points, against the style's own base size."""
    return float(STYLE["font.size"]) * font_scalings[value] if isinstance(value, str) else float(value)


def font(size="font.size", weight="font.weight") -> FontProperties:
    """The style's font; `size` and `weight` are style keys ("axes.titlesize") or values (8, "bold")."""
    return FontProperties(family=STYLE["font.family"], style=STYLE["font.style"], variant=STYLE["font.variant"],
                          stretch=STYLE["font.stretch"], weight=STYLE.get(weight, weight),
                          size=font_size(STYLE.get(size, size)))


def style_text(text, size="font.size", weight="font.weight", color="text.color") -> None:
    """Give a Text the style's font, colour and rendering (`size`, `weight`, `color`: style keys or values)."""
    text.set_fontproperties(font(size, weight))
    text.set_color(STYLE.get(color, color))
    text.set_usetex(False)
    text.set_antialiased(STYLE["text.antialiased"])


def line_style(**overrides) -> dict:
    """Every Line2D property the style would otherwise decide, with `overrides` (color, linewidth, ...)."""
    return {"linewidth": STYLE["lines.linewidth"], "markersize": STYLE["lines.markersize"],
            "markeredgewidth": STYLE["lines.markeredgewidth"], "antialiased": STYLE["lines.antialiased"],
            "dash_capstyle": STYLE["lines.dash_capstyle"], "dash_joinstyle": STYLE["lines.dash_joinstyle"],
            "solid_capstyle": STYLE["lines.solid_capstyle"], "solid_joinstyle": STYLE["lines.solid_joinstyle"],
            **overrides}


def styled_legend(ax, fontsize: float, handles=None, **overrides):
    """A legend styled from STYLE, of `handles` (by default every labelled artist of `ax`, as `ax.legend()`).
    Its frame's line width is set on the frame itself: matplotlib 3.11 also takes it as `legend(linewidth=...)`
    (rcParam legend.linewidth, None: the patches' width); 3.10 has neither."""
    keys = ("loc", "frameon", "framealpha", "fancybox", "shadow", "numpoints", "scatterpoints", "markerscale",
            "borderpad", "labelspacing", "handlelength", "handleheight", "handletextpad", "borderaxespad",
            "columnspacing", "labelcolor")
    style = {key: STYLE[f"legend.{key}"] for key in keys}
    if style["labelcolor"] in (None, "None"):
        style["labelcolor"] = STYLE["text.color"]
    face = STYLE["legend.facecolor"]
    edge = STYLE["legend.edgecolor"]
    if handles is None:
        handles, _ = ax.get_legend_handles_labels()
    legend = ax.legend(handles=handles, **{**style, "prop": font(fontsize),
                                           "facecolor": STYLE["axes.facecolor"] if face == "inherit" else face,
                                           "edgecolor": STYLE["axes.edgecolor"] if edge == "inherit" else edge,
                                           **overrides})
    legend.get_frame().set_linewidth(STYLE.get("legend.linewidth") or STYLE["patch.linewidth"])
    return legend


def new_figure(width: float, height: float) -> Figure:
    """A Figure in the style's colours with its own Agg canvas (`fig.canvas.print_png` works from any thread)."""
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor=STYLE["figure.facecolor"],
                 edgecolor=STYLE["figure.edgecolor"], linewidth=0.0, frameon=STYLE["figure.frameon"], layout="none")
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax) -> None:
    """Give an axes every look the style decides: face, spines, ticks, tick labels, grid, titles and labels (with
    at most 5 ticks an axis and a light grid, as every picture of the kit)."""
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
        labels = {"labelsize": font_size(STYLE[f"{name}.labelsize"]),
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
        style_text(axis.get_offset_text(), size=STYLE[f"{name}.labelsize"], color=labels["labelcolor"])
        style_text(axis.label, size="axes.labelsize", weight="axes.labelweight", color="axes.labelcolor")
        axis.labelpad = STYLE["axes.labelpad"]
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3, color=STYLE["grid.color"], linestyle=STYLE["grid.linestyle"],
            linewidth=STYLE["grid.linewidth"])


def set_title(ax, text: str, size="axes.titlesize") -> None:
    """An axes title in the style's font, placed as the style places it."""
    # y given: matplotlib then skips measuring every tick label to lift a title above top ticks (there are none)
    ax.set_title(text, loc="center", pad=STYLE["axes.titlepad"],
                 y=1.0 if STYLE["axes.titley"] is None else STYLE["axes.titley"],
                 fontproperties=font(size, "axes.titleweight"),
                 color=STYLE["text.color"] if STYLE["axes.titlecolor"] == "auto" else STYLE["axes.titlecolor"])


def set_suptitle(fig, text: str | None, color: str | None = None, weight: str | None = None) -> None:
    """The figure's title in the style's font ("" or None: none shown), in `color` and `weight` if given."""
    title = fig.suptitle(text or "", fontproperties=font("figure.titlesize", "figure.titleweight"))
    style_text(title, "figure.titlesize", weight or "figure.titleweight", color or "text.color")
