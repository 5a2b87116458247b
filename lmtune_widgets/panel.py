"""The tuning panel: a control per hyperparameter, Run and Stop, live curves, run history and comparison.

    from lmtune_widgets import TuningPanel
    panel = TuningPanel(vary=("learning_rate",))   # only the learning rate can be changed
    panel                                           # shows it in a notebook
    panel.run(); panel.wait()                       # what the Run button does; wait() returns a static picture

    # a class-wide study: every run that ends is also filed into it, with the learner's name (as `search` does)
    panel = TuningPanel(storage="postgresql+psycopg://postgres:PASSWORD@HOST:54320/postgres",
                        study_name="workshop", learner="ada")

State, view and controller, one module each:
- `panel_plan` (the state): `PanelState` (base settings, runs, this machine's speed) and the `Plan` of a config,
  the one answer to "is this runnable, and what will it do" (its config or its error, steps, learning rates,
  trainable parameters, estimated time, recorded runs).
- `panel` (here, the view): `TuningPanel`, the widgets and the rendering of a plan and of what a run reports. Every
  widget update, every picture and all planning happen under one lock (`controller.lock`): the controls' observers,
  `run()`, and the `show_*` methods the controller calls.
- `panel_runner` (the controller): `PanelController`, Run and Stop, the training thread (`TrainingThread`), the
  class study's filing thread (`StudyFiler`, with `storage=`; a database that does not answer never holds up
  training or the widgets) and the pump thread that hands what they report to the view, so the curves keep growing
  while another cell runs (ipywidgets sends widget updates from any thread).

The state is the source of truth; observers only re-plan and show the plan (labels, enabled flags); training
starts only from `run()`, which the Run button calls, and trains the config of the plan it shows. Pictures are PNGs
set on `ipywidgets.Image` widgets, which every front end (JupyterLab, Notebook 7, Colab, VS Code, Voila) shows; each
is one matplotlib figure redrawn in place (`panel_figures`), styled without touching matplotlib's global settings.
"""
from __future__ import annotations

import functools
import html
import math
import os
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Iterable

import ipywidgets as widgets

from .config import PRESETS, SCHEDULES, TASKS, FineTuneConfig, describe
from .data_files import FILE_SUFFIXES
from .panel_figures import CurvesFigure, ScheduleFigure
from .panel_plan import PanelState, Plan, judge, same_settings
from .panel_runner import PanelController, StudyFiler
from .plotting import plot_runs, to_png
from .runs import Run, diagnose

if TYPE_CHECKING:
    from .atlas import Book

LABELS = {  # short descriptions shown next to each control
    "learning_rate": "learning rate",
    "per_device_train_batch_size": "batch size",
    "num_train_epochs": "epochs",
    "dropout": "dropout",
    "weight_decay": "weight decay",
    "lr_scheduler_type": "schedule",
    "warmup_ratio": "warmup ratio",
    "freeze_layers": "frozen layers",
    "pooling": "head reads",
    "max_train_samples": "training samples",
    "label_noise": "label noise",
    "early_stopping_patience": "early stop after",
    "gradient_accumulation_steps": "accumulate batches",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "task": "task",
    "seed": "seed",
    "label_smoothing_factor": "label smoothing",
    "lr_decay_ratio": "decay fraction",
    "min_lr_rate": "cosine floor",
    "lora_target_modules": "LoRA on",
    "use_rslora": "rsLoRA",
    "data_seed": "data order seed",
}
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
ACCUMULATION_STEPS = [1, 2, 4, 8, 16]
LORA_RANKS = [0, 1, 2, 4, 8, 16, 32, 64]  # 0: no LoRA
LORA_ALPHAS = [1, 2, 4, 8, 16, 32, 64, 128]
LORA_TARGETS = [("attention (q, k, v, o)", ("q_proj", "k_proj", "v_proj", "o_proj")),
                ("every linear layer", ("all-linear",))]
DATA_SEEDS = [("same as seed", None), *((str(s), s) for s in (0, 1, 2, 3, 4, 42))]
# Controls that apply to one kind of model only: disabled (with the reason as their tooltip) for the other kind.
LLM_ONLY = {"lora_r": "LoRA adapters are for the decoder LLM (preset llm_lora); "
                      "MiniLM trains what freeze_layers leaves.",
            "lora_alpha": "LoRA adapters are for the decoder LLM (preset llm_lora).",
            "lora_target_modules": "LoRA adapters are for the decoder LLM (preset llm_lora).",
            "use_rslora": "LoRA adapters are for the decoder LLM (preset llm_lora)."}
