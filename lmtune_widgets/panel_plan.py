"""The panel's state, without any widget: the settings it starts from, its runs, and the plan of a config.

    state = PanelState(FineTuneConfig(max_train_samples=64))
    plan = state.plan({"learning_rate": 1e-3})     # the base settings, changed by the controls' values
    plan.ok and (plan.config, plan.trainable, plan.steps, plan.seconds, plan.recorded)
    plan.error                                      # or why it cannot run

A `Plan` is the one answer to "is this runnable, and what will it do": the panel's view renders it, its Run button
is on exactly when `plan.ok`, and `run()` trains `plan.config`, the config the learner saw planned. Planning counts
trainable parameters by freezing a shared model skeleton (`models.plan_parameters` changes its `requires_grad`
flags), so it runs under one lock, `PLANNING_LOCK`, whoever calls it: two panels in one notebook never count on a
half-frozen skeleton.
"""
from __future__ import annotations

import threading
from typing import Any
from dataclasses import dataclass, field

from .config import FineTuneConfig, config_key
from .runs import Run

PLANNING_LOCK = threading.Lock()  # planning freezes the one cached model skeleton: one planner at a time
SECONDS_PER_UNIT = 1.3e-3  # the starting guess of planning.estimate_seconds, refined from the panel's own runs


@dataclass
class Plan:
    """A config as the panel describes it before training: whether it can run, its cost and its recorded runs.
    Either `config` (runnable) or `error` (why not: the ValueError the run would raise) is set, never both."""

    config: FineTuneConfig | None
    error: str | None = None  # why the config cannot run (the ValueError's text)
    trainable: int = 0
    total: int = 0
    num_train: int = 0
    rates: list[float] = field(default_factory=list)  # the learning rate of every planned optimizer step
    seconds: float = 0.0  # estimated training time
    recorded: list[Run] = field(default_factory=list)  # the atlas's runs of exactly these settings (all seeds)
    nearest: str = ""  # which recorded settings are nearest, when these are not recorded

    @property
    def ok(self) -> bool:
        """Whether the config can run: what enables Run, and what `run()` checks."""
        return self.config is not None and self.error is None

    @property
    def steps(self) -> int:
        return len(self.rates)

    @property
    def warmup(self) -> int:
        return sum(1 for i in range(1, len(self.rates)) if self.rates[i] > self.rates[i - 1])


class PanelState:
    """The panel's state without widgets: base settings, runs, and what one run taught about this machine's speed."""

    def __init__(self, base: FineTuneConfig, atlas=None):
        """atlas: where recorded runs are looked up: the bundled atlas (None), a folder of recorded runs
        (`atlas.record(folder=...)`), or an `atlas.Book`."""
        self.base = base  # settings the controls start from (and reset to)
        self.runs: list[Run] = []
        self.seconds_per_unit: float | None = None
        self._data_sizes: dict[tuple, tuple[int, int, int]] = {}
        self._atlas = atlas
        self._book = None

    def num_layers(self) -> int:
        from .models import model_skeleton, transformer_layers

        return len(transformer_layers(model_skeleton(self.base.model_name, 2)))

    def sizes(self, task: str | None = None) -> tuple[int, int, int]:
        """(training examples, validation examples, labels) of the task's data."""
        from .data import data_stamp, is_local_path, splits_for

        config = self.base.replace(task=task or self.base.task)
        dataset = config.dataset
        key = (config.task, dataset, config.text_column, config.label_column,
               data_stamp(dataset) if dataset and is_local_path(dataset) else None)  # an edited file: its new sizes
        if key not in self._data_sizes:
            splits = splits_for(config)
            self._data_sizes[key] = (len(splits.train), len(splits.validation), len(splits.label_names))
        return self._data_sizes[key]

    def plan(self, values: dict) -> Plan:
        """The plan of the base settings changed by `values` (the controls' values); never raises ValueError."""
        from .models import plan_parameters
        from .planning import check_fits, estimate_seconds, planned_learning_rates

        try:
            config = self.base.replace(**values)
            num_train_all, num_eval_all, num_labels = self.sizes(config.task)
            num_train = min(config.max_train_samples, num_train_all)
            num_eval = min(config.max_eval_samples, num_eval_all)
            check_fits(config, num_train, self.num_layers())
        except ValueError as error:
            return Plan(None, error=str(error))
        with PLANNING_LOCK:
            rows = plan_parameters(config.model_name, num_labels, config.freeze_layers, config.lora_r,
                                   config.lora_target_modules)
        plan = Plan(config, trainable=sum(r[1] for r in rows), total=sum(r[2] for r in rows), num_train=num_train,
                    rates=planned_learning_rates(config, num_train),
                    seconds=estimate_seconds(config, num_train, num_eval, self.num_layers(),
                                             self.seconds_per_unit or SECONDS_PER_UNIT))
        plan.recorded, plan.nearest = self.recorded(config)
        return plan

    def recorded(self, config: FineTuneConfig) -> tuple[list[Run], str]:
        """The atlas's runs of these settings ([] if not recorded), and else a line on the nearest recorded ones."""
        from .atlas import Book, load

        if self._book is None:
            self._book = self._atlas if isinstance(self._atlas, Book) else load(folder=self._atlas)
        match = self._book.lookup(config)
        return (match.runs, "") if match.exact else ([], str(match) if match.runs else "")

    def add_run(self, run: Run) -> None:
        """A finished run joins the history; its speed refines the time estimate of the next plans."""
        from .planning import estimate_seconds

        self.runs.append(run)
        if run.meta.get("train_s") and run.meta.get("total_steps"):
            meta = run.meta
            unit = estimate_seconds(run.config, meta["num_train"], meta["num_eval"], meta["num_layers"], 1.0)
            done = len(run.learning_rates) / run.meta["total_steps"]
            if done > 0.2:
                self.seconds_per_unit = run.meta["train_s"] / (unit * done)


def same_settings(a: Run, b: Run) -> bool:
    """Whether two runs differ at most by their seed."""
    return config_key(a.config) == config_key(b.config)


def judge(runs: list[Run]) -> str:
    """The kit's rule on the runs a learner picked to compare, in its three words: when they are the seeds of two
    settings, whether those differ, are equivalent, or can't be told apart (at least 3 seeds each)."""
    from .runs import MIN_SEEDS, compare_runs

    groups: dict[Any, list[Run]] = {}
    for run in runs:
        groups.setdefault(config_key(run.config), []).append(run)
    if len(groups) != 2:
        return ("one setting: pick the runs of two settings to judge them" if len(groups) == 1
                else f"{len(groups)} settings: pick the runs of two settings (several seeds each) to judge them")
    (first, a), (second, b) = [(", ".join(f"{k}={v}" for k, v in g[0].config.changes().items() if k != "seed")
                                or "defaults", g) for g in groups.values()]
    verdict = compare_runs(a, b)
    if verdict.verdict == "too few seeds":
        return (f"{first} ({len(a)} seed{'s' * (len(a) != 1)}) against {second} ({len(b)}): too few seeds to judge; "
                f"the rule needs at least {MIN_SEEDS} of each (change the seed and run again)")
    return f"{first} against {second}: {verdict.short}"
