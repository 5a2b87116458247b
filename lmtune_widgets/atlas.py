"""Recorded runs: real fine-tunes, recorded once with several seeds, shipped with the kit, shown at once.

    from lmtune_widgets import atlas
    book = atlas.load()              # the bundled recorded runs, offline
    book.configs()                   # every recorded FineTuneConfig (seed included)
    book.runs(cfg)                   # the recorded Runs whose config equals cfg apart from the seed
    book.band(cfg)                   # per evaluation point: step, epoch, mean/min/max of the curves over the seeds
    book.lookup(cfg)                 # the runs for cfg, or the nearest recorded config, saying it is not the same
    atlas.recorded(learning_rate=1e-3)                  # the defaults with a change, its seeds; ValueError if absent
    grid = atlas.recorded_grid("freeze_layers", [0, 4], "learning_rate", [1e-4, 2e-3])   # two knobs at once
    grid.cells[0][1e-4], grid.missing, grid.best()      # the seeds of a combination, what is absent, each line's best

Every run of this kit is deterministic on a CPU: the same config, seed, torch version, processor and thread count
give the same curves to the last digit. So runs can be recorded once (`make atlas`, resumable and shardable; or
one Ray task per run, `record(backend="ray")`), shipped as plain JSON lines in `data/atlas/`, drawn instantly by
the panel and the lessons, and proven real by re-running any of them (`python -m lmtune_widgets verify --sample 2`).
An atlas of other data goes to a folder of its own (`record(folder=..., dataset=...)`, `load(folder=...)`).

Matching a control to a recorded config tolerates float rounding: the learning rate is matched on the
learning-rate slider's positions (tenths of a decade: 10^-3.3 is 5e-4), other numbers to 4 significant digits.
CPU and GPU records are kept apart: `load(device="cuda")` reads the GPU ones.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import FineTuneConfig, config_key
from .evidence_measures import mean_of
from .runs import Run, accuracy_range, kept_accuracy, seed_band

FORMAT = "lmtune-widgets/recorded-run"
FORMAT_VERSION = 1
SEEDS = (42, 1, 2, 3, 4)  # 42 is the default seed: pressing Run on the defaults re-creates one recorded run
FEW_SEEDS = 3  # every recorded config; the defaults and the presets get all five

# One knob at a time around the defaults (at least five values each, log-spaced where the knob is).
ONE_KNOB: dict[str, tuple] = {
    "learning_rate": (1e-5, 3.2e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3),  # slider positions
    "per_device_train_batch_size": (4, 8, 16, 32, 64, 128),
    "num_train_epochs": (0.5, 1, 2, 3, 5),
    "dropout": (0.0, 0.1, 0.2, 0.3, 0.5),
    "weight_decay": (0.0, 0.01, 0.1, 0.3, 1.0),
    "lr_scheduler_type": ("linear", "cosine", "constant", "constant_with_warmup", "polynomial"),
    "warmup_ratio": (0.0, 0.05, 0.1, 0.2, 0.3),
    "freeze_layers": (0, 1, 2, 3, 4, 5, 6),
    "max_train_samples": (128, 256, 512, 1024, 1616),
    "label_noise": (0.0, 0.05, 0.1, 0.2, 0.3),
}
# The grids the lessons draw, for each task. Dropout and freezing use a third of the data, where overfitting
# shows and full fine-tuning stays affordable to record; a lesson's panel starts from the same base.
SMALL = {"max_train_samples": 512, "evals_per_epoch": 2}
LESSON_GRIDS: dict[str, tuple[dict, dict[str, tuple]]] = {
    # warmup and decay separated (lesson 06), at a learning rate high enough for warmup to matter:
    # constant_with_warmup at warmup 0 is neither, at 0.1 warmup only; linear at 0 decay only, at 0.1 both
    "warmup_x_decay": ({"learning_rate": 2e-3},
                       {"lr_scheduler_type": ("constant_with_warmup", "linear"), "warmup_ratio": (0.0, 0.1)}),
    "freeze_x_lr": (SMALL, {"freeze_layers": (0, 2, 4, 6), "learning_rate": (3.2e-5, 1e-4, 5e-4, 2e-3)}),
    # the head alone, reading the first token (the architecture's head) or the mean of the tokens (how MiniLM
    # was pretrained to be read), each at its own best rate (lesson 07)
    "head_pooling": ({**SMALL, "freeze_layers": 6},
                     {"pooling": ("cls", "mean"), "learning_rate": (1e-4, 5e-4, 2e-3, 5e-3, 1e-2)}),
    # the same architecture from random weights, everything training, at its own best rate: what pretraining is worth
    "from_scratch": ({**SMALL, "freeze_layers": 0}, {"from_scratch": (True,), "learning_rate": (1e-4, 5e-4, 2e-3)}),
    "dropout_x_noise": ({**SMALL, "num_train_epochs": 5},
                        {"dropout": (0.0, 0.1, 0.3, 0.5), "label_noise": (0.0, 0.1, 0.2, 0.3)}),
    # batch 128 first: the re-tuning lesson 02 needs most (its steps are fewest)
    "lr_x_batch": ({}, {"per_device_train_batch_size": (128, 8, 32), "learning_rate": (1e-4, 2e-4, 5e-4, 1e-3, 2e-3)}),
}
# The bundled decoder LLM (lesson 09), around its preset `llm_lora` (SmolLM2-135M, LoRA r=8 on the top 10 of 30
# blocks, 256 messages, one epoch). Minutes a run, so recorded after everything MiniLM, in this order: the preset at
# 5 seeds; the same top blocks trained without LoRA (their own weights), at three rates; LoRA's rank x rate (alpha
# kept at the preset's 16, as the LoRA paper keeps it while changing r: the update is scaled by alpha / r); gradient
# accumulation (batch 4 x 2 against the preset's batch 8); every weight training (full fine-tuning) at a full-weight
# rate.
LLM_GRIDS: dict[str, tuple[dict, dict[str, tuple]]] = {
    "unfrozen_x_lr": ({"lora_r": 0}, {"learning_rate": (3.2e-5, 1e-4, 5e-4)}),
    "rank_x_lr": ({}, {"lora_r": (2, 8, 32), "learning_rate": (1e-4, 5e-4, 2e-3)}),
    "accumulation": ({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}, {}),
    "full": ({"lora_r": 0, "freeze_layers": 0}, {"learning_rate": (3.2e-5,)}),
}
# The grids' values under the names the lessons and their claims use, read from the grids above, never retyped: what a
# lesson draws and what its claims check are then what was recorded.
FREEZING = dict(LESSON_GRIDS["freeze_x_lr"][0])  # a third of the data, where training everything stays affordable
FREEZE_LEVELS = LESSON_GRIDS["freeze_x_lr"][1]["freeze_layers"]
FREEZE_RATES = LESSON_GRIDS["freeze_x_lr"][1]["learning_rate"]
HEAD_RATES = LESSON_GRIDS["head_pooling"][1]["learning_rate"]  # the head alone can take larger steps
SCRATCH_RATES_FIRST = LESSON_GRIDS["from_scratch"][1]["learning_rate"]  # the lesson grid as first recorded
NOISY = dict(LESSON_GRIDS["dropout_x_noise"][0])  # 512 messages for 5 epochs: long enough to memorise wrong labels
NOISE_LEVELS = LESSON_GRIDS["dropout_x_noise"][1]["label_noise"]
DROPOUTS = LESSON_GRIDS["dropout_x_noise"][1]["dropout"]
BATCH_RATES = LESSON_GRIDS["lr_x_batch"][1]["learning_rate"]
# lesson 06's warmup x decay grid by what each cell has, in the grid's order (see its comment above)
SCHEDULE_PARTS = {part: {**LESSON_GRIDS["warmup_x_decay"][0], **dict(zip(LESSON_GRIDS["warmup_x_decay"][1], values))}
                  for part, values in zip(("neither", "warmup only", "decay only", "both"),
                                          product(*LESSON_GRIDS["warmup_x_decay"][1].values()), strict=True)}
LLM_RATES_FIRST = LLM_GRIDS["rank_x_lr"][1]["learning_rate"]  # LoRA's, as first recorded
LORA_RANKS = LLM_GRIDS["rank_x_lr"][1]["lora_r"]
UNFROZEN_RATES = LLM_GRIDS["unfrozen_x_lr"][1]["learning_rate"]  # the top blocks' own weights: full-weight rates
FULL_RATES = LLM_GRIDS["full"][1]["learning_rate"]  # every weight training
# Recorded for the sentiment task only, after every grid above and before the LLM's (issue 24): which noise is which
# (the initialisation's `seed` against the data order's `data_seed`, all 5 x 5), the 2025-26 schedules at the default
# rate and at lesson 06's high one, label smoothing beside dropout's label-noise grid (lesson 04), and from scratch
# below its lowest recorded rate (its best was the grid's edge).
PRACTICE_GRIDS: dict[str, tuple[dict, dict[str, tuple]]] = {
    "seed_x_data_seed": ({}, {"data_seed": SEEDS}),  # at every seed of SEEDS; data_seed = seed is the defaults' run
    "schedules": ({}, {"lr_scheduler_type": ("cosine", "warmup_stable_decay", "cosine_with_min_lr"),
                       "learning_rate": (5e-4, 2e-3)}),
    "smoothing_x_noise": ({**SMALL, "num_train_epochs": 5},
                          {"label_smoothing_factor": (0.1, 0.2), "label_noise": (0.0, 0.1, 0.2, 0.3)}),
    "from_scratch_low": ({**SMALL, "freeze_layers": 0, "from_scratch": True}, {"learning_rate": (1e-5, 3.2e-5)}),
    # "equivalent" needs more seeds than "differ": two settings a lesson calls interchangeable, at 10 seeds each
    "decay_ten_seeds": ({}, {"weight_decay": (0.0, 0.1)}),
    "dropout_ten_seeds": ({}, {"dropout": (0.0, 0.3)}),
    # past the grids' edges, where a lesson's best rate was the highest one recorded (lesson 07)
    "top4_past_edge": ({**SMALL, "freeze_layers": 4}, {"learning_rate": (5e-3,)}),
    "head_past_edge": ({**SMALL, "freeze_layers": 6}, {"learning_rate": (2e-2,)}),
}
TEN_SEEDS = SEEDS + (5, 6, 7, 8, 9)
GRID_SEEDS = {"seed_x_data_seed": SEEDS, "decay_ten_seeds": TEN_SEEDS, "dropout_ten_seeds": TEN_SEEDS}
# The LLM's additions, recorded last: LoRA's rate past 2e-3 (its best was the grid's edge), full fine-tuning at three
# rates, and LoRA on every linear layer against the attention projections, with and without rsLoRA, at two ranks.
LLM_PRACTICE_GRIDS: dict[str, tuple[dict, dict[str, tuple]]] = {
    "lora_high_lr": ({}, {"lora_r": (2, 8, 32), "learning_rate": (5e-3, 1e-2)}),
    "full_x_lr": ({"lora_r": 0, "freeze_layers": 0}, {"learning_rate": (1e-5, 1e-4)}),
    "targets_x_rslora": ({}, {"lora_target_modules": (("all-linear",), ("q_proj", "k_proj", "v_proj", "o_proj")),
                              "use_rslora": (False, True), "lora_r": (8, 32), "learning_rate": (1e-4, 5e-4, 2e-3)}),
}
# A grid whose best value was its edge, extended past it (issue 24): the rates a lesson tunes over, every one
# recorded at every rank (LoRA) or at the one setting (from scratch).
SCRATCH_RATES = tuple(sorted({*SCRATCH_RATES_FIRST, *PRACTICE_GRIDS["from_scratch_low"][1]["learning_rate"]}))
LLM_RATES = tuple(sorted({*LLM_RATES_FIRST, *LLM_PRACTICE_GRIDS["lora_high_lr"][1]["learning_rate"]}))
TOP4_RATES = tuple(sorted({*FREEZE_RATES, *PRACTICE_GRIDS["top4_past_edge"][1]["learning_rate"]}))  # sentiment only
HEAD_CLS_RATES = tuple(sorted({*HEAD_RATES, *PRACTICE_GRIDS["head_past_edge"][1]["learning_rate"]}))  # sentiment, cls
FULL_LLM_RATES = tuple(sorted({*FULL_RATES, *LLM_PRACTICE_GRIDS["full_x_lr"][1]["learning_rate"]}))
# LoRA on every linear layer against the attention projections (lesson 09): the layers, and the rates recorded for both
LORA_TARGETS = LLM_PRACTICE_GRIDS["targets_x_rslora"][1]["lora_target_modules"]  # (every linear layer, attention)
TARGET_RATES = LLM_PRACTICE_GRIDS["targets_x_rslora"][1]["learning_rate"]

# Sections still being recorded (in the background, resumable): they may be partly recorded, and nothing a lesson
# claims reads them until they are whole and leave this set. Empty: every planned run is recorded.
RECORDING: set[str] = set()

# What is recorded first: what the lessons draw. The sentiment half of every lesson grid comes before the costly
# one-knob sweeps that no lesson needs first (full fine-tuning on all the data) and before the topic half.
FIRST_GRIDS = ("warmup_x_decay", "freeze_x_lr", "head_pooling", "from_scratch")  # then the other task's freezing
FIRST_KNOBS = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "dropout", "weight_decay",
               "lr_scheduler_type", "warmup_ratio")


DATA_FIELDS = ("dataset", "text_column", "label_column")  # which data a run saw (an atlas of other data: `for_data`)


# ------------------------------------------------------------------------------------------------ the grid
def grid(dataset: str | None = None, text_column: str | None = None,
         label_column: str | None = None) -> list[tuple[str, FineTuneConfig]]:
    """Every (section, config) to record, seed included, most useful first; duplicates appear once. With `dataset`
    (a data file or a Hugging Face data set, as `FineTuneConfig.dataset`, and its columns where they are not found
    by name): the same runs on that data (`for_data`)."""
    if dataset is not None:
        return for_data(grid(), dataset, text_column, label_column)
    from itertools import product

    from .config import PRESETS, TASKS

    def one_knob(knobs):
        return [(f"one knob: {knob}", {knob: v, "seed": seed})
                for knob in knobs for v in ONE_KNOB[knob] for seed in SEEDS[:FEW_SEEDS]]

    def lesson_grids(tasks, names=tuple(LESSON_GRIDS)):
        return [(f"lessons: {name}", {**base, "task": task, **dict(zip(axes, values)), "seed": seed})
                for task in tasks for name, (base, axes) in LESSON_GRIDS.items() if name in names
                for values in product(*axes.values()) for seed in SEEDS[:FEW_SEEDS]]

    planned: list[tuple[str, dict]] = []
    for task in TASKS:
        planned += [("defaults", {"task": task, "seed": seed}) for seed in SEEDS]
    for preset in PRESETS:  # the MiniLM presets (the LLM's comes last, with its grids)
        if PRESETS[preset].get("model_name", FineTuneConfig().model_name) == FineTuneConfig().model_name:
            planned += [("presets", {**PRESETS[preset], "seed": seed}) for seed in SEEDS]
    planned += one_knob(FIRST_KNOBS)
    others = [t for t in TASKS if t != "sentiment"]
    planned += lesson_grids(["sentiment"], FIRST_GRIDS + ("dropout_x_noise",))
    planned += lesson_grids(others, ("head_pooling",))  # seconds each: lesson 07 compares the two tasks
    planned += [(s, c) for s, c in lesson_grids(["sentiment"], ("lr_x_batch",)) if c["per_device_train_batch_size"] == 128]
    planned += lesson_grids(others, ("freeze_x_lr",))
    planned += lesson_grids(["sentiment"])
    planned += one_knob([k for k in ONE_KNOB if k not in FIRST_KNOBS])
    planned += lesson_grids(others)
    planned += [(f"practice: {name}", {**base, **dict(zip(axes, values)), "seed": seed})
                for name, (base, axes) in PRACTICE_GRIDS.items() for values in product(*axes.values())
                for seed in GRID_SEEDS.get(name, SEEDS[:FEW_SEEDS])]
    planned += llm_grid()
    seen, out = set(), []
    for section, changes in planned:
        if changes.get("data_seed") == changes["seed"]:  # the data order of the seed itself: the run without data_seed
            changes = {k: v for k, v in changes.items() if k != "data_seed"}
        config = FineTuneConfig(**changes)
        if config not in seen:
            seen.add(config)
            out.append((section, config))
    return out


def for_data(planned: Iterable[tuple[str, FineTuneConfig]], dataset: str, text_column: str | None = None,
             label_column: str | None = None) -> list[tuple[str, FineTuneConfig]]:
    """The planned runs on other data: `dataset=` (and its columns) replaced in every config. `task` picks a column
    of the bundled data only, so on other data the runs of another task than the defaults' are the same runs: they
    are left out."""
    default_task = FineTuneConfig().task
    data = {"dataset": dataset, "text_column": text_column, "label_column": label_column}
    return [(section, config.replace(**data)) for section, config in planned if config.task == default_task]


def llm_grid() -> list[tuple[str, dict]]:
    """The decoder LLM's (section, changes) to record: its preset at 5 seeds, then `LLM_GRIDS` at 3."""
    from itertools import product

    from .config import PRESETS

    preset = PRESETS["llm_lora"]
    planned = [("llm: preset", {**preset, "seed": seed}) for seed in SEEDS]
    for name, (base, axes) in LLM_GRIDS.items():
        for values in product(*axes.values()):
            changes = {**preset, **base, **dict(zip(axes, values))}
            planned += [(f"llm: {name}", {**changes, "seed": seed}) for seed in SEEDS[:FEW_SEEDS]]
    for name, (base, axes) in LLM_PRACTICE_GRIDS.items():
        for values in product(*axes.values()):
            changes = {**preset, **base, **dict(zip(axes, values))}
            planned += [(f"llm practice: {name}", {**changes, "seed": seed}) for seed in SEEDS[:FEW_SEEDS]]
    return planned


