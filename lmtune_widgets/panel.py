"""The tuning panel: a control per hyperparameter, Run and Stop, live curves, run history and comparison.

    from lmtune_widgets import TuningPanel
    panel = TuningPanel(vary=("learning_rate",))   # only the learning rate can be changed
    panel                                           # shows it in a notebook
    panel.run(); panel.wait()                       # what the Run button does; wait() returns a static picture

One state object is the source of truth (the `FineTuneConfig` the controls describe, `panel.config`); the
widgets are views of it. Observers only update labels, the planned schedule and enabled flags; training
starts only from `run()`, which the Run button calls. Training runs on a background thread so the notebook
stays responsive and Stop works. Pictures are PNGs set on `ipywidgets.Image` widgets, which every front end
(JupyterLab, Colab, VS Code, Voila) shows, whichever thread sets them.
"""
from __future__ import annotations

import html
import threading
import time
import traceback
from typing import Any, Iterable

import ipywidgets as widgets

from .config import PRESETS, SCHEDULES, TASKS, FineTuneConfig, config_key, describe
from .plotting import plot_bands, plot_run, plot_runs, plot_schedules, to_png
from .runs import Run, diagnose

LABELS = {  # short descriptions shown next to each control
    "learning_rate": "learning rate",
    "per_device_train_batch_size": "batch size",
    "num_train_epochs": "epochs",
    "dropout": "dropout",
    "weight_decay": "weight decay",
    "lr_scheduler_type": "schedule",
    "warmup_ratio": "warmup ratio",
    "freeze_layers": "frozen layers",
    "max_train_samples": "training samples",
    "label_noise": "label noise",
    "early_stopping_patience": "early stop after",
    "task": "task",
    "seed": "seed",
}
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
STYLE = {"description_width": "120px"}
LAYOUT = widgets.Layout(width="360px")


class StaticFigure:
    """A picture of a run that any notebook viewer shows (IPython renders `_repr_png_`)."""

    def __init__(self, png: bytes | memoryview):
        self.png = bytes(png)

    def _repr_png_(self) -> bytes:
        return self.png