ENCODER_ONLY = {"pooling": "A decoder LLM answers in words: it has no classification head to read tokens."}
DATA_FIELDS = ("dataset", "text_column", "label_column")  # the data: set with the data box, not a control
_SUMMARIES: dict[tuple, Any] = {}  # (data source, model, max_length) -> its DataSummary: tokenizing every text once


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file in a `FileUpload`'s value: ipywidgets 8 gives a tuple of dicts with 'name' and
    'content' (a memoryview); ipywidgets 7 (Colab's) a dict of name -> {'content': bytes, 'metadata': ...}."""
    if isinstance(value, dict):
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value or ()]


def data_summary(config: FineTuneConfig):
    """The `data_files.DataSummary` of the data a config trains on, lengths in its model's tokens (raises what
    loading raises: DataFileError for a bad file). Its warnings are in the summary, not raised again."""
    from .data import DataWarning, splits_for
    from .data_files import summarize
    from .models import load_tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the panel shows them in the summary
        splits = splits_for(config)
        key = (splits.source, config.model_name, config.max_length)
        if key not in _SUMMARIES:
            try:
                tokenizer = load_tokenizer(config.model_name)
            except Exception:  # a model out of reach: the summary in words
                tokenizer = None
            _SUMMARIES[key] = summarize(splits, tokenizer, config.max_length)
    return _SUMMARIES[key]


def slider_rate(value: float) -> float:
    """The learning rate a slider position stands for: the browser sends 10**-3.3 = 0.000501187 for the position
    that reads 5.0e-04; that becomes 5e-4 (two significant digits, as the readout shows), so the run is the recorded
    5e-4 run to the last digit. A value between positions (set from code) is kept as it is."""
    position = math.log10(value) * 10 if value > 0 else math.nan
    if math.isfinite(position) and abs(position - round(position)) < 1e-6:
        return float(f"{10 ** (round(position) / 10):.2g}")
    return value
def _with_option(options: list, value: Any) -> list:
    """A dropdown's (label, value) options, with `value` added (labelled as itself) when it is not one of them."""
    if value in [o[1] for o in options]:
        return list(options)
    label = ", ".join(value) if isinstance(value, tuple) else str(value)
    return [*options, (label, value)]


STYLE = {"description_width": "120px"}
LAYOUT = widgets.Layout(width="360px")


def set_tooltip(widget: widgets.Widget, text: str) -> None:
    """Hover text for any control: ipywidgets 8 calls it `tooltip`; ipywidgets 7 (Colab's) `description_tooltip`,
    apart from buttons, which have had `tooltip` all along. Setting a name the widget lacks would show nothing."""
    setattr(widget, "tooltip" if widget.has_trait("tooltip") else "description_tooltip", text)


def tooltip(widget: widgets.Widget) -> str:
    """The hover text `set_tooltip` gave, on ipywidgets 7 and 8 alike."""
    return widget.tooltip if widget.has_trait("tooltip") else widget.description_tooltip


class StaticFigure:
    """A picture of a run that any notebook viewer shows (IPython renders `_repr_png_`)."""

    def __init__(self, png: bytes | memoryview):
        self.png = bytes(png)

    def _repr_png_(self) -> bytes:
        return self.png


EMPTY_TITLE = "Press Run: the curves appear here as the model trains"


