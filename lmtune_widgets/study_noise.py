"""A search study's numbers against seed noise: which settings matter, and whether one trial beats another.

    from lmtune_widgets.study_noise import compare_trials, importance_intervals
    found = importance_intervals(study)       # each setting's importance over resamples, or too few trials to say
    found.enough, found.line, found.ranges    # False, "12 finished trials: too few to say which settings matter", {}
    compare_trials(0.31, params, 0.29, best_params).word     # "differ" or "can't tell", by the kit's rule

A search trial is one seed of one setting, and the seeds of one setting spread (lesson 00). Two readings of a
study forget it; this module puts the spread back:

- **Importances.** Optuna's importances from one study are one draw: another class, with other trials, gets
  others. `importance_intervals` computes them `RESAMPLES` times, on bootstrap resamples of the finished trials,
  each with its own fANOVA forest (Optuna's `FanovaImportanceEvaluator`, seeded), and keeps each setting's 90%
  range and median. Below `MIN_FINISHED` finished trials it says only that they are too few (see
  `MIN_FINISHED` for the measurement behind the number, and `importance_agreement` to measure it again).
- **Trial against trial.** `compare_trials` applies the kit's one rule (`runs.compare_values`) to two trials,
  each given the seed spread of a nearby recorded setting (see `nearby_setting`): the trial's value plus each
  recorded seed's deviation from its setting's mean. They differ when those ranges do not overlap, that is when
  the gap is larger than what the recorded seeds alone move a setting by; otherwise the rule can't tell.
  Losses have no margin of sameness, so trials are never called equivalent.
"""
from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Any

from .config import FineTuneConfig, config_key
from .runs import MIN_SEEDS, Comparison, compare_values

# The settings `search.default_space` searches (the recorded trials below are read on these).
SEARCHED = ("learning_rate", "per_device_train_batch_size", "dropout", "weight_decay", "warmup_ratio")
NOISE_KNOBS = ("learning_rate", "per_device_train_batch_size")  # what "nearby" is measured on (see nearby_setting)

# Below this many finished trials, no importance is drawn. Measured on the recorded runs with
# `importance_agreement(recorded_trials(), sizes, studies=100)`: 116 runs on the defaults' data that differ from the
# defaults only in searched settings, each a real seed, and studies of n of them drawn at random. How often a study
# of n trials names the same most important setting as all 116 together (the learning rate, 0.92 of the variance):
#   n = 3: 32%, 5: 46%, 8: 50%, 10: 59%, 15: 68%, 20: 65%, 25: 70%, 30: 81%, 40: 83%  (chance: 20%, 1 setting in 5)
# 30 is the fewest at which four studies in five agree. Below it, a bar of importances names a winner that another
# class's study would not name; from 30 on, the drawn ranges still show how sure the study is.
MIN_FINISHED = 30
RESAMPLES = 30  # bootstrap resamples of the finished trials, each evaluated once
N_TREES = 16  # trees in each resample's fANOVA forest (Optuna's default, 64, is 4x the time for no less spread)
RANGE = (5.0, 95.0)  # the percentiles drawn: a 90% range, as the kit's intervals (runs.CONFIDENCE)


# ------------------------------------------------------------------------------------------------ importances
@dataclass
class Importances:
    """Each searched setting's importance over resamples of a study's finished trials, or too few trials to say."""

    finished: int  # finished trials (Optuna's COMPLETE, a diverged run at its score as the search ranked it)
    ranges: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> (low, median, high)
    samples: dict[str, list[float]] = field(default_factory=dict)  # name -> its importance in each evaluation
    needed: int = MIN_FINISHED
    reason: str = ""  # why nothing was computed, besides too few trials

    @property
    def enough(self) -> bool:
        return bool(self.ranges)

    @property
    def evaluations(self) -> int:
        return len(next(iter(self.samples.values()), []))

    @property
    def line(self) -> str:
        """One line saying what the study can say: too few, or how the ranges were made."""
        trials = f"{self.finished} finished trial{'s' * (self.finished != 1)}"
        if self.finished < self.needed:
            return f"{trials}: too few to say which settings matter"
        if not self.enough:
            return f"{trials}: no importance could be computed ({self.reason})"
        return (f"{trials}: each setting's importance over {self.evaluations} resamples of them "
                f"({RANGE[1] - RANGE[0]:.0f}% range and median)")


def finished_trials(study) -> list:
    """The study's finished trials with a value (what Optuna's importances are computed from)."""
    import optuna

    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]