def cost(config: FineTuneConfig) -> float:
    """A rough forecast of a run's seconds (`planning.estimate_seconds`), for progress bars and picking cheap runs."""
    from .models import is_causal_lm
    from .planning import estimate_seconds

    layers = 30 if is_causal_lm(config.model_name) else 6  # SmolLM2-135M's blocks, MiniLM's layers
    return estimate_seconds(config, config.max_train_samples, config.max_eval_samples, layers)


# ------------------------------------------------------------------------------------------------ the store
def atlas_dir() -> Path:
    from .data import bundled_data_path

    return bundled_data_path("atlas")


EXAMPLE_DATA = "support_tickets_example.csv"  # lesson 12's own-file example, shipped with the kit
EXAMPLE_ATLAS = "atlas-support-tickets"  # its recorded runs: the defaults at 5 seeds, the one-knob sweeps at 3


def example_atlas_dir() -> Path:
    """Where the recorded runs of the shipped example file are (`data/atlas-support-tickets`, or in the package)."""
    from .data import bundled_data_path

    return bundled_data_path(EXAMPLE_ATLAS)


def for_file(path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None,
             folder: str | os.PathLike | None = None) -> "Book":
    """The runs in `folder` (by default the shipped example's atlas) recorded on the bytes of the file at `path`,
    filed under `path` and these columns: `TuningPanel(dataset=path, ..., atlas=for_file(path, ...))` draws their
    bands. Another file (other bytes) finds none: no band of other data is ever drawn for it."""
    return load(folder=folder if folder is not None else example_atlas_dir()).on_file(path).filed_as(
        str(path), text_column, label_column)


