"""The panel's two pictures, each one figure built once and redrawn in place.

    curves = CurvesFigure()
    curves.show_run(run, title="epoch 1.00: ...")     # what plotting.plot_run draws
    curves.show_bands(recorded, live=run)              # what plot_bands([recorded], ["recorded"], live=run) draws
    png = curves.png()                                 # PNG bytes for an ipywidgets.Image
    schedule = ScheduleFigure(); schedule.show(rates, title); schedule.png()

`plotting` builds a new figure for every picture (right for lessons, which draw once). The panel redraws its
curves at every evaluation point and on every control change, so here one figure and its axes are kept: each
picture takes away what the last one drew (`plotting.clear_panels`) and draws into the same axes with plotting's
own functions (`plotting.draw_run`, `plotting.draw_bands`), so the panel's curves are the lessons' curves by
construction. Only the lines, the drawing and the PNG encoding are paid again, not the figure, its axes and their
ticks.

Style without global state: both pictures give every artist matplotlib's default look themselves
(`figure_style`): the learner's style never reaches them and is never touched, whichever thread draws. Not
thread-safe by themselves: the panel draws under its lock.
"""
from __future__ import annotations

import io

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg

from .figure_style import line_style, new_figure, set_title, style_axes
from .plotting import COLOURS, clear_panels, curves_figure, draw_bands, draw_empty, draw_run


def _png(canvas: FigureCanvasAgg) -> bytes:
    buffer = io.BytesIO()
    canvas.print_png(buffer, pil_kwargs={"compress_level": 1})  # fast to encode; a PNG 10% larger
    return buffer.getvalue()


class CurvesFigure:
    """Loss, validation accuracy and learning rate (the three panels of `plotting.plot_run`), redrawn in place.

    `show_run` draws one run with `plotting.draw_run`; `show_bands` a recorded seed band, and a live run on it in
    black, with `plotting.draw_bands`; `show_empty` a blank picture with a title."""

    def __init__(self, width: float = 11.0, height: float = 3.4):
        self.figure, self.panels = curves_figure(width, height)
        self.canvas = self.figure.canvas
        self.show_empty("")

    def show_empty(self, title: str) -> None:
        """Blank axes and a title (before the first run, or on settings nobody recorded)."""
        clear_panels(self.panels)
        draw_empty(self.panels, title)

    def show_run(self, run, title: str | None = None) -> None:
        """One run as `plotting.plot_run(run, title)` draws it."""
        clear_panels(self.panels)
        draw_run(self.panels, run, title)

    def show_bands(self, runs, label: str = "recorded", title: str | None = None, live=None,
                   live_label: str = "your run") -> None:
        """One group of seed replicates as a band (`plotting.plot_bands([runs], [label], title, live, live_label)`)."""
        clear_panels(self.panels)
        draw_bands(self.panels, [runs], [label], title, live, live_label)

    def png(self) -> bytes:
        return _png(self.canvas)


LEFT = 0.21  # plot_schedules' 0.17 cut the "l" of "learning rate" off beside ticks such as 0.0006


class ScheduleFigure:
    """The planned learning rate against optimizer step (`plotting.plot_schedules` for one schedule, with room on the
    left for ticks such as 0.0006 and the axis label, and a smaller title), in place."""

    def __init__(self, width: float = 4.4, height: float = 2.4):
        self.figure = new_figure(width, height)
        self.canvas = self.figure.canvas
        self.figure.subplots_adjust(left=LEFT, right=0.97, bottom=0.2, top=0.86, wspace=0.2, hspace=0.2)
        self.ax = self.figure.subplots()
        style_axes(self.ax)
        self.ax.xaxis.set_major_locator(matplotlib.ticker.AutoLocator())
        self.ax.yaxis.set_major_locator(matplotlib.ticker.AutoLocator())
        self.ax.set_xlabel("optimizer step", loc="center")
        self.ax.set_ylabel("learning rate", loc="center")
        self.line = self.ax.plot([], [], **line_style(color=COLOURS[0], linestyle="-", linewidth=1.8))[0]

    def show(self, rates, title: str) -> None:
        self.line.set_data(range(1, len(rates) + 1), rates)
        set_title(self.ax, title, size="medium")  # a title as long as "cosine_with_restarts: 1010 steps, ..."
        self.ax.relim()
        self.ax.autoscale_view()

    def png(self) -> bytes:
        return _png(self.canvas)