class TuningPanel:
    """An ipywidgets app over `fine_tune`: see the module docstring."""

    def __init__(self, vary: Iterable[str] | None = None, **config_overrides: Any):
        self.base = FineTuneConfig(**config_overrides)  # settings the controls start from (and reset to)
        self.vary = None if vary is None else tuple(vary)
        self.runs: list[Run] = []
        self.errors: list[str] = []
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._live_run: Run | None = None
        self._seconds_per_unit: float | None = None
        self._data_sizes: dict[str, tuple[int, int, int]] = {}
        self.recorded: list[Run] = []  # the atlas's runs of the current settings (all seeds); [] if not recorded
        self._book = None

        self.controls = self._make_controls()
        unknown = set(self.vary or ()) - set(self.controls)
        if unknown:
            raise ValueError(f"vary={sorted(unknown)} names no control; the controls are {sorted(self.controls)}")
        self.preset_dropdown = widgets.Dropdown(options=["(custom)", *PRESETS], value="(custom)", description="preset",
                                                style=STYLE, layout=LAYOUT, disabled=self.vary is not None,
                                                tooltip="Set every control to a lesson's settings.")
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play",
                                         tooltip="Fine-tune with these settings (a real run).")
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                          tooltip="End the run after the current step; keep its curves.")
        self.check_html = widgets.HTML()  # invalid combinations, next to the controls
        self.plan_html = widgets.HTML()  # trainable parameters, estimated time
        self.schedule_image = widgets.Image(format="png", layout=widgets.Layout(width="360px"))
        self.progress_bar = widgets.IntProgress(value=0, min=0, max=1, description="progress", style=STYLE,
                                                layout=widgets.Layout(width="520px"))
        self.progress_label = widgets.HTML()
        self.curves_image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="1000px"))
        self.verdict_html = widgets.HTML()
        self.log_html = widgets.HTML()  # errors raised inside callbacks or the run
        self.history_html = widgets.HTML()
        self.compare_select = widgets.SelectMultiple(options=[], description="runs", rows=5, style=STYLE,
                                                     layout=widgets.Layout(width="300px"))
        self.compare_button = widgets.Button(description="Compare", icon="line-chart",
                                             tooltip="Overlay the chosen runs in one plot.")
        self.compare_image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="1000px",
                                                                               display="none"))  # until used
        self.share_text = widgets.Text(description="share", style=STYLE, layout=widgets.Layout(width="520px"),
                                       tooltip="Copy this text to give someone these settings.")
        self.paste_text = widgets.Text(description="paste", placeholder='e.g. {"learning_rate":0.001}', style=STYLE,
                                       layout=widgets.Layout(width="520px"))
        self.apply_button = widgets.Button(description="Apply", tooltip="Set the controls from pasted settings.")

        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.compare_button.on_click(lambda _: self.compare())
        self.apply_button.on_click(lambda _: self.apply_share_string(self.paste_text.value))
        self.preset_dropdown.observe(self._on_preset, names="value")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.recorded_html = widgets.HTML()  # what the curves picture shows: recorded runs, or nothing yet
        self.widget = self._layout()
        self._empty_png = to_png(plot_run(Run(self.base, [], status="running"),
                                          title="Press Run: the curves appear here as the model trains"))
        self._on_change()

    # ------------------------------------------------------------------ controls
    def _make_controls(self) -> dict[str, widgets.Widget]:
        b = self.base
        common = dict(style=STYLE, layout=LAYOUT, continuous_update=False)
        controls = {
            "learning_rate": widgets.FloatLogSlider(value=b.learning_rate, base=10, min=-7, max=-1, step=0.1,
                                                    readout_format=".1e", **common),
            "per_device_train_batch_size": widgets.SelectionSlider(
                options=sorted(set(BATCH_SIZES) | {b.per_device_train_batch_size}),
                value=b.per_device_train_batch_size, **common),
            "num_train_epochs": widgets.FloatSlider(value=b.num_train_epochs, min=0.5, max=max(20, b.num_train_epochs),
                                                    step=0.5, **common),
            "dropout": widgets.FloatSlider(value=b.dropout, min=0, max=0.9, step=0.05, **common),
            "weight_decay": widgets.FloatSlider(value=b.weight_decay, min=0, max=1, step=0.01, **common),
            "lr_scheduler_type": widgets.Dropdown(options=list(SCHEDULES), value=b.lr_scheduler_type,
                                                  style=STYLE, layout=LAYOUT),
            "warmup_ratio": widgets.FloatSlider(value=b.warmup_ratio, min=0, max=0.5, step=0.05, **common),
            "freeze_layers": widgets.IntSlider(value=b.freeze_layers, min=0, max=self._num_layers(), step=1, **common),
            "max_train_samples": widgets.IntSlider(value=min(b.max_train_samples, self._sizes()[0]), min=16,
                                                   max=self._sizes()[0], step=16, **common),
            "label_noise": widgets.FloatSlider(value=b.label_noise, min=0, max=0.5, step=0.05, **common),
            "early_stopping_patience": widgets.IntSlider(value=b.early_stopping_patience, min=0, max=10, **common),
            "task": widgets.Dropdown(options=list(TASKS), value=b.task, style=STYLE, layout=LAYOUT,
                                     disabled=b.dataset is not None),
            "seed": widgets.BoundedIntText(value=b.seed, min=0, max=2**31 - 1, style=STYLE, layout=LAYOUT),
        }
        for name, control in controls.items():
            control.description = LABELS[name]
            control.tooltip = describe(name)
            if self.vary is not None and name not in self.vary:
                control.disabled = True
        return controls

    def _num_layers(self) -> int:
        from .models import model_skeleton, transformer_layers

        return len(transformer_layers(model_skeleton(self.base.model_name, 2)))

    def _sizes(self, task: str | None = None) -> tuple[int, int, int]:
        """(training examples, validation examples, labels) of the task's data."""
        from .data import load_splits

        key = task or self.base.task
        if key not in self._data_sizes:
            splits = load_splits(key, self.base.dataset)
            self._data_sizes[key] = (len(splits.train), len(splits.validation), len(splits.label_names))
        return self._data_sizes[key]

    @property
    def config(self) -> FineTuneConfig:
        """The FineTuneConfig the controls describe now (raises ValueError for an invalid value)."""
        values = {name: control.value for name, control in self.controls.items()}
        return self.base.replace(**values)

    def set_config(self, config: FineTuneConfig) -> None:
        """Move the controls to `config` (settings without a control must match the panel's base)."""
        for name, control in self.controls.items():
            value = getattr(config, name)
            if isinstance(control, widgets.SelectionSlider) and value not in control.options:
                control.options = sorted(set(control.options) | {value})
            if isinstance(control, widgets.IntSlider) and name == "max_train_samples":
                value = min(value, control.max)
            control.value = value
        fixed = {k: v for k, v in config.to_dict().items() if k not in self.controls}
        self.base = self.base.replace(**fixed)
        self._on_change()

    # ------------------------------------------------------------------ observers: light work only
    def _on_preset(self, change) -> None:
        if change["new"] in PRESETS:
            self.set_config(FineTuneConfig.from_preset(change["new"], **{
                k: v for k, v in self.base.to_dict().items() if k in ("model_name", "dataset", "device")}))

    def _on_change(self, change=None) -> None:
        try:
            config = self.config
            from .models import plan_parameters
            from .training import check_fits, estimate_seconds, planned_learning_rates

            num_train_all, num_eval_all, num_labels = self._sizes(config.task)
            num_train = min(config.max_train_samples, num_train_all)
            num_eval = min(config.max_eval_samples, num_eval_all)
            check_fits(config, num_train, self._num_layers())
        except ValueError as error:
            self.check_html.value = f"<div style='color:#b00020'>&#9888; {html.escape(str(error))}</div>"
            self.run_button.disabled = True
            return
        self.check_html.value = ""
        self.run_button.disabled = self.running
        self.share_text.value = config.to_share_string()
        rows = plan_parameters(config.model_name, num_labels, config.freeze_layers)
        trainable, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
        seconds = estimate_seconds(config, num_train, num_eval, self._num_layers(),
                                   self._seconds_per_unit or 1.3e-3)
        rates = planned_learning_rates(config, num_train)
        self.plan_html.value = (
            f"<b>Trainable parameters:</b> {trainable / 1e6:.2f} M of {total / 1e6:.1f} M ({trainable / total:.0%})"
            f"<br><b>Training examples:</b> {num_train} &nbsp; <b>optimizer steps:</b> {len(rates)}"
            f"<br><b>Estimated time:</b> {_duration(seconds)} of training on this machine")
        warmup = sum(1 for i in range(1, len(rates)) if rates[i] > rates[i - 1])
        title = f"Planned learning rate: {config.lr_scheduler_type}, {len(rates)} steps, {warmup} warmup"
        self.schedule_image.value = to_png(plot_schedules({config.lr_scheduler_type: rates}, title=title,
                                                          width=4.4, height=2.4))
        if not self.running:
            self._show_recorded(config, redraw=change is not None or not self.runs)

    def _show_recorded(self, config: FineTuneConfig, redraw: bool) -> None:
        """Draw the atlas's seed band for these settings at once, without training (when they were recorded)."""
        from .atlas import load

        if self._book is None:
            self._book = load()
        match = self._book.lookup(config)
        self.recorded = match.runs if match.exact else []
        if match.exact:
            self.recorded_html.value = (f"<b>Recorded:</b> these settings were fine-tuned with {len(match.runs)} seeds "
                                        "(the band spans them). Press Run to train live and see where yours lands.")
            if redraw:
                self.curves_image.value = to_png(plot_bands([match.runs], ["recorded"],
                                                            title=f"Recorded runs of these settings: {len(match.runs)} seeds"))
        else:
            self.recorded_html.value = ("<i>These settings are not recorded: press Run to see their curves"
                                        + (f" ({html.escape(str(match))})" if match.runs else "") + ".</i>")
            if redraw:  # never leave another setting's band on show
                self.curves_image.value = self._empty_png

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> bool:
        """Start a run in the background with the current settings. Returns False if one is running or
        the settings are invalid (the reason is shown next to the controls)."""
        with self._lock:
            if self.running:
                return False
            self._on_change()
            if self.check_html.value:
                return False
            config = self.config
            for old in self.runs:
                old.release()  # keep the curves of past runs, not their weights
            self._stop_event = threading.Event()
            self._set_running(True)
            self.verdict_html.value = "<i>training ...</i>"
            self.log_html.value = ""
            self._thread = threading.Thread(target=self._train, args=(config,), daemon=True, name="lmtune-run")
            self._thread.start()
            return True

    def stop(self) -> None:
        """Ask the running fine-tune to end after its current step (it keeps its history)."""
        self._stop_event.set()

    def wait(self, timeout: float | None = None) -> StaticFigure | None:
        """Block until the current run ends; returns a static picture of its curves (for saved notebooks)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return StaticFigure(self.curves_image.value) if self.curves_image.value else None

    def _train(self, config: FineTuneConfig) -> None:
        from .training import Callback, fine_tune

        panel = self

        class Live(Callback):
            def on_train_begin(self, run):
                panel._live_run = run
                panel.progress_bar.max = run.meta["total_steps"]
                panel.progress_bar.value = 0
                self.t0 = time.perf_counter()

            def on_step_end(self, run, step, loss):
                panel.progress_bar.value = step
                elapsed = time.perf_counter() - self.t0
                left = elapsed / step * (run.meta["total_steps"] - step)
                panel.progress_label.value = (f"step {step}/{run.meta['total_steps']} &nbsp; loss {loss:.3f} &nbsp; "
                                              f"{elapsed:.0f} s so far, {_duration(left)} left")

            def on_evaluate(self, run, point):
                title = f"epoch {point['epoch']:.2f}: validation accuracy {point['eval_accuracy']:.1%}"
                panel.curves_image.value = to_png(panel._curves(run, title))

        run = None
        try:
            run = fine_tune(config, callbacks=[Live()], stop_event=self._stop_event)
        except Exception as error:  # shown in the panel, never lost
            run = getattr(error, "run", None)
            self._show_error(error)
        finally:
            try:
                if run is not None:
                    self._finish(run)
            except Exception as error:
                self._show_error(error)
            self._set_running(False)

    def _finish(self, run: Run) -> None:
        self.runs.append(run)
        self._refresh_history()  # first: the run joins the table even if drawing it fails
        d = diagnose(run, recorded=self._recorded_for(run))
        self.curves_image.value = to_png(self._curves(run))
        colour = {"good fit": "#2ca02c", "overfitting": "#e67e00", "underfitting": "#1f77b4", "diverged": "#b00020"}
        stopped = f" ({run.status})" if run.status in ("stopped", "failed") else ""
        best = f"best at epoch {d.best_epoch:.2f}, " if d.best_epoch is not None else ""
        self.verdict_html.value = (f"<div style='font-size:1.15em'><b style='color:{colour[d.verdict]}'>"
                                   f"{d.verdict.upper()}</b>{stopped}: {best}best validation accuracy "
                                   f"{d.best_accuracy:.1%}</div><div>{html.escape(d.reason)}</div>"
                                   f"<div><b>Try:</b> {html.escape(d.advice)}</div>"
                                   + (f"<div><b>Against the recorded runs:</b> {html.escape(d.spread)}</div>"
                                      if d.spread else ""))
        if run.meta.get("train_s") and run.meta.get("total_steps"):
            from .training import estimate_seconds

            unit = estimate_seconds(run.config, run.meta["num_train"], run.meta["num_eval"], run.meta["num_layers"], 1.0)
            done = len(run.learning_rates) / run.meta["total_steps"]
            if done > 0.2:
                self._seconds_per_unit = run.meta["train_s"] / (unit * done)
        self._on_change()

    def _recorded_for(self, run: Run) -> list[Run]:
        """The recorded runs drawn now, if they have the live run's settings (the seed aside)."""
        same = self.recorded and config_key(self.recorded[0].config) == config_key(run.config)
        return self.recorded if same else []

    def _curves(self, run: Run, title: str | None = None):
        """The live run's curves, on the recorded seed band of the same settings when there is one."""
        if self._recorded_for(run):
            return plot_bands([self.recorded], ["recorded"], live=run, live_label="your run",
                              title=title or f"Your run ({diagnose(run).verdict}) on the recorded band")
        return plot_run(run, title=title)

    def _show_error(self, error: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        self.errors.append(text)
        self.log_html.value = (f"<pre style='color:#b00020;white-space:pre-wrap'>The run failed: "
                               f"{html.escape(text)}</pre>")
        self.verdict_html.value = ""

    def _set_running(self, running: bool) -> None:
        self.run_button.disabled = running or bool(self.check_html.value)
        self.stop_button.disabled = not running
        self.preset_dropdown.disabled = running or self.vary is not None
        self.apply_button.disabled = running

    # ------------------------------------------------------------------ history, comparison, sharing
    def _refresh_history(self) -> None:
        rows = []
        for i, run in enumerate(self.runs, 1):
            d = diagnose(run)
            changed = ", ".join(f"{LABELS.get(k, k)}={_short(v)}" for k, v in run.config.changes().items()) or "defaults"
            best_epoch = f"{d.best_epoch:.2f}" if d.best_epoch is not None else "-"
            rows.append(f"<tr><td>{i}</td><td>{html.escape(changed)}</td><td>{d.best_accuracy:.1%}</td>"
                        f"<td>{best_epoch}</td><td>{d.verdict}{f' ({run.status})' if run.status in ('stopped', 'failed') else ''}</td>"
                        f"<td>{run.meta.get('train_s', 0):.1f} s</td></tr>")
        self.history_html.value = (
            "<table style='border-collapse:collapse' cellpadding='4' border='1'><tr><th>run</th><th>changed from the "
            "defaults</th><th>best val. accuracy</th><th>best epoch</th><th>verdict</th><th>time</th></tr>"
            + "".join(rows) + "</table>")
        self.compare_select.options = [(f"run {i}", i - 1) for i in range(1, len(self.runs) + 1)]
        self.compare_select.value = tuple(range(max(0, len(self.runs) - 2), len(self.runs)))

    def compare(self, indices: Iterable[int] | None = None) -> StaticFigure | None:
        """Overlay the chosen past runs (the selected ones by default) in one plot."""
        chosen = list(self.compare_select.value if indices is None else indices)
        if not chosen:
            return None
        runs = [self.runs[i] for i in chosen]
        self.compare_image.value = to_png(plot_runs(runs, labels=[f"run {i + 1}" for i in chosen]))
        self.compare_image.layout.display = None
        return StaticFigure(self.compare_image.value)

    def apply_share_string(self, text: str) -> None:
        """Set the controls from a share string (shows the error next to the controls if it is invalid)."""
        try:
            config = FineTuneConfig.from_share_string(text)
            self.set_config(config)
        except ValueError as error:
            self.check_html.value = f"<div style='color:#b00020'>&#9888; {html.escape(str(error))}</div>"

    # ------------------------------------------------------------------ layout and display
    def _layout(self) -> widgets.Widget:
        title = widgets.HTML("<h3 style='margin:4px 0'>Fine-tuning panel: move a control, press Run</h3>")
        controls = widgets.VBox([self.preset_dropdown, *self.controls.values(), self.check_html,
                                 widgets.HBox([self.run_button, self.stop_button])],
                                layout=widgets.Layout(width="380px"))
        plan = widgets.VBox([self.plan_html, self.schedule_image], layout=widgets.Layout(width="420px"))
        top = widgets.HBox([controls, plan])
        live = widgets.VBox([widgets.HBox([self.progress_bar, self.progress_label]), self.recorded_html, self.curves_image,
                             self.verdict_html, self.log_html])
        history = widgets.VBox([widgets.HTML("<b>Run history</b>"), self.history_html,
                                widgets.HBox([self.compare_select, self.compare_button]), self.compare_image])
        share = widgets.VBox([widgets.HTML("<b>Share settings</b>: copy the first line; paste one below and "
                                           "press Apply."), self.share_text,
                              widgets.HBox([self.paste_text, self.apply_button])])
        return widgets.VBox([title, top, live, history, share])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.1f} min"


def _short(value: Any) -> str:
    return f"{value:.0e}" if isinstance(value, float) and 0 < abs(value) < 1e-3 else str(value)