def importance_intervals(study, resamples: int = RESAMPLES, seed: int = 0,
                         min_finished: int = MIN_FINISHED) -> Importances:
    """Parameter importances with their spread: fANOVA on `resamples` bootstrap resamples of the finished trials
    (drawn with replacement, as many as there are), each forest seeded differently, summarised per setting by its
    median and 90% range. With fewer than `min_finished` finished trials nothing is computed (`enough` is False)."""
    import numpy as np

    trials = finished_trials(study)
    found = Importances(len(trials), needed=min_finished)
    if len(trials) < min_finished:
        return found
    distributions = _shared_distributions(trials)
    if not distributions:
        found.reason = "no setting is in every finished trial"
        return found
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in distributions}
    for i in range(resamples):
        drawn = [rng.choice(trials) for _ in trials]
        result = _importances([({n: t.params[n] for n in distributions}, t.value) for t in drawn], distributions,
                              seed + i, N_TREES)
        if result is not None:
            for name in distributions:
                samples[name].append(result.get(name, 0.0))
    if not next(iter(samples.values())):
        found.reason = "every resample's values were all the same"
        return found
    found.samples = samples
    ranges = {name: (float(np.percentile(v, RANGE[0])), float(np.median(v)), float(np.percentile(v, RANGE[1])))
              for name, v in samples.items()}
    found.ranges = dict(sorted(ranges.items(), key=lambda item: -item[1][1]))
    return found


def _importances(rows: list[tuple[dict[str, Any], float]], distributions: dict, seed: int,
                 n_trees: int) -> dict[str, float] | None:
    """fANOVA's normalised importances of (params, value) rows; None when they cannot be computed (no spread)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory", once per resample
    try:
        study = optuna.create_study()
        study.add_trials([optuna.trial.create_trial(params=params, distributions=distributions, value=value)
                          for params, value in rows])
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    finally:
        optuna.logging.set_verbosity(level)
    if not result or not all(math.isfinite(v) for v in result.values()):
        return None
    return result


def _shared_distributions(trials: list) -> dict:
    """The settings every trial has, with one distribution each: a float range widened to hold them all (a run
    filed from the panel widens its own), categorical choices joined; a setting drawn two incompatible ways is left
    out."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    names = set.intersection(*(set(t.distributions) for t in trials))
    shared = {}
    for name in sorted(names):
        kinds = [t.distributions[name] for t in trials]
        first = kinds[0]
        if all(d == first for d in kinds):
            shared[name] = first
        elif all(isinstance(d, FloatDistribution) and d.step is None for d in kinds):
            shared[name] = FloatDistribution(min(d.low for d in kinds), max(d.high for d in kinds),
                                             log=all(d.log for d in kinds))
        elif all(isinstance(d, IntDistribution) and d.step == 1 for d in kinds):
            shared[name] = IntDistribution(min(d.low for d in kinds), max(d.high for d in kinds),
                                           log=all(d.log for d in kinds))
        elif all(isinstance(d, CategoricalDistribution) for d in kinds):
            shared[name] = CategoricalDistribution(list(dict.fromkeys(c for d in kinds for c in d.choices)))
    return shared


# ------------------------------------------------------------------------------------------------ measuring it
def recorded_trials(book=None) -> list[tuple[dict[str, Any], float]]:
    """Every recorded run on the defaults' data that differs from the defaults only in searched settings, as a
    trial: (its value of each of `SEARCHED`, its kept model's validation loss, the search's objective)."""
    from . import atlas

    book = book if book is not None else atlas.load()
    groups = {}
    for config in book.configs():
        changed = set(config.changes()) - {"seed"}
        if changed <= set(SEARCHED):
            groups.setdefault(config_key(config), config)
    rows = []
    for config in groups.values():
        for run in book.runs(config):
            value = run.kept.get("validation_loss")
            if isinstance(value, (int, float)) and math.isfinite(value):
                rows.append(({name: getattr(run.config, name) for name in SEARCHED}, float(value)))
    return rows


def _distributions_of(rows: list[tuple[dict[str, Any], float]]) -> dict:
    """Distributions that hold every row's values: whole numbers as choices, the learning rate on a log scale."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for name in rows[0][0]:
        values = [params[name] for params, _ in rows]
        if all(isinstance(v, int) for v in values):
            out[name] = CategoricalDistribution(sorted(set(values)))
        else:
            out[name] = FloatDistribution(min(values), max(values), log=name == "learning_rate")
    return out


def importance_agreement(rows: list[tuple[dict[str, Any], float]], sizes: list[int], studies: int = 100,
                         seed: int = 0) -> dict[int, float]:
    """For each n in `sizes`: the share of `studies` studies of n rows drawn at random (without replacement) from
    `rows` whose fANOVA importances name the same most important setting as all the rows together. The
    measurement behind `MIN_FINISHED` (run on `recorded_trials()`)."""
    distributions = _distributions_of(rows)
    truth = _importances(rows, distributions, seed, 64)
    if truth is None:
        raise ValueError("the rows' values have no spread: no setting matters")
    top = max(truth, key=truth.get)
    rng = random.Random(seed)
    agreement = {}
    for n in sizes:
        agree = 0
        for i in range(studies):
            found = _importances(rng.sample(rows, n), distributions, seed + i, N_TREES)
            agree += found is not None and max(found, key=found.get) == top
        agreement[n] = agree / studies
    return agreement


# ------------------------------------------------------------------------------------------------ trial against trial
@dataclass
class Nearby:
    """The recorded setting whose seeds stand for a trial's seed noise."""

    config: FineTuneConfig  # the setting (at the default seed)
    values: list[float]  # each recorded seed's kept validation loss

    @property
    def deviations(self) -> list[float]:
        mean = sum(self.values) / len(self.values)
        return [v - mean for v in self.values]

    def __str__(self) -> str:
        return (f"learning rate {self.config.learning_rate:g}, batch {self.config.per_device_train_batch_size}: "
                f"{len(self.values)} seeds, {min(self.values):.3f} to {max(self.values):.3f}")


