"""What the lessons and their claims read off the recorded runs: one number per run, and the runs to read it on.

    from lmtune_widgets import atlas
    from lmtune_widgets.evidence_measures import mean_of, similarity, tuned
    book = atlas.load()
    rate, found = tuned(book, atlas.FREEZE_RATES, **atlas.FREEZING, freeze_layers=4)  # the best rate, as learners pick
    mean_of(found), [similarity(r) for r in found]  # kept accuracy over the seeds; what each seed still knows

A lesson draws these numbers and its claims (`evidence`) assert them, so both read them here, written once: a
figure cannot show one number while its claim checks another. Each measure takes a `Run` and returns a float,
NaN where the run did not record it, so one broken run shows as a gap instead of stopping a lesson. Computing the
numbers on a live model is `measures`; here they are only read back from what a run kept.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Iterable

from .config import FineTuneConfig, config_key
from .runs import MIN_SEEDS, Run, kept_accuracy


class MissingEvidence(LookupError):
    """The runs a claim needs are not recorded (with enough seeds)."""


# ------------------------------------------------------------------------------------------------ which runs
def runs(book, **changes: Any) -> list[Run]:
    """The recorded seeds of the defaults with `changes`; MissingEvidence if fewer than MIN_SEEDS."""
    found = book.runs(FineTuneConfig(**changes))
    if len(found) < MIN_SEEDS:
        raise MissingEvidence(f"{changes or 'the defaults'} has {len(found)} seed(s), needs {MIN_SEEDS}")
    return found


def mean_of(found: list[Run], measure: Callable[[Run], float] = kept_accuracy) -> float:
    """The mean of `measure` over the seeds that recorded it (NaN if none did)."""
    values = [value for value in map(measure, found) if math.isfinite(value)]
    return sum(values) / len(values) if values else math.nan


def tuned(book, rates: Iterable[float], **changes: Any) -> tuple[float, list[Run]]:
    """Re-tune the learning rate as a learner would: of the recorded `rates`, the one whose seeds keep the best
    mean accuracy, and its runs. (Picked on the validation split it is then judged on, which flatters every
    setting alike.)"""
    found = {lr: runs(book, **{**changes, "learning_rate": lr}) for lr in rates}
    best = max(found, key=lambda lr: mean_of(found[lr]))
    return best, found[best]


def comparable_settings(book, reference: FineTuneConfig | None = None) -> dict[str, list[Run]]:
    """Every recorded setting (at least MIN_SEEDS seeds) on the same task and data as `reference` (the defaults):
    {settings as text: runs}. Another data order alone (`data_seed`) is not a setting but the seeds' noise: left out."""
    reference = reference or FineTuneConfig()
    same = ("task", "max_train_samples", "label_noise", "max_eval_samples", "dataset", "model_name")
    found, seen = {}, set()
    for config in book.configs():
        key = config_key(config)
        if key in seen or config.data_seed is not None or any(getattr(config, f) != getattr(reference, f) for f in same):
            continue
        seen.add(key)
        group = book.runs(config)
        if len(group) >= MIN_SEEDS:
            found[_name(config.replace(seed=reference.seed).changes())] = group
    return found


def _name(changes: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items()) or "the defaults"


# ------------------------------------------------------------------------------------------------ one number a run
def _finite(value: Any) -> float:
    """A recorded number, or NaN where the run did not record one (or recorded an infinity)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def kept_loss(run: Run) -> float:
    """The kept model's loss on the whole validation split."""
    return _finite(run.kept.get("validation_loss"))


def train_loss_eval_mode(run: Run) -> float:
    """The training loss at the end of the run measured in eval mode (dropout off) on a fixed subsample of 256
    training messages: a fair training loss, whatever the dropout."""
    values = [h.get("train_eval_loss") for h in run.history]
    return _finite(values[-1] if values else None)


def step_noise(run: Run) -> float:
    """How much the loss jumps from one optimizer step to the next: the standard deviation of the step losses over
    the second half of the run (the first half is dominated by the fall)."""
    losses = [x for x in run.train_losses[len(run.train_losses) // 2:] if math.isfinite(x)]
    return statistics.pstdev(losses) if len(losses) > 1 else math.nan


def weight_growth(run: Run) -> float:
    """How much the trainable weights' L2 norm changed from the start of the run to its end."""
    norms = [h.get("weight_norm") for h in run.history if isinstance(h.get("weight_norm"), (int, float))]
    return norms[-1] - norms[0] if len(norms) > 1 else math.nan


def per_epoch_seconds(run: Run) -> float:
    """The recorded training time divided by the epochs: runs of different lengths compared on cost."""
    return run.meta["train_s"] / run.config.num_train_epochs


def similarity(run: Run) -> float:
    """How well the fine-tuned encoder still scores sentence similarity (Spearman; 1 is perfect)."""
    return _finite(run.kept.get("similarity"))


def forgetting(run: Run) -> float:
    """What a decoder LLM forgot: its next-token loss on everyday text after fine-tuning minus before (nats per
    token; above 0 is forgetting, below 0 it predicts everyday text better than before)."""
    after, before = run.kept.get("lm_loss"), run.meta.get("lm_loss_before")
    return after - before if isinstance(after, (int, float)) and isinstance(before, (int, float)) else math.nan


def zero_shot(run: Run) -> float:
    """The accuracy at step 0: the model before any training."""
    return run.history[0]["eval_accuracy"] if run.history else math.nan


def error_rate(phenomenon: str) -> Callable[[Run], float]:
    """The kept model's error rate on the validation messages of one phenomenon (negation, mixed, ...)."""
    def rate(run: Run) -> float:
        errors, total = (run.kept.get("errors_by_phenomenon") or {}).get(phenomenon, (0, 0))
        return errors / total if total else math.nan

    return rate


def noise_sources(table: dict[tuple[int, int], Run], measure: Callable[[Run], float] = kept_accuracy
                  ) -> dict[str, float]:
    """Which noise is which, from a seed x data-seed table ({(seed, data_seed): run}): the spread of `measure` when
    only the initialisation changes (the data order fixed: a column), and when only the data order changes (a
    row). Standard deviations averaged over the columns (rows), and the widest range of any one column (row)."""
    from statistics import mean, stdev

    seeds = sorted({s for s, _ in table})
    orders = sorted({d for _, d in table})
    columns = [[measure(table[s, d]) for s in seeds] for d in orders]  # data order fixed: init varies
    rows = [[measure(table[s, d]) for d in orders] for s in seeds]  # init fixed: data order varies
    return {"init_sd": mean(stdev(c) for c in columns), "data_sd": mean(stdev(r) for r in rows),
            "init_range": max(max(c) - min(c) for c in columns), "data_range": max(max(r) - min(r) for r in rows),
            "all_sd": stdev([v for c in columns for v in c]), "runs": len(table)}