def _round(value: Any) -> Any:
    """Floats to 7 significant digits (float32 holds about 7): what is stored and compared."""
    if isinstance(value, float):
        return float(f"{value:.7g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def to_record(run: Run) -> dict[str, Any]:
    """A run as one compact JSON line: the config's changes from the defaults, curves as columns, no learning
    rates (they follow from the config), no weights."""
    keys = list(run.history[0]) if run.history else []
    history = {k: [h.get(k) for h in run.history] for k in keys}
    if "elapsed_s" in history:
        history["elapsed_s"] = [round(x, 2) for x in history["elapsed_s"]]
    return {"format": FORMAT, "version": FORMAT_VERSION, "config": run.config.changes(), "status": run.status,
            "label_names": run.label_names, "history": _round(history), "train_losses": _round(run.train_losses),
            "kept": _round(run.kept), "meta": _round(run.meta)}


def from_record(record: dict[str, Any]) -> Run:
    """The Run a record holds; its learning rates are re-planned from its config."""
    from .planning import planned_learning_rates

    config = FineTuneConfig.from_dict(record["config"])
    columns = record["history"]
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    history = [{k: nan(columns[k][i]) for k in columns} for i in range(len(columns.get("step", [])))]
    losses = [nan(x) for x in record["train_losses"]]
    rates = planned_learning_rates(config, record["meta"]["num_train"])[: len(losses)]
    return Run(config=config, label_names=list(record["label_names"]), status=record["status"], history=history,
               learning_rates=rates, train_losses=losses, meta={**record["meta"], "recorded": True},
               kept=dict(record.get("kept") or {}))


def _read(path: Path) -> list[dict[str, Any]]:
    """The records of one file; a last line cut short by a killed recorder is skipped."""
    records = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue
            raise ValueError(f"{path}:{number} is not a recorded run (not valid JSON)") from None
        if record.get("format") != FORMAT or record.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}:{number} is not a recorded run of version {FORMAT_VERSION}")
        records.append(record)
    return records