def _recorded_settings(book) -> list[Nearby]:
    """The recorded settings on the defaults' data that change only the learning rate and the batch size, with at
    least MIN_SEEDS seeds (read once per book)."""
    if id(book) not in _SETTINGS:
        groups = {}
        for config in book.configs():
            if set(config.changes()) - {"seed"} <= set(NOISE_KNOBS):
                groups.setdefault(config_key(config), config)
        settings = []
        for config in groups.values():
            runs = book.runs(config)
            values = [r.kept.get("validation_loss") for r in runs]
            values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            if len(values) >= MIN_SEEDS:
                settings.append(Nearby(runs[0].config.replace(seed=FineTuneConfig().seed), values))
        _SETTINGS[id(book)] = (book, settings)  # the book is kept so that its id stays its own
    return _SETTINGS[id(book)][1]


_SETTINGS: dict[int, tuple[Any, list[Nearby]]] = {}


def nearby_setting(params: dict[str, Any], book=None) -> Nearby | None:
    """The recorded setting nearest to a trial's, whose seeds stand for the trial's seed noise, or None when the
    book has none.

    "Nearby" is chosen among the recorded settings on the defaults' data (1,616 messages, 2 epochs) that change
    nothing but the learning rate and the batch size, each with at least `MIN_SEEDS` seeds (the learning-rate
    sweep, the batch-size sweep and their grid, lessons 01 and 02): first the nearest learning rate on a log
    scale, then, among the settings at that rate, the nearest batch size on a log scale. The learning rate comes
    first because it moves the loss most (lesson 01; and the importances of the recorded runs: 0.92 of the
    variance). A setting missing from `params` is taken at its default. The other searched settings (dropout,
    weight decay, warmup) are not matched: on the defaults' data no recorded change of them keeps a model the
    rule can tell from the defaults'. The spread is the defaults' data's: a class searching on fewer messages
    may spread differently, so the verdicts say how far apart two trials are against recorded seed noise, not
    against their own.
    """
    from . import atlas

    settings = _recorded_settings(book if book is not None else atlas.load())
    if not settings:
        return None
    defaults = FineTuneConfig()
    rate = float(params.get("learning_rate", defaults.learning_rate))
    batch = float(params.get("per_device_train_batch_size", defaults.per_device_train_batch_size))
    log_gap = lambda a, b: abs(math.log(a) - math.log(b))  # noqa: E731
    nearest_rate = min(log_gap(s.config.learning_rate, rate) for s in settings)
    at_rate = [s for s in settings if math.isclose(log_gap(s.config.learning_rate, rate), nearest_rate)]
    return min(at_rate, key=lambda s: log_gap(s.config.per_device_train_batch_size, batch))


def trial_seeds(value: float, params: dict[str, Any], book=None) -> list[float]:
    """A trial's value as if its setting had the seeds of the nearby recorded setting: the value plus each recorded
    seed's deviation from their mean ([value] alone when nothing is recorded)."""
    nearby = nearby_setting(params, book)
    return [value + d for d in nearby.deviations] if nearby else [value]


def compare_trials(value: float, params: dict[str, Any], other_value: float, other_params: dict[str, Any],
                   book=None) -> Comparison:
    """The kit's rule on two trials' validation losses, each with the seed noise of its nearby recorded setting
    (`trial_seeds`): "lower"/"higher" (they differ: the first's loss is below/above the other's by more than the
    seeds spread), "can't tell", or "too few seeds" when nothing is recorded. Only the ranges decide: the rule's
    interval is over the recorded seeds moved to each trial, and a loss has no margin of sameness, so never
    "equivalent"."""
    return compare_values(trial_seeds(value, params, book), trial_seeds(other_value, other_params, book),
                          "validation loss", margin=None)