def _locked(method):
    """Run a method under the panel's lock: the one place where widgets, pictures and plans change."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.controller.lock:
            return method(self, *args, **kwargs)

    return wrapper


class TuningPanel:
    """An ipywidgets app over `fine_tune`: see the module docstring."""

    def __init__(self, vary: Iterable[str] | None = None, *, storage: str | None = None, study_name: str = "lmtune",
                 learner: str | None = None, atlas: str | os.PathLike | Book | None = None,
                 **config_overrides: Any):
        """vary: the controls a learner may change (default: all). storage, study_name, learner: as in `search`;
        with `storage` (an Optuna RDB URL) every run that ends goes into that study as a trial: finished and
        diverged runs as COMPLETE (a diverged run scores `search.DIVERGED_VALUE`, as in a search), a stopped run
        as PRUNED with its evaluation points; a failed run is not filed. atlas: where the recorded bands come from:
        the bundled atlas (None), a folder of recorded runs (`record --out FOLDER`, e.g. of your own data), or an
        `atlas.Book`. config_overrides: FineTuneConfig fields."""
        self.state = PanelState(FineTuneConfig(**config_overrides), atlas=atlas)
        from .models import is_causal_lm

        base = self.state.base
        self._encoder = FineTuneConfig().model_name if is_causal_lm(base.model_name) else base.model_name
        self.vary = None if vary is None else tuple(vary)
        self.errors: list[str] = []
        self.recorded: list[Run] = []  # the recorded runs drawn in the curves (all seeds); [] if none
        self.plan = Plan(None, error="not planned yet")  # the plan of the controls, as shown (set by _replan)
        self._setting = False  # set_config moves many controls: plan once, at the end
        self.controller = PanelController(self, self.state, storage, study_name, learner)
        from .atlas import device_note

        self._device_note = device_note(base.device)  # on a GPU: the bands were recorded on a CPU
        self._curves = CurvesFigure()
        self._schedule = ScheduleFigure()
        self._schedule_shown: tuple | None = None

        self.controls = self._make_controls()
        unknown = set(self.vary or ()) - set(self.controls)
        if unknown:
            raise ValueError(f"vary={sorted(unknown)} names no control; the controls are {sorted(self.controls)}")
        self.preset_dropdown = widgets.Dropdown(options=["(custom)", *PRESETS], value="(custom)", description="preset",
                                                style=STYLE, layout=LAYOUT, disabled=self.vary is not None)
        set_tooltip(self.preset_dropdown, "Set every control to a lesson's settings.")
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
        # the class study: where runs go, and what became of each
        self.study_html = widgets.HTML(_study_line(self.controller.filer), layout=widgets.Layout(
            display=None if self.controller.filer else "none"))
        self.history_html = widgets.HTML()
        self.compare_select = widgets.SelectMultiple(options=[], description="runs", rows=5, style=STYLE,
                                                     layout=widgets.Layout(width="300px"))
        self.compare_button = widgets.Button(description="Compare", icon="line-chart",
                                             tooltip="Overlay the chosen runs in one plot.")
        self.compare_image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="1000px",
                                                                               display="none"))  # until used
        self.compare_verdict_html = widgets.HTML()  # the rule's word on the compared runs
        self.share_text = widgets.Text(description="share", style=STYLE, layout=widgets.Layout(width="520px"))
        set_tooltip(self.share_text, "Copy this text to give someone these settings.")
        self.paste_text = widgets.Text(description="paste", placeholder='e.g. {"learning_rate":0.001}', style=STYLE,
                                       layout=widgets.Layout(width="520px"))
        self.apply_button = widgets.Button(description="Apply", tooltip="Set the controls from pasted settings.")
        # the data: the bundled messages or a file of the learner's (a path, or uploaded), summed up before any run
        fixed = self.vary is not None  # a lesson that fixes the knobs fixes its data too
        self.data_path_text = widgets.Text(value=base.dataset or "", description="data file", disabled=fixed,
                                           placeholder="empty: the bundled messages; or a path such as my.csv",
                                           style=STYLE, layout=widgets.Layout(width="520px"))
        set_tooltip(self.data_path_text, describe("dataset"))
        self.text_column_text = widgets.Text(value=base.text_column or "", description="text column",
                                             placeholder="found by name", style=STYLE, layout=LAYOUT, disabled=fixed)
        set_tooltip(self.text_column_text, describe("text_column"))
        self.label_column_text = widgets.Text(value=base.label_column or "", description="label column",
                                              placeholder="found by name", style=STYLE, layout=LAYOUT, disabled=fixed)
        set_tooltip(self.label_column_text, describe("label_column"))
        self.data_upload = widgets.FileUpload(accept=",".join(FILE_SUFFIXES), multiple=False, description="Upload",
                                              disabled=fixed)
        self.data_button = widgets.Button(description="Use data", icon="table", disabled=fixed,
                                          tooltip="Train on this file from now on (empty: the bundled messages).")
        self.data_html = widgets.HTML()  # the data's summary, or why the file cannot be used

        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.compare_button.on_click(lambda _: self.compare())
        self.apply_button.on_click(lambda _: self.apply_share_string(self.paste_text.value))
        self.data_button.on_click(lambda _: self.use_data(self.data_path_text.value, self.text_column_text.value,
                                                          self.label_column_text.value))
        self.data_upload.observe(self._on_upload, names="value")
        self.preset_dropdown.observe(self._on_preset, names="value")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.recorded_html = widgets.HTML()  # what the curves picture shows: recorded runs, or nothing yet
        self.widget = self._layout()
        with self.controller.lock:
            self._curves.show_empty(EMPTY_TITLE)
            self._empty_png = self._curves.png()  # drawn once: shown whenever there is nothing to show
            try:
                self.data_html.value = data_summary(base).html()
            except Exception as error:  # a hub data set out of reach: the panel still opens, and says so
                self.data_html.value = _error_html(f"No summary of the data: {error}")
            self._replan(redraw=True)

    @property
    def runs(self) -> list[Run]:
        """The runs that ended, oldest first (lessons read them: `panel.runs`)."""
        return self.state.runs

    # ------------------------------------------------------------------ controls
    def _make_controls(self) -> dict[str, widgets.Widget]:
        b = self.state.base
        common = dict(style=STYLE, layout=LAYOUT, continuous_update=False)
        num_train = self.state.sizes()[0]
        controls = {
            "learning_rate": widgets.FloatLogSlider(value=b.learning_rate, base=10, min=-7, max=-1, step=0.1,
                                                    readout_format=".1e", **common),
            "per_device_train_batch_size": widgets.SelectionSlider(
                options=sorted(set(BATCH_SIZES) | {b.per_device_train_batch_size}),
                value=b.per_device_train_batch_size, **common),
            "num_train_epochs": widgets.FloatSlider(value=b.num_train_epochs, min=0.5, max=max(20, b.num_train_epochs),
                                                    step=0.5, **common),
            "dropout": widgets.FloatSlider(value=b.dropout, min=0, max=0.9, step=0.05, **common),
            "label_smoothing_factor": widgets.FloatSlider(value=b.label_smoothing_factor, min=0, max=0.5, step=0.05,
                                                          **common),
            "weight_decay": widgets.FloatSlider(value=b.weight_decay, min=0, max=1, step=0.01, **common),
            "lr_scheduler_type": widgets.Dropdown(options=list(SCHEDULES), value=b.lr_scheduler_type,
                                                  style=STYLE, layout=LAYOUT),
            "warmup_ratio": widgets.FloatSlider(value=b.warmup_ratio, min=0, max=0.5, step=0.05, **common),
            "lr_decay_ratio": widgets.FloatSlider(value=b.lr_decay_ratio, min=0, max=1, step=0.05, **common),
            "min_lr_rate": widgets.FloatSlider(value=b.min_lr_rate, min=0, max=1, step=0.05, **common),
            "freeze_layers": widgets.IntSlider(value=b.freeze_layers, min=0, max=self.state.num_layers(), step=1,
                                               **common),
            "pooling": widgets.Dropdown(options=[("first token (cls)", "cls"), ("mean of tokens", "mean")],
                                        value=b.pooling, style=STYLE, layout=LAYOUT),
            "max_train_samples": widgets.IntSlider(value=min(b.max_train_samples, num_train), min=16,
                                                   max=num_train, step=16, **common),
            "label_noise": widgets.FloatSlider(value=b.label_noise, min=0, max=0.5, step=0.05, **common),
            "early_stopping_patience": widgets.IntSlider(value=b.early_stopping_patience, min=0, max=10, **common),
            "gradient_accumulation_steps": widgets.SelectionSlider(
                options=sorted(set(ACCUMULATION_STEPS) | {b.gradient_accumulation_steps}),
                value=b.gradient_accumulation_steps, **common),
            "lora_r": widgets.SelectionSlider(options=sorted(set(LORA_RANKS) | {b.lora_r}), value=b.lora_r, **common),
            "lora_alpha": widgets.SelectionSlider(options=sorted(set(LORA_ALPHAS) | {b.lora_alpha}), value=b.lora_alpha,
                                                  **common),
            "lora_target_modules": widgets.Dropdown(options=_with_option(LORA_TARGETS, b.lora_target_modules),
                                                    value=b.lora_target_modules, style=STYLE, layout=LAYOUT),
            "use_rslora": widgets.Checkbox(value=b.use_rslora, indent=True, style=STYLE, layout=LAYOUT),
            "task": widgets.Dropdown(options=list(TASKS), value=b.task, style=STYLE, layout=LAYOUT),
            "seed": widgets.BoundedIntText(value=b.seed, min=0, max=2**31 - 1, style=STYLE, layout=LAYOUT),
            "data_seed": widgets.Dropdown(options=_with_option(DATA_SEEDS, b.data_seed), value=b.data_seed,
                                          style=STYLE, layout=LAYOUT),
        }
        for name, control in controls.items():
            control.description = LABELS[name]
        self._enable_for_model(controls)
        return controls

    def _enable_for_model(self, controls: dict[str, widgets.Widget]) -> None:
        """Enable the controls a learner may change for the base model; the others say why they are off."""
        from .models import is_causal_lm

        llm = is_causal_lm(self.state.base.model_name)
        for name, control in controls.items():
            why = LLM_ONLY.get(name) if not llm else ENCODER_ONLY.get(name)
            set_tooltip(control, why or describe(name))
            # a hub data set brings its own labels
            fixed_by_data = name == "task" and self.state.base.dataset is not None
            control.disabled = bool(why) or fixed_by_data or (self.vary is not None and name not in self.vary)
        controls["freeze_layers"].max = self.state.num_layers()

    @property
    def config(self) -> FineTuneConfig:
        """The FineTuneConfig the controls describe now (raises ValueError for an invalid value)."""
        return self.state.base.replace(**self._values())

    def _values(self) -> dict[str, Any]:
        values = {name: control.value for name, control in self.controls.items()}
        values["learning_rate"] = slider_rate(values["learning_rate"])
        return values

    @_locked
    def set_config(self, config: FineTuneConfig) -> None:
        """Move the controls to `config` (settings without a control must match the panel's base)."""
        self._setting = True
        try:
            fixed = {k: v for k, v in config.to_dict().items() if k not in self.controls}
            data = {k: fixed.pop(k) for k in DATA_FIELDS}
            if data != {k: getattr(self.state.base, k) for k in DATA_FIELDS}:  # a share string's own data
                self._switch_data(data)
            if fixed["model_name"] != self.state.base.model_name:  # another model: other layers, other controls
                self.state.base = self.state.base.replace(**fixed)
                self._enable_for_model(self.controls)
            for name, control in self.controls.items():
                value = getattr(config, name)
                if isinstance(control, widgets.SelectionSlider) and value not in control.options:
                    control.options = sorted(set(control.options) | {value})
                if isinstance(control, widgets.Dropdown) and value not in [o[1] if isinstance(o, tuple) else o
                                                                           for o in control.options]:
                    control.options = _with_option(list(control.options), value)
                if isinstance(control, widgets.IntSlider) and name == "max_train_samples":
                    value = min(value, control.max)
                control.value = value
            self.state.base = self.state.base.replace(**fixed)
        finally:
            self._setting = False
        self._on_change({"name": "value"})

    # ------------------------------------------------------------------ the data
    @_locked
    def use_data(self, dataset: str | None = None, text_column: str | None = None,
                 label_column: str | None = None) -> bool:
        """Train on `dataset` from now on: a file of your own (.csv, .jsonl, .json, .parquet, a saved folder), a hub
        data set, or None / "" for the bundled messages; its summary shows before any run. Returns False, with the
        reason in place of the summary, if the data cannot be used (the data before stays)."""
        if self.running:
            return False
        changes = {"dataset": dataset, "text_column": text_column, "label_column": label_column}
        changes = {k: (v.strip() or None) if isinstance(v, str) else v for k, v in changes.items()}
        self._setting = True
        try:
            self._switch_data(changes)
        except Exception as error:  # a bad file (DataFileError), a bad column name, a hub set out of reach
            self.data_html.value = _error_html(str(error))
            return False
        finally:
            self._setting = False
        self._on_change({"name": "value"})
        return True

    def _on_upload(self, change) -> None:
        """An uploaded file goes to the kit's own folder (`data_files.store_upload`) and is used from there."""
        from .data_files import store_upload

        files = uploaded_files(change["new"])
        if not files:
            return
        try:
            path = store_upload(*files[-1])
        except Exception as error:
            with self.controller.lock:
                self.data_html.value = _error_html(str(error))
            return
        self.use_data(str(path), self.text_column_text.value, self.label_column_text.value)

    def _switch_data(self, changes: dict[str, Any]) -> None:
        """Make `changes` (DATA_FIELDS) the base's data once it loads (raises if it does not), show its summary,
        and fit the controls to it: the task control is off for data with its own labels, the training samples
        slider ends at its train split's size."""
        base = self.state.base.replace(**changes)
        summary = data_summary(base)
        self.state.base = base
        self.data_path_text.value = base.dataset or ""
        self.text_column_text.value = base.text_column or ""
        self.label_column_text.value = base.label_column or ""
        self.data_html.value = summary.html()
        self._enable_for_model(self.controls)
        num_train = self.state.sizes()[0]
        slider = self.controls["max_train_samples"]
        if num_train < slider.min:
            slider.min = min(16, num_train)
        slider.max = num_train  # a value beyond it comes down to it
        slider.min = min(16, num_train)

    # ------------------------------------------------------------------ observers: light work only
    @_locked
    def _on_preset(self, change) -> None:
        """A preset sets every control; one that names a model (llm_lora) switches to it, and the others go back
        to the encoder the panel was made with (MiniLM unless another was given)."""
        if change["new"] in PRESETS:
            keep = {k: v for k, v in self.state.base.to_dict().items() if k in (*DATA_FIELDS, "device")}
            if "model_name" not in PRESETS[change["new"]]:
                keep["model_name"] = self._encoder
            self.set_config(FineTuneConfig.from_preset(change["new"], **keep))

    @_locked
    def _on_change(self, change=None) -> None:
        if self._setting:
            return
        try:
            self._replan(redraw=change is not None or not self.runs)
        except Exception as error:  # an observer's error would go to the browser's console: show it here
            self.show_error(error, "Updating the panel failed")

    def _replan(self, redraw: bool) -> Plan:
        """Plan the controls' settings and show the plan (and, when asked, the recorded band in the curves)."""
        self.plan = self.state.plan(self._values())
        self._show_plan(self.plan, redraw)
        return self.plan

    def _show_plan(self, plan: Plan, redraw: bool) -> None:
        if not plan.ok:
            self.check_html.value = f"<div style='color:#b00020'>&#9888; {html.escape(str(plan.error))}</div>"
            self.run_button.disabled = True
            return
        config = plan.config
        self.check_html.value = ""
        self.run_button.disabled = self.running
        self.share_text.value = config.to_share_string()
        self.plan_html.value = (
            f"<b>Trainable parameters:</b> {plan.trainable / 1e6:.2f} M of {plan.total / 1e6:.1f} M "
            f"({_percent(plan.trainable / plan.total)})"
            f"<br><b>Training examples:</b> {plan.num_train} &nbsp; <b>optimizer steps:</b> {plan.steps}"
            f"<br><b>Estimated time:</b> {_duration(plan.seconds)} of training on this machine")
        title = f"{config.lr_scheduler_type}: {plan.steps} steps, {plan.warmup} warmup"  # fits the 4.4 in picture
        if self._schedule_shown != (title, tuple(plan.rates)):  # most controls leave the schedule as it was
            self._schedule.show(plan.rates, title)
            self.schedule_image.value = self._schedule.png()
            self._schedule_shown = (title, tuple(plan.rates))
        if not self.running:
            self._show_recorded(plan, redraw)

    def _show_recorded(self, plan: Plan, redraw: bool) -> None:
        """Draw the atlas's seed band for these settings at once, without training (when they were recorded)."""
        self.recorded = plan.recorded
        if plan.recorded:
            seeds = f"{len(plan.recorded)} seed{'s' * (len(plan.recorded) != 1)}"
            self.recorded_html.value = (f"<b>Recorded:</b> these settings were fine-tuned with {seeds} "
                                        "(the band spans them). Press Run to train live and see where yours "
                                        "lands." + (f" {html.escape(self._device_note)}" if self._device_note else ""))
            if redraw:
                self._curves.show_bands(plan.recorded, "recorded",
                                        title=f"Recorded runs of these settings: {len(plan.recorded)} seeds")
                self.curves_image.value = self._curves.png()
        else:
            self.recorded_html.value = ("<i>These settings are not recorded: press Run to see their curves"
                                        + (f" ({html.escape(plan.nearest)})" if plan.nearest else "") + ".</i>")
            if redraw:  # never leave another setting's band on show
                self.curves_image.value = self._empty_png

    # ------------------------------------------------------------------ running: Run and Stop go to the controller
    @property
    def running(self) -> bool:
        """From `run()` until the run's end is shown."""
        return self.controller.running

    @_locked
    def run(self) -> bool:
        """Start a run in the background with the current settings. Returns False if one is running or
        the settings are invalid (the reason is shown next to the controls)."""
        if self.running:
            return False
        plan = self._replan(redraw=False)  # for settings changed without an observer (the picture stays)
        if not plan.ok:
            return False
        self.controller.start(plan.config)  # the config the learner saw planned, not the controls read again
        return True

    def stop(self) -> None:
        """Ask the running fine-tune to end after its current step (it keeps its history)."""
        self.controller.stop()

    def wait(self, timeout: float | None = None) -> StaticFigure | None:
        """Block until the current run ends and is shown (and, with a class study, until its filing's line is shown);
        returns a static picture of its curves (for saved notebooks)."""
        self.controller.wait(timeout)
        return StaticFigure(self.curves_image.value) if self.curves_image.value else None

    # ------------------------------------------------------------------ what the controller hands over (PanelView)
    def show_started(self) -> None:
        self.show_running(True)
        self.progress_bar.value = 0
        self.verdict_html.value = "<i>training ...</i>"
        self.log_html.value = ""

    def show_begin(self, total_steps: int) -> None:
        self.progress_bar.max = total_steps
        self.progress_bar.value = 0

    def show_progress(self, step: int, total: int, loss: float, elapsed: float) -> None:
        self.progress_bar.value = step
        left = elapsed / step * (total - step)
        self.progress_label.value = (f"step {step}/{total} &nbsp; loss {loss:.3f} &nbsp; "
                                     f"{elapsed:.0f} s so far, {_duration(left)} left")

    def show_evaluation(self, run: Run) -> None:
        point = run.history[-1]
        self._draw_curves(run, f"epoch {point['epoch']:.2f}: validation accuracy {point['eval_accuracy']:.1%}")

    def show_filed(self, event: tuple) -> None:
        """One line on the class study: the latest outcome (never an error of the run: training goes on)."""
        filer = self.controller.filer
        place = f"study {html.escape(repr(filer.study_name), quote=False)}"
        kind, *rest = event
        if kind == "filed":
            filed = ", ".join(f"run {number} as trial {trial}" for number, trial in rest[0])
            line = f"&#10003; Filed in {place} as {html.escape(filer.learner, quote=False)}: {filed}."
        elif kind == "waiting":
            waiting, why = rest
            runs = f"run {waiting[0]}" if len(waiting) == 1 else f"runs {', '.join(map(str, waiting))}"
            line = (f"&#9888; Not filed in {place} yet: {html.escape(why, quote=False)}. Training goes on; {runs} "
                    "will be filed after your next run.")
        else:
            number, why = rest
            line = f"&#9888; Run {number} was not filed in {place}: {html.escape(why, quote=False)}"
        self.study_html.value = f"<div>{line}</div>"

    def show_ended(self, run: Run) -> None:
        """The run that ended (already in `runs`): its row in the history, its curves, its verdict, a new plan."""
        self._refresh_history()  # first: the run joins the table even if drawing it fails
        d = diagnose(run, recorded=self._recorded_for(run))
        try:
            self._draw_curves(run)
        except Exception as error:  # the verdict still comes
            self.show_error(error, "Drawing the curves failed")
        colour = {"good fit": "#2ca02c", "overfitting": "#e67e00", "underfitting": "#1f77b4", "diverged": "#b00020"}
        stopped = f" ({run.status})" if run.status in ("stopped", "failed") else ""
        best = f"best at epoch {d.best_epoch:.2f}, " if d.best_epoch is not None else ""
        self.verdict_html.value = (f"<div style='font-size:1.15em'><b style='color:{colour[d.verdict]}'>"
                                   f"{d.verdict.upper()}</b>{stopped}: {best}best validation accuracy "
                                   f"{d.best_accuracy:.1%}</div><div>{html.escape(d.reason)}</div>"
                                   f"<div><b>Try:</b> {html.escape(d.advice)}</div>"
                                   + (f"<div><b>Against the recorded runs:</b> {html.escape(d.spread)}</div>"
                                      if d.spread else ""))
        self._on_change()  # the time estimate learnt from this run

    def show_error(self, error: BaseException, what: str = "The run failed") -> None:
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        self.errors.append(text)
        self.log_html.value = f"<pre style='color:#b00020;white-space:pre-wrap'>{what}: {html.escape(text)}</pre>"
        if what == "The run failed":
            self.verdict_html.value = ""

    def show_running(self, running: bool) -> None:
        self.run_button.disabled = running or not self.plan.ok
        self.stop_button.disabled = not running
        self.preset_dropdown.disabled = running or self.vary is not None
        self.apply_button.disabled = running
        self.data_button.disabled = self.data_upload.disabled = running or self.vary is not None

    def _recorded_for(self, run: Run) -> list[Run]:
        """The recorded runs drawn now, if they have the live run's settings (the seed aside)."""
        return self.recorded if self.recorded and same_settings(self.recorded[0], run) else []

    def _draw_curves(self, run: Run, title: str | None = None) -> None:
        """The run's curves, on the recorded seed band of the same settings when there is one, into the picture."""
        if self._recorded_for(run):
            self._curves.show_bands(self.recorded, "recorded", live=run, live_label="your run",
                                    title=title or f"Your run ({diagnose(run).verdict}) on the recorded band")
        else:
            self._curves.show_run(run, title=title)
        self.curves_image.value = self._curves.png()

    # ------------------------------------------------------------------ history, comparison, sharing
    def _refresh_history(self) -> None:
        rows = []
        for i, run in enumerate(self.runs, 1):
            d = diagnose(run)
            changes = run.config.changes().items()
            changed = ", ".join(f"{LABELS.get(k, k)}={_short(v)}" for k, v in changes) or "defaults"
            best_epoch = f"{d.best_epoch:.2f}" if d.best_epoch is not None else "-"
            ended = f" ({run.status})" if run.status in ("stopped", "failed") else ""
            rows.append(f"<tr><td>{i}</td><td>{html.escape(changed)}</td><td>{d.best_accuracy:.1%}</td>"
                        f"<td>{best_epoch}</td><td>{d.verdict}{ended}</td>"
                        f"<td>{run.meta.get('train_s', 0):.1f} s</td></tr>")
        self.history_html.value = (
            "<table style='border-collapse:collapse' cellpadding='4' border='1'><tr><th>run</th><th>changed from the "
            "defaults</th><th>best val. accuracy</th><th>best epoch</th><th>verdict</th><th>time</th></tr>"
            + "".join(rows) + "</table>")
        self.compare_select.options = [(f"run {i}", i - 1) for i in range(1, len(self.runs) + 1)]
        self.compare_select.value = tuple(range(max(0, len(self.runs) - 2), len(self.runs)))

    @_locked
    def compare(self, indices: Iterable[int] | None = None) -> StaticFigure | None:
        """Overlay the chosen past runs (the selected ones by default) in one plot."""
        chosen = list(self.compare_select.value if indices is None else indices)
        if not chosen:
            return None
        runs = [self.runs[i] for i in chosen]
        self.compare_image.value = to_png(plot_runs(runs, labels=[f"run {i + 1}" for i in chosen]))
        self.compare_image.layout.display = None
        self.compare_verdict_html.value = f"<b>The rule:</b> {html.escape(judge(runs))}"
        return StaticFigure(self.compare_image.value)

    @_locked
    def apply_share_string(self, text: str) -> None:
        """Set the controls from a share string (shows the error next to the controls if it is invalid)."""
        try:
            config = FineTuneConfig.from_share_string(text)
            self.set_config(config)
        except (ValueError, RuntimeError, OSError) as error:  # a bad string; its data file bad or out of reach
            self.check_html.value = _error_html(str(error))

    # ------------------------------------------------------------------ layout and display
    def _layout(self) -> widgets.Widget:
        title = widgets.HTML("<h3 style='margin:4px 0'>Fine-tuning panel: move a control, press Run</h3>")
        controls = widgets.VBox([self.preset_dropdown, *self.controls.values(), self.check_html,
                                 widgets.HBox([self.run_button, self.stop_button])],
                                layout=widgets.Layout(width="380px"))
        plan = widgets.VBox([self.plan_html, self.schedule_image], layout=widgets.Layout(width="420px"))
        top = widgets.HBox([controls, plan])
        live = widgets.VBox([widgets.HBox([self.progress_bar, self.progress_label]), self.recorded_html,
                             self.curves_image,
                             self.verdict_html, self.log_html, self.study_html])
        history = widgets.VBox([widgets.HTML("<b>Run history</b>"), self.history_html,
                                widgets.HBox([self.compare_select, self.compare_button]), self.compare_verdict_html,
                                self.compare_image])
        share = widgets.VBox([widgets.HTML("<b>Share settings</b>: copy the first line; paste one below and "
                                           "press Apply."), self.share_text,
                              widgets.HBox([self.paste_text, self.apply_button])])
        data = widgets.VBox([widgets.HTML("<b>Data</b>: the bundled messages, or a file of your own (a path, or "
                                          "upload one), then press Use data."),
                             widgets.HBox([self.data_path_text, self.data_upload]),
                             widgets.HBox([self.text_column_text, self.label_column_text, self.data_button]),
                             self.data_html])
        return widgets.VBox([title, data, top, live, history, share])

    def _ipython_display_(self):
        """Show the panel as the last line of a cell. IPython's display of the widget itself works on ipywidgets 8
        (`_repr_mimebundle_`) and 7 (`_ipython_display_`, Colab's 7.7) alike."""
        from IPython.display import display

        display(self.widget)


def _study_line(filer: StudyFiler | None) -> str:
    """Where the runs go (the password hidden), before any run."""
    if filer is None:
        return ""
    from sqlalchemy.engine import make_url

    try:
        where = make_url(filer.storage).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy reads: the first filing says what is wrong
        where = "?"
    study = html.escape(repr(filer.study_name), quote=False)
    return (f"<div><b>Class study:</b> every run that ends is filed in study {study} at "
            f"{html.escape(where, quote=False)} as {html.escape(filer.learner, quote=False)}.</div>")


def _error_html(text: str) -> str:
    return f"<div style='color:#b00020'>&#9888; {html.escape(text)}</div>"


def _percent(share: float) -> str:
    """0.0023 -> '0.23%' (LoRA's share), 0.16 -> '16%'."""
    return f"{share:.2%}" if 0 < share < 0.01 else f"{share:.0%}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.1f} min"


def _short(value: Any) -> str:
    return f"{value:.0e}" if isinstance(value, float) and 0 < abs(value) < 1e-3 else str(value)