@dataclass
class Match:
    """What the atlas has for a config: its own runs (`exact`), or the nearest recorded config's runs."""

    runs: list[Run]
    exact: bool
    config: FineTuneConfig | None
    differences: dict[str, tuple[Any, Any]]  # field -> (asked, recorded), empty when exact

    def __str__(self) -> str:
        if not self.runs:
            return "nothing recorded"
        seeds = f"{len(self.runs)} seed{'s' * (len(self.runs) != 1)}"
        if self.exact:
            return f"recorded: these settings, {seeds}"
        diff = ", ".join(f"{k} {_fmt(b)} instead of {_fmt(a)}" for k, (a, b) in self.differences.items())
        return f"not the same run: the nearest recorded settings have {diff} ({seeds})"


class Book:
    """The recorded runs of one device kind, indexed by config (see the module docstring)."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        self._by_key: dict[tuple, list[dict]] = {}
        self._seen: set[tuple] = set()
        for record in records:
            config = FineTuneConfig.from_dict(record["config"])
            exact = config_key(config, seed=True)
            if exact in self._seen:
                continue  # recorded twice (two shards, two machines): one is enough
            self._seen.add(exact)
            self._by_key.setdefault(config_key(config), []).append(record)
        self._runs: dict[tuple, list[Run]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, config: FineTuneConfig) -> bool:
        return config_key(config, seed=True) in self._seen

    def configs(self) -> list[FineTuneConfig]:
        return [FineTuneConfig.from_dict(r["config"]) for records in self._by_key.values() for r in records]

    def datasets(self) -> set[str | None]:
        """The data its runs were recorded on (`FineTuneConfig.dataset`; None: the bundled messages)."""
        return {r["config"].get("dataset") for records in self._by_key.values() for r in records}

    def on_data(self, dataset: str | None) -> "Book":
        """The runs recorded on `dataset`, as if on the bundled data (`dataset` and its columns left out of their
        configs): so that what is looked up at the defaults' data (the lessons' claims) finds an atlas of other
        data."""
        return self._as_bundled(lambda r: r["config"].get("dataset") == dataset)

    def on_file(self, path: str | os.PathLike) -> "Book":
        """`on_data` by content: the runs recorded on the bytes of the file at `path` (their meta's `data_hash`),
        whatever path it had when they were recorded, as if on the bundled data. Empty when none saw these bytes."""
        from .data_files import file_hash

        digest = file_hash(path)
        return self._as_bundled(lambda r: r["meta"].get("data_hash") == digest)

    def _as_bundled(self, keep: Callable[[dict], bool]) -> "Book":
        """The records that `keep` picks, with the data fields left out of their configs."""
        return Book({**r, "config": {k: v for k, v in r["config"].items() if k not in DATA_FIELDS}}
                    for records in self._by_key.values() for r in records if keep(r))

    def filed_as(self, dataset: str, text_column: str | None = None, label_column: str | None = None) -> "Book":
        """The same runs with their data named `dataset` and these columns: what a panel on that file looks up. A
        cap on the training rows at or above the file's train split (the default 1616 on 126 tickets) is filed as the
        split's size, where the panel's slider holds it: the same run."""
        data = {k: v for k, v in zip(DATA_FIELDS, (str(dataset), text_column, label_column)) if v is not None}

        def filed(r: dict) -> dict:
            config = {**{k: v for k, v in r["config"].items() if k not in DATA_FIELDS}, **data}
            whole = r["meta"]["num_train"]
            if config.get("max_train_samples", FineTuneConfig().max_train_samples) >= whole:
                config["max_train_samples"] = whole
            return {**r, "config": config}

        return Book(filed(r) for records in self._by_key.values() for r in records)

    def settings_of(self, other: "Book") -> "Book":
        """Its runs of the settings that `other` recorded too (seeds aside): this atlas cut down to another's grid."""
        return Book(r for key, records in self._by_key.items() if key in other._by_key for r in records)

    def runs(self, config: FineTuneConfig) -> list[Run]:
        """The recorded runs of `config`, one per seed (ordered by seed); [] when it was not recorded."""
        key = config_key(config)
        if key not in self._runs:
            records = sorted(self._by_key.get(key, []), key=lambda r: r["config"].get("seed", 42))
            self._runs[key] = [from_record(r) for r in records]
        return self._runs[key]

    def band(self, config: FineTuneConfig) -> list[dict[str, Any]]:
        """One dict per evaluation point of the recorded runs: step, epoch, seeds, and mean/min/max of eval_loss,
        eval_accuracy and train_loss over the seeds that reached that point."""
        return seed_band(self.runs(config))

    def lookup(self, config: FineTuneConfig) -> Match:
        """The runs of `config`, or of the nearest recorded config on the same data (fewest differing settings, then
        the closest values on a log scale), saying plainly that they are not the same runs. Runs on other data are
        never offered: their band says nothing about this data."""
        runs = self.runs(config)
        if runs:
            return Match(runs, True, runs[0].config, {})
        asked = dict(config_key(config))
        same_data = [key for key in self._by_key if all(dict(key).get(f) == asked.get(f) for f in DATA_FIELDS)]
        if not same_data:
            return Match([], False, None, {})
        best = min(same_data, key=lambda key: _distance(asked, dict(key)))
        nearest = FineTuneConfig.from_dict(self._by_key[best][0]["config"]).replace(seed=config.seed)
        recorded = dict(best)  # a knob left at its default is absent from a key (config.LATER_FIELDS): compare both ways
        differences = {name: (getattr(config, name), getattr(nearest, name)) for name in {**asked, **recorded}
                       if asked.get(name) != recorded.get(name)}
        return Match(self.runs(nearest), False, nearest, differences)


def _distance(a: dict, b: dict) -> tuple[int, float]:
    differing = [k for k in {**a, **b} if a.get(k) != b.get(k)]
    spread = 0.0
    for k in differing:
        x, y = a.get(k), b.get(k)
        if isinstance(x, tuple) and isinstance(y, tuple):  # log10 of learning rates
            spread += abs(x[1] - y[1])
        elif isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            spread += abs(math.log1p(abs(x)) - math.log1p(abs(y)))
        else:
            spread += 1.0
    return len(differing), spread


def _fmt(value: Any) -> str:
    return f"{value:.0e}" if isinstance(value, float) and 0 < abs(value) < 1e-3 else str(value)


_BOOKS: dict[tuple, Book] = {}


def load(device: str = "cpu", folder: str | os.PathLike | None = None, reload: bool = False) -> Book:
    """The recorded runs made on `device` ("cpu" or "cuda"), read once per process (again with `reload`): the
    bundled atlas, or the one in `folder` (any folder of `{device}-*.jsonl` files, as `record(folder=...)` writes
    them; empty if there are none)."""
    folder = Path(folder) if folder is not None else atlas_dir()
    key = (device, str(folder))
    if key not in _BOOKS or reload:
        files = sorted(folder.glob(f"{device}-*.jsonl")) if folder.exists() else []
        _BOOKS[key] = Book(r for path in files for r in _read(path))
    return _BOOKS[key]


def recorded(config: FineTuneConfig | None = None, **changes: Any) -> list[Run]:
    """The recorded seeds of `config` (the defaults) with `changes`; ValueError naming it if it is not recorded."""
    config = (config or FineTuneConfig()).replace(**changes)
    found = load().runs(config)
    if not found:
        raise ValueError(f"not recorded: {config.changes() or 'the defaults'} (see `make atlas`)")
    return found


def seed_x_data_seed(book: Book | None = None, **changes: Any) -> dict[tuple[int, int], Run]:
    """The defaults (with `changes`) at every pair of `seed` (the head's initialisation and dropout) and `data_seed`
    (the order of the batches) in `SEEDS` x `SEEDS`: {(seed, data_seed): run}. The diagonal is the plain runs."""
    book = book or load()
    table = {}
    for seed in SEEDS:
        for data_seed in SEEDS:
            config = FineTuneConfig(**changes, seed=seed, data_seed=None if data_seed == seed else data_seed)
            found = [r for r in book.runs(config) if r.config.seed == seed]
            if not found:
                raise ValueError(f"not recorded: {config.changes()} (see `make atlas`, section practice)")
            table[seed, data_seed] = found[0]
    return table


@dataclass
class RecordedGrid:
    """A recorded two-knob grid on `base`: the seeds of every recorded combination (`cells`: {line value: {x value:
    runs}}, a line with nothing recorded has {}), and the combinations that are not recorded (`missing`)."""

    line_field: str
    x_field: str
    base: FineTuneConfig
    cells: dict[Any, dict[Any, list[Run]]]
    missing: list[tuple[Any, Any]]

    def mean(self, line: Any, x: Any, measure: Callable[[Run], float] = kept_accuracy) -> float:
        return mean_of(self.cells[line][x], measure)

    def spread(self, line: Any, x: Any, measure: Callable[[Run], float] = kept_accuracy) -> tuple[float, float]:
        """The lowest and highest seed's `measure` at one combination."""
        return accuracy_range(self.cells[line][x], measure)

    def best(self, measure: Callable[[Run], float] = kept_accuracy, lower_is_better: bool = False) -> dict[Any, Any]:
        """{line value: the x value whose seeds have the best mean} for each line with something recorded (the
        pick a learner would make: the mean, judged on the same validation split, flattering every line alike)."""
        pick = min if lower_is_better else max
        return {line: pick(cells, key=lambda x: mean_of(cells[x], measure))
                for line, cells in self.cells.items() if cells}


def recorded_grid(line_field: str, line_values: Iterable[Any], x_field: str, x_values: Iterable[Any],
                  base: FineTuneConfig | None = None) -> RecordedGrid:
    """The recorded seeds of `base` (the defaults) at every combination of a value of `line_field` with a value of
    `x_field`; the combinations not recorded are left out and listed, not an error (a lesson draws what is there)."""
    base = base or FineTuneConfig()
    x_values = list(x_values)
    cells: dict[Any, dict[Any, list[Run]]] = {}
    missing = []
    for line in line_values:
        cells[line] = {}
        for x in x_values:
            found = load().runs(base.replace(**{line_field: line, x_field: x}))
            if found:
                cells[line][x] = found
            else:
                missing.append((line, x))
    return RecordedGrid(line_field, x_field, base, cells, missing)


def device_note(device: str = "auto", capability: tuple[int, int] | None = None) -> str:
    """What the bundled bands mean for a run on `device` (a config's `device`): "" on a CPU, where a run of recorded
    settings can repeat a recorded seed to the last digit; on a GPU, that the bands were recorded on a CPU."""
    from .devices import pick_device, pick_precision

    try:
        kind = pick_device(device).type
    except ValueError:  # no such device here: the config's own check says so
        return ""
    if kind == "cpu":
        return ""
    precision = pick_precision(kind, capability)
    rounding = str(precision).replace("torch.", "") if precision is not None else "float32 on another chip"
    chip = {"cuda": "GPU", "mps": "Apple GPU"}.get(kind, kind)
    return (f"The bands were recorded on a CPU in float32; here runs use the {chip} in {rounding}. "
            "That is the same experiment with other rounding: a run should land within the band's noise, "
            "not on one of its lines.")


# ------------------------------------------------------------------------------------------------ recording
RAY_RETRIES = 3  # a Ray task whose worker dies (killed, out of memory, its node lost) is run again, this many times


def record(shard: tuple[int, int] = (1, 1), threads: int = 1, folder: str | os.PathLike | None = None,
           sections: Iterable[str] | None = None, limit: int | None = None, quiet: bool = False,
           backend: str = "local", address: str | None = None, dataset: str | None = None,
           text_column: str | None = None, label_column: str | None = None) -> int:
    """Record the grid's runs that are not recorded yet (resumable). `shard=(i, n)` takes every n-th of them,
    so n processes or machines share the work. Each run is appended to its own shard's file as soon as it
    ends; a killed recorder loses at most the run it was on. Returns how many runs it recorded.

    backend="ray": one Ray task per run (`threads` CPUs each, or one GPU where the cluster has GPUs), on a local
    Ray (address=None, all this machine's cores) or a cluster (address="auto", "ray://HOST:10001"); this process
    writes each run as it arrives, to `{device}-ray-shard{i}of{n}...jsonl`. A task whose worker dies is retried
    (`RAY_RETRIES`); a killed driver loses only the runs in flight. dataset (with text_column, label_column): record the grid on
    that data (`grid(dataset, ...)`), into `folder`."""
    import torch

    if backend not in ("local", "ray"):
        raise ValueError(f"backend={backend!r} is not valid; choose 'local' or 'ray'")
    index, count = shard
    sections = tuple(sections) if sections is not None else None
    if not 1 <= index <= count:
        raise ValueError(f"shard={index}/{count} is not valid: expected i/n with 1 <= i <= n")
    folder = Path(folder) if folder is not None else atlas_dir()
    data = (dataset, text_column, label_column)
    if backend == "ray":
        return _record_on_ray(shard, threads, folder, sections, limit, quiet, address, data)
    torch.set_num_threads(threads)  # part of what a recorded run is: kept fixed, and written in its meta
    device = "cuda" if torch.cuda.is_available() else "cpu"
    writer = RecordWriter(folder, device, shard, sections)
    todo = writer.todo(shard, sections, limit, *data)
    costs = [cost(c) for _, c in todo]
    bar = _progress_bar(costs, quiet)
    recorded = 0
    for (section, config), seconds in zip(todo, costs):
        bar.set_postfix_str(f"{section} {config.changes()}"[:80])
        try:
            record_ = record_one(section, config, threads)
        except Exception as error:  # noted and skipped: a recording is never stopped by one bad run
            _not_recorded(config, error)
            continue
        recorded += writer.write(record_)
        bar.update(round(seconds))
    bar.close()
    _BOOKS.clear()
    return recorded


def record_one(section: str, config: FineTuneConfig, threads: int) -> dict[str, Any]:
    """Fine-tune `config` on `threads` torch threads and return its record (a line of the atlas): what every
    recorder runs, here or in a Ray task."""
    import torch

    from .training import fine_tune

    torch.set_num_threads(threads)
    run = fine_tune(config, keep_model=False, thorough=True)
    return {**to_record(run), "section": section}


class RecordWriter:
    """Where one recorder writes, and what it still has to record: the folder's recorded runs of `device` are read
    once, the runs to record are planned from them, and each record is appended to the recorder's own file (fsynced)
    unless its config (seed included) is already there: a run is never written twice."""

    def __init__(self, folder: Path, device: str, shard: tuple[int, int], sections: tuple[str, ...] | None,
                 backend: str = "local"):
        self.folder, self.device = folder, device
        folder.mkdir(parents=True, exist_ok=True)
        self.done = Book(r for path in folder.glob(f"{device}-*.jsonl") for r in _read(path))
        self.written: set[tuple] = set(self.done._seen)
        # recorders that take different sections at once write to files of their own; a Ray driver's file is its
        # own too, so it never appends to a file that a local recorder may be appending to at the same time
        tag = "".join(f"-{s.split(':')[0].strip().replace(' ', '_')}" for s in sections or ())
        index, count = shard
        self.path = folder / f"{device}-{'ray-' if backend == 'ray' else ''}shard{index}of{count}{tag}.jsonl"

    def todo(self, shard: tuple[int, int], sections: tuple[str, ...] | None, limit: int | None,
             dataset: str | None = None, text_column: str | None = None,
             label_column: str | None = None) -> list[tuple[str, FineTuneConfig]]:
        """The planned runs of this shard and these sections that are not recorded, in recording order: by section,
        and runs that share frozen features after each other (computed once per group)."""
        import torch

        from .frozen import prefix_key

        index, count = shard
        planned = grid() if dataset is None else for_data(grid(), dataset, text_column, label_column)
        wanted = [(s, c) for s, c in planned if sections is None or any(s.startswith(x) for x in sections)]
        todo, keys = [], set()
        for i, (section, config) in enumerate(wanted):
            key = config_key(config, seed=True)
            if i % count == index - 1 and config not in self.done and key not in keys:
                keys.add(key)
                todo.append((section, config))
        todo = todo[:limit]
        sections_order, groups = {}, {}
        device = torch.device(self.device)
        todo.sort(key=lambda sc: (sections_order.setdefault((sc[0], sc[1].task), len(sections_order)),
                                  groups.setdefault(prefix_key(sc[1], device), len(groups))))
        return todo

    def write(self, record_: dict[str, Any]) -> bool:
        """Append one record; False (and nothing written) when its run is in the folder already."""
        key = config_key(FineTuneConfig.from_dict(record_["config"]), seed=True)
        if key in self.written:
            return False
        with open(self.path, "a") as file:
            file.write(json.dumps(record_, separators=(",", ":")) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.written.add(key)
        return True


def _progress_bar(costs: list[float], quiet: bool):
    """A bar over the runs' forecast seconds (`cost`), with the time left."""
    from tqdm.auto import tqdm

    return tqdm(total=round(sum(costs)), unit="work", disable=quiet, file=sys.stderr,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")


def _not_recorded(config: FineTuneConfig, error: BaseException) -> None:
    print(f"\nnot recorded: {config.changes()}: {type(error).__name__}: {error}", file=sys.stderr)


def _record_on_ray(shard, threads, folder, sections, limit, quiet, address, data) -> int:
    """`record(backend="ray")`: plan here, fine-tune in Ray tasks, write here as the runs arrive."""
    import ray

    from .search.ray_search import start_ray

    started_here = start_ray(address)
    try:
        # GPU records are kept apart from CPU ones: the cluster's GPUs decide what its runs are
        device = "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
        if threads > largest:  # a task no node can take would wait for ever
            raise ValueError(f"threads={threads}: no Ray node has that many CPUs (the largest has {largest:g})")
        writer = RecordWriter(folder, device, shard, sections, backend="ray")
        todo = writer.todo(shard, sections, limit, *data)
        costs = [cost(c) for _, c in todo]
        task = ray.remote(record_one).options(num_cpus=threads, num_gpus=1 if device == "cuda" else 0,
                                              max_retries=RAY_RETRIES, retry_exceptions=False)
        pending = {task.remote(section, config, threads): (section, config, seconds)
                   for (section, config), seconds in zip(todo, costs)}
        bar = _progress_bar(costs, quiet)
        recorded = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                section, config, seconds = pending.pop(ref)
                try:
                    record_ = ray.get(ref)
                except Exception as error:  # the run failed, or its workers died RAY_RETRIES + 1 times
                    _not_recorded(config, getattr(error, "cause", None) or error)
                    continue
                recorded += writer.write(record_)
                bar.set_postfix_str(f"{section} {config.changes()}"[:80])
                bar.update(round(seconds))
        bar.close()
    finally:
        if started_here:
            ray.shutdown()
    _BOOKS.clear()
    return recorded


# ------------------------------------------------------------------------------------------------ proof
SAME_KIND_TOLERANCE = 1e-6  # same torch, processor, chip and threads: the same numbers (to the 7 digits stored)
OTHER_KIND_TOLERANCE = 0.05  # elsewhere: the same experiment, not the same rounding (accuracies, losses / max(1, |x|))


def difference(recorded: Run, rerun: Run) -> float:
    """The largest difference between two runs' numbers: every point of the curves, every step's loss, the
    kept model's scores; relative to the value where it is above 1. Infinity when their shapes differ."""
    if recorded.status != rerun.status or len(recorded.history) != len(rerun.history) \
            or len(recorded.train_losses) != len(rerun.train_losses):
        return math.inf
    pairs = [(a.get(k), b.get(k)) for a, b in zip(recorded.history, rerun.history) for k in a if k != "elapsed_s"]
    pairs += list(zip(recorded.train_losses, rerun.train_losses))
    pairs += [(recorded.kept.get(k), rerun.kept.get(k)) for k in ("validation_loss", "validation_accuracy", "similarity", "lm_loss")]
    worst = 0.0
    for a, b in pairs:
        if a is None and b is None:
            continue
        a, b = (math.nan if a is None else a), (math.nan if b is None else b)
        if math.isnan(a) and math.isnan(b):
            continue
        worst = max(worst, abs(a - b) / max(1.0, abs(a)) if math.isfinite(a) and math.isfinite(b) else math.inf)
    return worst


def verify(sample: int = 2, cheapest: bool = False, seed: int | None = None, book: Book | None = None,
           out=sys.stdout) -> bool:
    """Re-run `sample` recorded runs (chosen at random, or the cheapest) with `fine_tune` and compare every
    number. True when each matches within the tolerance for where it runs."""
    import torch

    from .devices import same_machine_kind
    from .training import fine_tune

    book = book or load()
    configs = book.configs()
    if not configs:
        print("the atlas has no recorded runs for this device", file=out)
        return False
    if cheapest:
        configs.sort(key=cost)
        chosen = configs[:sample]
    else:
        chosen = random.Random(seed).sample(configs, min(sample, len(configs)))
    threads_before, ok = torch.get_num_threads(), True
    try:
        for config in chosen:
            recorded = next(r for r in book.runs(config) if r.config.seed == config.seed)
            torch.set_num_threads(recorded.meta["threads"])
            t = time.perf_counter()
            rerun = fine_tune(config, keep_model=False, thorough=True)
            same_kind = same_machine_kind(recorded.meta)
            tolerance = SAME_KIND_TOLERANCE if same_kind else OTHER_KIND_TOLERANCE
            worst = difference(recorded, rerun)
            ok &= worst <= tolerance
            print(f"{'match' if worst <= tolerance else 'MISMATCH'}: {config.changes()} re-run in "
                  f"{time.perf_counter() - t:.0f} s; largest difference {worst:.1e} (allowed {tolerance:.0e}, "
                  f"{'same' if same_kind else 'another'} torch, processor and chip)", file=out)
    finally:
        torch.set_num_threads(threads_before)
    return ok
