"""What the lessons claim, each written as a check over the recorded runs, so that CI asserts every one.

    from lmtune_widgets import evidence
    evidence.check("01")              # every claim of lesson 01: a Finding each (does it hold, and the numbers)
    evidence.CLAIMS["01.too_low"]     # one claim: its text and its check
    evidence.assert_claims("01")      # prints them, raises AssertionError if one does not hold (a lesson's last cell)

A lesson states a difference only where the one rule (`runs.compare_runs`) finds it: the ranges over at least
three seeds of the kept model's accuracy on the whole validation split do not overlap. It states a sameness only
where the rule finds the settings equivalent within ±1 point (the 90% interval of the mean difference inside it).
Otherwise the lesson says "can't tell with N seeds". A claim whose runs are not recorded does not hold: it says
which are missing. `best_at_an_edge` finds a claim whose best learning rate is its grid's first or last.

The claims follow the lessons, 00 to 11, so a lesson's claims read in the order it makes them. What they are
checked on is not written here: the grids' values come from the atlas (`atlas.FREEZE_RATES`, ...), where the runs
are recorded, and the numbers read off a run from `evidence_measures`, where the lessons read them too.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import atlas
from .config import PRESETS, FineTuneConfig, config_key
from .evidence_measures import tuned as tuned_over
from .evidence_measures import (MissingEvidence, comparable_settings, error_rate, forgetting, kept_loss, mean_of,
                                noise_sources,
                                per_epoch_seconds, runs, similarity, step_noise, train_loss_eval_mode,
                                weight_growth, zero_shot)
from .runs import Comparison, Run, accuracy_range, compare_runs, compare_values, diagnose, kept_accuracy

@dataclass(frozen=True)
class Claim:
    id: str  # "<lesson>.<name>", e.g. "01.too_low"
    text: str  # what the lesson says, in its words
    check: Callable[[Any], list[tuple[bool, str]]]  # (book) -> one (holds, evidence) per part of the claim

    @property
    def lesson(self) -> str:
        return self.id.split(".")[0]


@dataclass
class Finding:
    claim: Claim
    holds: bool
    evidence: list[str]
    judged: bool = True  # False: the runs it needs are not recorded (then it does not hold either)
    parts: list[bool] = field(default_factory=list)  # whether each line of `evidence` holds

    def __str__(self) -> str:
        mark = "holds" if self.holds else "DOES NOT HOLD"
        return f"[{mark}] {self.claim.text}\n" + "\n".join(f"    - {line}" for line in self.evidence)

    @property
    def verdict(self) -> str:
        """"held", "not held", or "not judged" (its runs are not recorded)."""
        return "not judged" if not self.judged else "held" if self.holds else "not held"


CLAIMS: dict[str, Claim] = {}


def claim(id: str, text: str):
    """Register a lesson claim; the decorated function takes the atlas and returns [(holds, evidence), ...]."""
    def register(function):
        if id in CLAIMS:
            raise ValueError(f"claim {id!r} is registered twice")
        CLAIMS[id] = Claim(id, " ".join(text.split()), function)
        return function

    return register


def check(which: str, book=None) -> list[Finding]:
    """The findings of one claim ("01.too_low") or of every claim of a lesson ("01")."""
    book = book if book is not None else atlas.load()
    chosen = [c for c in CLAIMS.values() if which in (c.id, c.lesson)]
    if not chosen:
        known = sorted({c.lesson for c in CLAIMS.values()})
        raise ValueError(f"no claim or lesson {which!r}: lessons with claims are {', '.join(known)}")
    findings = []
    for c in chosen:
        try:
            parts, judged = c.check(book), True
        except MissingEvidence as missing:
            parts, judged = [(False, f"not recorded: {missing}")], False
        except ValueError as error:  # an atlas lookup that found nothing (`atlas.seed_x_data_seed`, ...)
            if not str(error).startswith("not recorded"):
                raise
            parts, judged = [(False, str(error))], False
        findings.append(Finding(c, all(ok for ok, _ in parts), [line for _, line in parts], judged,
                                [bool(ok) for ok, _ in parts]))
    return findings


def report(book, out=None) -> dict[str, int]:
    """Every lesson claim on `book` (an atlas of any data), in the lessons' order: one line each, held, not held or
    not judged (its runs are not in the book), then the counts. Returns the counts; raises nothing for a claim."""
    import sys

    out = out or sys.stdout
    counts = {"held": 0, "not held": 0, "not judged": 0}
    for id, (verdict, why) in verdicts_on(book).items():  # in the lessons' order
        counts[verdict] += 1
        line = f"{verdict:<10}  {id}{': ' + why if why else ''}"
        print(line if len(line) <= 160 else line[:159] + "…", file=out)
    print(f"{sum(counts.values())} claims: {counts['held']} held, {counts['not held']} not held, "
          f"{counts['not judged']} not judged (runs not recorded)", file=out)
    return counts


def verdicts_on(book, lessons: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
    """Every claim (of `lessons`, default all) on `book`: {id: (verdict, why)}, the verdict "held", "not held" or
    "not judged", `why` the first evidence line that does not hold ("" when it holds). Raises nothing for a claim."""
    global _tunings
    found, saved, _tunings = {}, _tunings, None  # what these checks tune is not the calling claim's (best_at_an_edge)
    try:
        for id, c in CLAIMS.items():
            if lessons is not None and c.lesson not in lessons:
                continue
            try:
                finding = check(id, book)[0]
                verdict = finding.verdict
                why = "" if finding.holds else next(line for ok, line in zip(finding.parts, finding.evidence) if not ok)
            except Exception as error:  # a check that cannot read what this atlas holds: not judged, and why
                verdict, why = "not judged", f"could not be judged: {type(error).__name__}: {error}"
            found[id] = verdict, why
    finally:
        _tunings = saved
    return found


def assert_claims(lesson: str, book=None) -> list[Finding]:
    """Print every claim of `lesson` with its evidence; raise AssertionError naming those that do not hold."""
    findings = check(lesson, book)
    for finding in findings:
        print(finding)
    failed = [f.claim.id for f in findings if not f.holds]
    if failed:
        raise AssertionError(f"the recorded runs do not support: {', '.join(failed)}")
    print(f"All {len(findings)} claims of lesson {lesson} hold on the recorded runs.")
    return findings


# The grids' values moved to the atlas, where the runs are recorded; the old names work for this release, with a
# warning that says where each one lives now.
_MOVED_TO_ATLAS = ("BATCH_RATES", "DROPOUTS", "FREEZE_LEVELS", "FREEZE_RATES", "FREEZING", "HEAD_RATES", "LLM_RATES",
                   "LORA_RANKS", "NOISE_LEVELS", "NOISY", "SCHEDULE_PARTS", "SCRATCH_RATES", "UNFROZEN_RATES")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_ATLAS:
        warnings.warn(f"lmtune_widgets.evidence.{name} is now lmtune_widgets.atlas.{name} (next to the grid it is "
                      "read from); the old name goes in the next release", DeprecationWarning, stacklevel=2)
        return getattr(atlas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------ vocabulary
def compare(book, first: dict, second: dict, measure: Callable[[Run], float] = kept_accuracy,
            what: str = "kept accuracy") -> Comparison:
    return compare_runs(runs(book, **first), runs(book, **second), measure, what)


_tunings: list[tuple[tuple, Any, dict]] | None = None  # while `best_at_an_edge` runs: every rate a claim tuned


def tuned(book, rates: Iterable[float], **changes: Any) -> tuple[float, list[Run]]:
    """`evidence_measures.tuned`, noted for `best_at_an_edge`."""
    rates = tuple(rates)
    best, found = tuned_over(book, rates, **changes)
    if _tunings is not None:
        _tunings.append((rates, best, changes))
    return best, found


def best_at_an_edge(book=None, which: Iterable[str] | None = None) -> list[str]:
    """Every claim whose best learning rate is the lowest or highest of the rates it was picked from: the best may
    then lie beyond the grid, and the claim would teach an edge as an optimum. Empty when none. `which`: claim
    ids (default: all)."""
    global _tunings
    book = book if book is not None else atlas.load()
    found = []
    for c in CLAIMS.values():
        if which is not None and c.id not in which:
            continue
        _tunings = []
        try:
            c.check(book)
        except MissingEvidence:
            pass
        finally:
            tunings, _tunings = _tunings, None
        found += [f"{c.id}: best rate {best:g} is an edge of {', '.join(f'{r:g}' for r in rates)} "
                  f"({', '.join(f'{k}={v}' for k, v in changes.items() if FineTuneConfig().to_dict().get(k) != v)})"
                  for rates, best, changes in tunings if best in (min(rates), max(rates))]
    return found


CANT_TELL = "can't tell"


def expect(comparison: Comparison, verdict: str, name: str) -> tuple[bool, str]:
    return comparison.verdict == verdict, f"{name}: {comparison}"


def verdicts(found: Iterable[Run]) -> list[str]:
    return [diagnose(run).verdict for run in found]


# ------------------------------------------------------------------------------------------------ 00 start here
@claim("00.presets", """Each preset shows its shape on every one of 5 seeds: `underfit` underfits, `overfit`
       overfits, `diverge` diverges.""")
def _presets(book):
    out = []
    for preset, shape in (("underfit", "underfitting"), ("overfit", "overfitting"), ("diverge", "diverged")):
        found = runs(book, **FineTuneConfig.from_preset(preset).changes())
        seen = verdicts(found)
        out.append((set(seen) == {shape} and len(found) >= 5, f"{preset}: {', '.join(seen)}"))
    return out


@claim("00.defaults_mostly_good", """The defaults read as a good fit on most seeds, but not on all: even the
       verdict of a run depends on its seed.""")
def _defaults(book):
    seen = verdicts(runs(book))
    good = seen.count("good fit")
    return [(good > len(seen) / 2, f"{good} of {len(seen)} seeds read 'good fit'"),
            (good < len(seen), f"the others read {', '.join(v for v in seen if v != 'good fit')}")]


@claim("00.seed_spread", """The same settings with five different seeds keep models whose accuracy spans more
       than 3 points: one run cannot show a difference of 2 or 3 points.""")
def _spread(book):
    accuracies = sorted(kept_accuracy(r) for r in runs(book))
    width = accuracies[-1] - accuracies[0]
    return [(width > 0.03, f"kept accuracy of the defaults over {len(accuracies)} seeds: "
             f"{', '.join(f'{a:.1%}' for a in accuracies)} (a spread of {width:.1%})")]


@claim("00.is_it_real", """Learning rate 1e-3 against the default 5e-4: with seed 42 alone the two kept models
       differ by about 3 points, yet over several seeds we can't tell them apart.""")
def _is_it_real(book):
    one, other = runs(book, learning_rate=1e-3), runs(book)
    single = [next(kept_accuracy(r) for r in found if r.config.seed == 42) for found in (one, other)]
    gap = single[1] - single[0]
    return [(abs(gap) >= 0.02, f"seed 42 only: 1e-3 keeps {single[0]:.1%}, 5e-4 keeps {single[1]:.1%}"),
            expect(compare_runs(one, other), "can't tell", "all seeds")]


@claim("00.two_noises", """The defaults at every pair of five initialisation seeds and five data orders (25 runs):
       changing only the data order moves the kept accuracy by as much as changing only the initialisation, up to
       about 4 points in one row or column; neither noise is small (their standard deviations are within a factor
       of two of each other).""")
def _two_noises(book):
    noise = noise_sources(atlas.seed_x_data_seed(book))
    ratio = noise["data_sd"] / noise["init_sd"]
    return [(noise["runs"] == 25, f"{noise['runs']} runs"),
            (min(noise["init_range"], noise["data_range"]) > 0.03,
             f"widest column (initialisation only) {noise['init_range']:.1%}, widest row (data order only) "
             f"{noise['data_range']:.1%}"),
            (0.5 < ratio < 2, f"standard deviations: initialisation only {noise['init_sd']:.2%}, data order only "
                              f"{noise['data_sd']:.2%} (ratio {ratio:.2f})")]


@claim("00.cant_tell_is_not_same", """The defaults at their five seeds against the very same settings under the 20
       other data orders: the rule says can't tell with 5 seeds, not equivalent. Five seeds cannot show that two
       settings are the same, even when they are.""")
def _cant_tell_is_not_same(book):
    table = atlas.seed_x_data_seed(book)
    others = [run for (seed, data_seed), run in table.items() if seed != data_seed]
    return [(len(others) == 20, f"{len(others)} runs with another data order"),
            expect(compare_runs(runs(book), others), CANT_TELL, "the defaults against other data orders")]


@claim("00.equivalence_needs_seeds", """At ten seeds each, compared seed by seed, weight decay 0 and 0.1 are
       equivalent within ±1 point; dropout 0 and 0.3, at ten seeds each too, are still can't tell: their interval
       of the difference lies above zero but reaches past 1 point.""")
def _equivalence_needs_seeds(book):
    decay = compare(book, {"weight_decay": 0.0}, {"weight_decay": 0.1})
    dropout = compare(book, {"dropout": 0.0}, {"dropout": 0.3})
    return [(decay.seeds == (10, 10) and decay.paired == 10, f"weight decay: {decay.seeds} seeds, {decay.paired} paired"),
            expect(decay, "equivalent", "weight decay 0 against 0.1"),
            (dropout.seeds == (10, 10), f"dropout: {dropout.seeds} seeds"),
            expect(dropout, CANT_TELL, "dropout 0 against 0.3"),
            (0 < dropout.interval[0] and dropout.interval[1] > 0.01, f"dropout interval {dropout.interval}")]


# ------------------------------------------------------------------------------------------------ 01 learning rate
@claim("01.too_low", """Too low a learning rate underfits: at 1e-5 and 3.2e-5 every seed underfits, and both keep
       a worse model than the default 5e-4.""")
def _too_low(book):
    out = []
    for lr in (1e-5, 3.2e-5):
        seen = verdicts(runs(book, learning_rate=lr))
        out.append((set(seen) == {"underfitting"}, f"lr {lr:g}: {', '.join(seen)}"))
        out.append(expect(compare(book, {"learning_rate": lr}, {}), "lower", f"lr {lr:g} against 5e-4"))
    return out


@claim("01.too_high", """Too high a learning rate is worse and erratic: at 5e-3 the kept model is worse than at
       5e-4, and its seeds land more than 20 points apart.""")
def _too_high(book):
    found = runs(book, learning_rate=5e-3)
    accuracies = [kept_accuracy(r) for r in found]
    return [expect(compare(book, {"learning_rate": 5e-3}, {}), "lower", "lr 5e-3 against 5e-4"),
            (max(accuracies) - min(accuracies) > 0.2, f"lr 5e-3 verdicts: {', '.join(verdicts(found))}")]


@claim("01.plateau", """Between the extremes lies a plateau: from 2e-4 to 2e-3, a tenfold range, no rate beats the
       default 5e-4 and with 3 seeds we can't tell any of them apart from it; 1e-4 is already lower.""")
def _plateau(book):
    out = [expect(compare(book, {"learning_rate": lr}, {}), "can't tell", f"lr {lr:g} against 5e-4")
           for lr in (2e-4, 1e-3, 2e-3)]
    out.append(expect(compare(book, {"learning_rate": 1e-4}, {}), "lower", "lr 1e-4 against 5e-4"))
    return out


# ------------------------------------------------------------------------------------------------ 02 batch size
@claim("02.steps", """The steps per epoch are the training examples divided by the batch size (1616 messages:
       404 steps at batch 4, 13 at batch 128).""")
def _steps(book):
    out = []
    for batch in (4, 16, 128):
        steps = runs(book, per_device_train_batch_size=batch)[0].meta["steps_per_epoch"]
        out.append((steps == math.ceil(1616 / batch), f"batch {batch}: {steps} steps per epoch"))
    return out


@claim("02.step_noise", """Smaller batches make noisier steps: the loss of single steps jumps more at batch 4 than
       at batch 16, and more at batch 16 than at batch 128, on every seed.""")
def _step_noise(book):
    return [expect(compare(book, {"per_device_train_batch_size": small}, {"per_device_train_batch_size": big},
                           step_noise, "step-loss spread"), "higher", f"batch {small} against {big}")
            for small, big in ((4, 16), (16, 128))]


@claim("02.big_batch_lags", """At the same learning rate (5e-4) and epochs, batch 128 keeps a worse model than
       batch 16: eight times fewer steps learn less.""")
def _big_batch(book):
    return [expect(compare(book, {"per_device_train_batch_size": 128}, {}), "lower", "batch 128 against 16")]


@claim("02.small_batches_cant_tell", """From batch 4 to batch 64, with 3 seeds we can't tell any batch size apart
       from batch 16: none keeps a better or a worse model by the rule.""")
def _small_batches(book):
    return [expect(compare(book, {"per_device_train_batch_size": b}, {}), "can't tell", f"batch {b} against 16")
            for b in (4, 8, 32, 64)]


@claim("02.retune", """Re-tune the learning rate with the batch size: of five recorded rates, the one with the best
       mean is higher at batch 128 than at batch 16 (1e-3 against 5e-4); at batch 128 every rate below 1e-3 (1e-4,
       2e-4, 5e-4) keeps a worse model than 1e-3 on every seed and 3 seeds can't tell 2e-3 from it, and there 3 seeds
       can't tell batch 128 from batch 16 at its own best (only just: its best seed equals batch 16's worst).""")
def _retune(book):
    big_lr, big = tuned(book, atlas.BATCH_RATES, per_device_train_batch_size=128)
    small_lr, small = tuned(book, atlas.BATCH_RATES)
    at_1e3 = {"per_device_train_batch_size": 128, "learning_rate": 1e-3}
    return [(big_lr > small_lr, f"best rate: batch 128 at {big_lr:g}, batch 16 at {small_lr:g}")] + [
        expect(compare(book, {"per_device_train_batch_size": 128, "learning_rate": lr}, at_1e3), verdict,
               f"batch 128: {lr:g} against 1e-3") for lr, verdict in ((1e-4, "lower"), (2e-4, "lower"), (5e-4, "lower"),
                                                                    (2e-3, "can't tell"))] + [
        expect(compare_runs(big, small), "can't tell",
               f"batch 128 at {big_lr:g} against batch 16 at {small_lr:g}")]


@claim("02.topic_too", """On the topic task (five classes) the batch story repeats: at 5e-4, 3 seeds can't tell
       batches 8 and 32 from batch 16 and batch 128 keeps a worse model; at batch 128 a higher rate pays (2e-3 beats
       5e-4 on every seed; 1e-3 has the best mean, but its worst seed lands among 5e-4's), and at its best of five rates
       3 seeds can't tell batch 128 from batch 16.""")
def _topic_batches(book):
    topic = {"task": "topic"}
    big = {**topic, "per_device_train_batch_size": 128}
    big_lr, best = tuned(book, atlas.BATCH_RATES, **big)
    return [*(expect(compare(book, {**topic, "per_device_train_batch_size": b}, topic), "can't tell",
                     f"topic: batch {b} against 16") for b in (8, 32)),
            expect(compare(book, big, topic), "lower", "topic: batch 128 against 16"),
            expect(compare(book, {**big, "learning_rate": 2e-3}, big), "higher", "topic, batch 128: 2e-3 against 5e-4"),
            expect(compare(book, {**big, "learning_rate": 1e-3}, big), "can't tell",
                   "topic, batch 128: 1e-3 against 5e-4"),
            (big_lr == 1e-3, f"topic, batch 128: the best mean of five rates is at {big_lr:g}"),
            expect(compare_runs(best, runs(book, **topic)), "can't tell",
                   f"topic: batch 128 at {big_lr:g} against batch 16 at 5e-4")]


# ------------------------------------------------------------------------------------------------ 03 epochs
@claim("03.too_few", """On all 1616 messages, half an epoch and one epoch keep a worse model than two.""")
def _epochs_too_few(book):
    return [expect(compare(book, {"num_train_epochs": e}, {}), "lower", f"{e:g} epoch(s) against 2")
            for e in (0.5, 1)]


@claim("03.overfit_early", """On 192 noisy messages for 10 epochs, every seed overfits, and the validation loss is
       lowest within the first 3 epochs.""")
def _overfit_early(book):
    found = runs(book, **FineTuneConfig.from_preset("overfit").changes())
    best = [diagnose(r).best_epoch for r in found]
    return [(set(verdicts(found)) == {"overfitting"}, f"verdicts: {', '.join(verdicts(found))}"),
            (max(best) <= 3, f"lowest validation loss at epochs {', '.join(f'{b:g}' for b in best)}")]


@claim("03.more_epochs", """On all 1616 messages, with 3 seeds we can't tell 3 or 5 epochs apart from 2 epochs. At 5
       epochs every seed overfits (its validation loss is lowest before epoch 3 and then rises), and its kept
       model's validation loss is higher than after 2 epochs: overfitting shows in the loss while the accuracy cannot
       tell.""")
def _more_epochs(book):
    found = runs(book, num_train_epochs=5)
    best = [diagnose(r).best_epoch for r in found]
    return [expect(compare(book, {"num_train_epochs": e}, {}), "can't tell", f"{e} epochs against 2")
            for e in (3, 5)] + [
        (set(verdicts(found)) == {"overfitting"} and max(best) < 3,
         f"5 epochs: {', '.join(verdicts(found))}; "
         f"lowest validation loss at epochs {', '.join(f'{b:.2g}' for b in best)}"),
        expect(compare(book, {"num_train_epochs": 5}, {}, kept_loss, "kept validation loss"), "higher",
               "5 epochs against 2")]


# ------------------------------------------------------------------------------------------------ 04 dropout
@claim("04.clean_data", """On all 1616 clean messages, 3 seeds can't tell any dropout from 0 to 0.5 apart from the
       default 0.1; strong dropout (0.5) keeps a worse model than 0 (recorded at 10 seeds) and 0.2, while 0.3's
       10 seeds reach down into 0.5's range.""")
def _dropout_clean(book):
    return [expect(compare(book, {"dropout": p}, {}), CANT_TELL, f"dropout {p:g} against 0.1")
            for p in (0.0, 0.2, 0.3, 0.5)] + [
        expect(compare(book, {"dropout": 0.5}, {"dropout": p}), verdict, f"dropout 0.5 against {p:g}")
        for p, verdict in ((0.0, "lower"), (0.2, "lower"), (0.3, CANT_TELL))]


@claim("04.strong_dropout_fits_less", """Strong dropout holds the model back on the training set without a gain on
       validation: at 0.5 the training loss measured in eval mode ends higher than at 0.1 on every seed, while 3
       seeds can't tell the kept models' validation losses apart.""")
def _dropout_fits_less(book):
    return [expect(compare(book, {"dropout": 0.5}, {}, train_loss_eval_mode, "eval-mode training loss"), "higher",
                   "dropout 0.5 against 0.1, training loss (eval mode)"),
            expect(compare(book, {"dropout": 0.5}, {}, kept_loss, "kept validation loss"), "can't tell",
                   "dropout 0.5 against 0.1, validation loss")]


def noisy(label_noise: float, dropout: float, **changes: Any) -> dict[str, Any]:
    return {**atlas.NOISY, "label_noise": label_noise, "dropout": dropout, **changes}


def _dropout_pays(book, level: float, name: str, **changes: Any) -> list[tuple[bool, str]]:
    """With `level` of the labels flipped, dropout 0.5 against none: a better model, and a lower validation loss
    (less confidently wrong). The advice for noisy labels, checked the same way on each task."""
    strong, none = noisy(level, 0.5, **changes), noisy(level, 0.0, **changes)
    return [expect(compare(book, strong, none), "higher", f"{name}: dropout 0.5 against 0"),
            expect(compare(book, strong, none, kept_loss, "kept validation loss"), "lower",
                   f"{name}: dropout 0.5 against 0, validation loss")]


@claim("04.noise_hurts", """Flipped labels cost accuracy: at dropout 0.1, each step from 0 to 10, 20 and 30% of the
       training labels flipped keeps a worse model than the step before, by the rule.""")
def _noise_hurts(book):
    return [expect(compare(book, noisy(b, 0.1), noisy(a, 0.1)), "lower", f"noise {b:g} against {a:g}")
            for a, b in zip(atlas.NOISE_LEVELS, atlas.NOISE_LEVELS[1:])]


@claim("04.noisy_labels_want_dropout", """The advice holds here: with 10%, 20% or 30% of the labels flipped, dropout
       0.5, the strongest recorded, keeps a better model than no dropout on every seed, and one with a lower
       validation loss (less confidently wrong). On clean labels 3 seeds can't tell the two apart.""")
def _noisy_dropout(book):
    out = []
    for level in atlas.NOISE_LEVELS[1:]:
        out += _dropout_pays(book, level, f"noise {level:g}")
    out.append(expect(compare(book, noisy(0.0, 0.5), noisy(0.0, 0.0)), "can't tell",
                      "clean: dropout 0.5 against 0"))
    return out


@claim("04.topic_too", """The same grid on the topic task (five classes) says the same: at dropout 0.1 each step of
       label noise keeps a worse model; with 10%, 20% or 30% of the labels flipped, dropout 0.5 keeps a better model
       than no dropout on every seed, with a lower validation loss; on clean labels 3 seeds can't tell their
       accuracies apart. At 20% and 30% flipped even dropout 0.5 stays below clean labels at the default 0.1.""")
def _topic_noise(book):
    topic = lambda level, p: noisy(level, p, task="topic")  # noqa: E731
    out = [expect(compare(book, topic(b, 0.1), topic(a, 0.1)), "lower", f"topic: noise {b:g} against {a:g}")
           for a, b in zip(atlas.NOISE_LEVELS, atlas.NOISE_LEVELS[1:])]
    for level in atlas.NOISE_LEVELS[1:]:
        out += _dropout_pays(book, level, f"topic, noise {level:g}", task="topic")
    out.append(expect(compare(book, topic(0.0, 0.5), topic(0.0, 0.0)), "can't tell",
                      "topic, clean: dropout 0.5 against 0"))
    for level in (0.2, 0.3):
        out.append(expect(compare(book, topic(level, 0.5), topic(0.0, 0.1)), "lower",
                          f"topic: noise {level:g} at dropout 0.5 against clean at 0.1"))
    return out


SMOOTHING = tuple(atlas.PRACTICE_GRIDS["smoothing_x_noise"][1]["label_smoothing_factor"])


@claim("04.smoothing_lowers_the_loss", """Label smoothing, the other standard answer to noisy labels: at every noise
       level from 0 to 30% flipped, smoothing 0.1 and 0.2 keep a model with a lower validation loss than no smoothing
       on every seed (less sure of itself, so a wrong answer costs less).""")
def _smoothing_loss(book):
    return [expect(compare(book, noisy(level, 0.1, label_smoothing_factor=f), noisy(level, 0.1), kept_loss,
                           "kept validation loss"), "lower", f"noise {level:g}: smoothing {f:g} against none, loss")
            for level in atlas.NOISE_LEVELS for f in SMOOTHING]


@claim("04.smoothing_accuracy", """In accuracy, label smoothing is no substitute for dropout: with 10 to 30% of the
       labels flipped, no smoothing factor keeps a better model than no smoothing by the rule (mostly: can't tell
       with 3 seeds), while dropout 0.5 does on every seed; on clean labels smoothing 0.2 costs accuracy (about 2
       points, every seed below).""")
def _smoothing_accuracy(book):
    out = []
    for level in atlas.NOISE_LEVELS[1:]:
        for f in SMOOTHING:
            c = compare(book, noisy(level, 0.1, label_smoothing_factor=f), noisy(level, 0.1))
            out.append((c.verdict != "higher", f"noise {level:g}: smoothing {f:g} against none: {c.short}"))
    out.append(expect(compare(book, noisy(0.0, 0.1, label_smoothing_factor=0.2), noisy(0.0, 0.1)), "lower",
                      "clean: smoothing 0.2 against none"))
    return out


# ------------------------------------------------------------------------------------------------ 05 weight decay
DECAYS = tuple(wd for wd in atlas.ONE_KNOB["weight_decay"] if wd != FineTuneConfig().weight_decay)  # besides 0.01


@claim("05.accuracy_equivalent", """On all 1616 messages, seed by seed, weight decay 0 and 0.1 keep models
       equivalent to the default 0.01 within ±1 point (decay 0 keeps exactly the same accuracy on every shared
       seed); 3 seeds can't tell 0.3 and 1.0 apart from it.""")
def _decay_accuracy(book):
    out = [expect(compare(book, {"weight_decay": wd}, {}), verdict, f"decay {wd:g} against 0.01")
           for wd, verdict in ((0.0, "equivalent"), (0.1, "equivalent"), (0.3, CANT_TELL), (1.0, CANT_TELL))]
    same = compare(book, {"weight_decay": 0.0}, {})
    return out + [(same.paired >= 3 and same.interval == (0.0, 0.0),
                   f"decay 0 against 0.01, seed by seed on {same.paired} seeds: {same.interval}")]


@claim("05.shrinks_weights", """What decay does change is the size of the weights: without it they grow on every
       seed, at 1.0 they shrink on every seed, and the stronger the decay the less they grow.""")
def _decay_weights(book):
    out = [(all(weight_growth(r) > 0 for r in runs(book, weight_decay=0.0)), "decay 0: the norm grows on every seed"),
           (all(weight_growth(r) < 0 for r in runs(book, weight_decay=1.0)),
            "decay 1.0: the norm shrinks on every seed")]
    for a, b in zip(DECAYS, DECAYS[1:]):
        out.append(expect(compare(book, {"weight_decay": a}, {"weight_decay": b}, weight_growth, "weight-norm change"),
                          "higher", f"decay {a:g} against {b:g}"))
    return out


@claim("05.slow_pull", """Decay is slow at fine-tuning learning rates: each step shrinks a decayed weight by the
       fraction learning rate x decay, so even decay 1.0 shrinks the weights by only a few percent over the run,
       no more than that product summed over the steps predicts.""")
def _slow_pull(book):
    out = []
    for run in runs(book, weight_decay=1.0):
        norms = [h["weight_norm"] for h in run.history]
        shrink = 1 - norms[-1] / norms[0]
        predicted = 1 - math.exp(-1.0 * sum(run.learning_rates))
        out.append((0.5 * predicted < shrink <= predicted < 0.1,
                    f"seed {run.config.seed}: shrank {shrink:.1%}, lr x decay summed over the steps predicts "
                    f"at most {predicted:.1%}"))
    return out


# ------------------------------------------------------------------------------------------------ 06 schedules
@claim("06.default_rate_cant_tell", """At the default learning rate (5e-4), no schedule differs from the default,
       linear with 10% warmup: 3 seeds can't tell cosine, constant or constant with warmup apart from it, nor
       linear with any warmup from 0 to 30%; polynomial, linear under another name, is equivalent to it. Yet every
       other schedule's and warmup's mean lies below the default's, and the intervals of cosine, constant and constant
       with warmup lie wholly below zero, none reaching 5 points below.""")
def _schedules_cant_tell(book):
    out = []
    for s in ("cosine", "constant", "constant_with_warmup"):
        judged = compare(book, {"lr_scheduler_type": s}, {})
        low, high = judged.interval
        out += [expect(judged, CANT_TELL, f"{s} against linear"),
                (high < 0 < low + 0.05 and judged.means[0] < judged.means[1],
                 f"{s}: mean {judged.means[0]:.1%} against {judged.means[1]:.1%}, interval {low:+.1%} to {high:+.1%}")]
    out.append(expect(compare(book, {"lr_scheduler_type": "polynomial"}, {}), "equivalent", "polynomial against linear"))
    for w in (0.0, 0.05, 0.2, 0.3):
        judged = compare(book, {"warmup_ratio": w}, {})
        out += [expect(judged, CANT_TELL, f"warmup {w:g} against 0.1"),
                (judged.centre < 0 and judged.means[0] < judged.means[1],
                 f"warmup {w:g}: mean {judged.means[0]:.1%} against {judged.means[1]:.1%}, seed by seed "
                 f"{judged.centre:+.1%}")]
    return out


@claim("06.polynomial_is_linear", """`polynomial`, at its default power 1, is linear decay under another name: it
       plans the same rates as linear (within the 1e-7 it ends at), and on every seed both were recorded with its kept
       model scores exactly what linear's does. Yet constant and constant_with_warmup keep worse models than polynomial
       by the rule while 3 seeds can't tell them from linear: polynomial lacks two of linear's five seeds, among them
       the lowest.""")
def _polynomial(book):
    linear = {r.config.seed: r for r in runs(book)}
    poly = runs(book, lr_scheduler_type="polynomial")
    shared = [r for r in poly if r.config.seed in linear]
    rate_gap = max(abs(a["learning_rate"] - b["learning_rate"])
                   for r in shared for a, b in zip(r.history, linear[r.config.seed].history, strict=True))
    same = [kept_accuracy(r) == kept_accuracy(linear[r.config.seed]) for r in shared]
    lowest = min(linear.values(), key=kept_accuracy).config.seed
    return [(len(shared) == len(poly) and rate_gap <= 1e-7, f"largest gap between the planned rates: {rate_gap:.1e}"),
            (all(same), f"the same kept accuracy as linear on seeds {sorted(r.config.seed for r in shared)}: {same}"),
            (lowest not in {r.config.seed for r in poly},
             f"linear's lowest seed ({lowest}) is not among polynomial's")] + [
        expect(compare(book, {"lr_scheduler_type": k}, {"lr_scheduler_type": "polynomial"}), "lower",
               f"{k} against polynomial") for k in ("constant", "constant_with_warmup")]


@claim("06.high_rate_needs_one", """At 2e-3, four times the default, a constant rate without warmup keeps a worse
       model than linear decay with warmup. Either part alone recovers most of it: warmup without decay, and decay
       without warmup, each keep a better model than neither, and three seeds cannot tell them from both, though two
       of each one's three seeds sit below both's range.""")
def _high_rate(book):
    found = {name: runs(book, **changes) for name, changes in atlas.SCHEDULE_PARTS.items()}
    out = [expect(compare_runs(found["neither"], found["both"]), "lower", "neither against both")]
    floor = min(kept_accuracy(r) for r in found["both"])
    for part in ("warmup only", "decay only"):
        out.append(expect(compare_runs(found[part], found["neither"]), "higher", f"{part} against neither"))
        out.append(expect(compare_runs(found[part], found["both"]), "can't tell", f"{part} against both"))
        below = sum(kept_accuracy(r) < floor for r in found[part])
        out.append((below == 2, f"{part}: {below} of its seeds below both's lowest ({floor:.1%})"))
    return out


NEW_SCHEDULES = ("warmup_stable_decay", "cosine_with_min_lr")
SCHEDULE_RATES = tuple(atlas.PRACTICE_GRIDS["schedules"][1]["learning_rate"])


@claim("06.new_schedules", """The 2025-26 schedules, warmup-stable-decay (10% warmup, hold, decay over the last 20%)
       and cosine with a floor (10% of the peak), at the default rate 5e-4 and at 2e-3: none differs from linear with
       warmup by the rule, and 3 seeds can't tell any of them apart from it. At 5e-4 both intervals lie below zero;
       at 2e-3 they run from 3 to 5.5 points below zero up to 1.5 to 3 points above.""")
def _new_schedules(book):
    out = []
    for lr in SCHEDULE_RATES:
        for s in NEW_SCHEDULES:
            judged = compare(book, {"lr_scheduler_type": s, "learning_rate": lr}, {"learning_rate": lr})
            low, high = judged.interval
            wanted = high < 0 if lr == 5e-4 else (-0.056 < low < -0.029 and 0.014 < high < 0.031)
            out += [expect(judged, CANT_TELL, f"{s} against linear at {lr:g}"),
                    (wanted, f"{s} at {lr:g}: interval {low:+.1%} to {high:+.1%}")]
    return out


# ------------------------------------------------------------------------------------------------ 07 freezing
def freezing(task: str = "sentiment", **changes: Any) -> dict[str, Any]:
    return {**atlas.FREEZING, "task": task, **changes}


@claim("07.cost", """Freezing saves compute: the trainable weights fall from 22.7 M (nothing frozen) to 0.15 M
       (the head alone), and every recorded epoch with 4 layers frozen took less than half the time of any epoch
       with nothing frozen.""")
def _freezing_cost(book):
    found = {n: runs(book, **freezing(freeze_layers=n, learning_rate=1e-4)) for n in atlas.FREEZE_LEVELS}
    counts = [found[n][0].meta["trainable_parameters"] for n in atlas.FREEZE_LEVELS]
    seconds = {n: [per_epoch_seconds(r) for lr in atlas.FREEZE_RATES
                   for r in runs(book, **freezing(freeze_layers=n, learning_rate=lr))] for n in (4, 0)}
    slowest_4, fastest_0 = max(seconds[4]), min(seconds[0])
    return [(counts == sorted(counts, reverse=True) and counts[0] > 20e6 and counts[-1] < 0.2e6,
             "trainable weights at 0, 2, 4, 6 frozen: " + ", ".join(f"{c / 1e6:.2f} M" for c in counts)),
            (slowest_4 < fastest_0 / 2, f"seconds per epoch: slowest with 4 frozen {slowest_4:.1f}, "
                                        f"fastest with none frozen {fastest_0:.1f}")]


@claim("07.rate_depends", """The best learning rate depends on how much trains. With nothing frozen, 2e-3 wrecks the
       model on every seed (it keeps about 50%, what always guessing the commonest label gets) and 1e-4 keeps a
       better one; with 4 layers frozen the order flips: 2e-3 keeps a better model than 1e-4.""")
def _rate_depends(book):
    found = runs(book, **freezing(freeze_layers=0, learning_rate=2e-3))
    wrecked, chance = [kept_accuracy(r) for r in found], found[0].meta["chance_accuracy"]
    return [(max(wrecked) < chance + 0.05, f"nothing frozen at 2e-3: kept {', '.join(f'{a:.1%}' for a in wrecked)} "
                                            f"(always guessing the commonest label: {chance:.1%})"),
            expect(compare(book, freezing(freeze_layers=0, learning_rate=1e-4),
                           freezing(freeze_layers=0, learning_rate=2e-3)), "higher",
                   "nothing frozen: 1e-4 against 2e-3"),
            expect(compare(book, freezing(freeze_layers=4, learning_rate=2e-3),
                           freezing(freeze_layers=4, learning_rate=1e-4)), "higher", "4 frozen: 2e-3 against 1e-4")]


@claim("07.retuned_levels_cant_tell", """Each at its own best rate, with 3 seeds we can't tell training everything
       or the top 4 layers apart from training the top 2 on 512 sentiment messages: unfreezing more layers shows no
       gain by the rule here, only cost.""")
def _retuned(book):
    best = {n: tuned(book, atlas.TOP4_RATES if n == 4 else atlas.FREEZE_RATES, **freezing(freeze_layers=n))
            for n in (0, 2, 4)}
    return [expect(compare_runs(best[n][1], best[4][1]), "can't tell",
                   f"{n} frozen at {best[n][0]:g} against 4 frozen at {best[4][0]:g}") for n in (0, 2)]


@claim("07.head_only", """The head alone, reading the first token as the architecture's head does, keeps a worse
       model than training the top 2 layers, even at its own best rate. Reading the tokens as MiniLM was
       pretrained to be read, their mean, the head alone does better on every seed, yet still worse than training
       the top 2 layers.""")
def _head_only(book):
    cls_lr, cls = tuned(book, atlas.HEAD_CLS_RATES, **freezing(freeze_layers=6))
    mean_lr, mean = tuned(book, atlas.HEAD_RATES, **freezing(freeze_layers=6, pooling="mean"))
    top_lr, top = tuned(book, atlas.TOP4_RATES, **freezing(freeze_layers=4))
    return [expect(compare_runs(cls, top), "lower",
                   f"head only, first token, at {cls_lr:g} against 4 frozen at {top_lr:g}"),
            expect(compare_runs(mean, cls), "higher",
                   f"head only: mean at {mean_lr:g} against first token at {cls_lr:g}"),
            expect(compare_runs(mean, top), "lower", f"head only, mean, at {mean_lr:g} against 4 frozen at {top_lr:g}")]


@claim("07.pretraining", """Pretraining is worth more than any knob: from random weights, at its own best rate, the
       same architecture keeps a model more than 10 points worse than from the pretrained weights, on every seed.""")
def _pretraining(book):
    scratch_lr, scratch = tuned(book, atlas.SCRATCH_RATES, **freezing(freeze_layers=0, from_scratch=True))
    pre_lr, pre = tuned(book, atlas.FREEZE_RATES, **freezing(freeze_layers=0))
    gap = min(kept_accuracy(r) for r in pre) - max(kept_accuracy(r) for r in scratch)
    return [expect(compare_runs(scratch, pre), "lower",
                   f"from scratch at {scratch_lr:g} against pretrained at {pre_lr:g}"),
            (gap > 0.10, f"the worst pretrained seed beats the best from-scratch seed by {gap:.1%}")]


@claim("07.topic_head", """On the topic task too, the head alone reading the mean of the tokens keeps a better model
       than reading the first token, each at its own best rate, on every seed; and from frozen features alone it
       gets more than 80% of the validation messages right, where guessing the commonest topic gets about 20%.""")
def _topic_head(book):
    cls_lr, cls = tuned(book, atlas.HEAD_RATES, **freezing("topic", freeze_layers=6))
    mean_lr, mean = tuned(book, atlas.HEAD_RATES, **freezing("topic", freeze_layers=6, pooling="mean"))
    chance = mean[0].meta["chance_accuracy"]
    low = min(kept_accuracy(r) for r in mean)
    return [expect(compare_runs(mean, cls), "higher",
                   f"topic, head only: mean at {mean_lr:g} against first token at {cls_lr:g}"),
            (low > 0.8 and chance < 0.25,
             f"topic, head only, mean: at least {low:.1%} (guessing the commonest topic: {chance:.1%})")]


@claim("07.topic_retuned", """On topics too the rate must be re-tuned: with nothing frozen 2e-3 keeps a worse model
       than 5e-4; and each at its own best rate, 3 seeds can't tell 0 or 2 frozen layers apart from 4.""")
def _topic_retuned(book):
    best = {n: tuned(book, atlas.FREEZE_RATES, **freezing("topic", freeze_layers=n)) for n in (0, 2, 4)}
    out = [expect(compare(book, freezing("topic", freeze_layers=0, learning_rate=2e-3),
                          freezing("topic", freeze_layers=0, learning_rate=5e-4)), "lower",
                  "topic, nothing frozen: 2e-3 against 5e-4")]
    out += [expect(compare_runs(best[n][1], best[4][1]), "can't tell",
                   f"topic: {n} frozen at {best[n][0]:g} against 4 frozen at {best[4][0]:g}") for n in (0, 2)]
    return out


@claim("07.closer_task_needs_less", """The closer the task is to pretraining, the less needs to train: reading the
       mean, the head alone stays below training the top 2 layers on both tasks, but the gap on topics is less than half
       the gap on sentiment (each setting at its own best rate, mean accuracy over the seeds).""")
def _closer_task(book):
    out, gaps = [], {}
    for task in ("sentiment", "topic"):
        head_lr, head = tuned(book, atlas.HEAD_RATES, **freezing(task, freeze_layers=6, pooling="mean"))
        top_lr, top = tuned(book, atlas.TOP4_RATES if task == "sentiment" else atlas.FREEZE_RATES,
                            **freezing(task, freeze_layers=4))
        gaps[task] = mean_of(top) - mean_of(head)
        out.append(expect(compare_runs(head, top), "lower",
                          f"{task}: head only (mean) at {head_lr:g} against 4 frozen at {top_lr:g}"))
    out.append((gaps["topic"] < gaps["sentiment"] / 2,
                f"gap to training the top 2 layers: sentiment {gaps['sentiment']:.1%}, topic {gaps['topic']:.1%}"))
    return out


# ------------------------------------------------------------------------------------------------ 08 search
@claim("08.importances_need_trials", """Importances from a few trials are noise: studies of 3 recorded runs, drawn at
       random, name the most important setting of all the recorded runs at most a third of the time; studies of 30
       at least three times in four. Below 30 finished trials the importance picture draws no bars.""")
def _importances_need_trials(book):
    from . import study_noise

    trials = study_noise.recorded_trials(book)
    if len(trials) < 30:
        raise MissingEvidence(f"{len(trials)} recorded runs that differ from the defaults in searched settings only, "
                              "needs 30")
    agree = study_noise.importance_agreement(trials, [3, 30], studies=40)
    return [(agree[3] <= 1 / 3, f"studies of 3 agree {agree[3]:.0%} of the time"),
            (agree[30] >= 0.75, f"studies of 30 agree {agree[30]:.0%} of the time"),
            (study_noise.MIN_FINISHED == 30, f"the picture's threshold: {study_noise.MIN_FINISHED} finished trials")]


@claim("08.defaults_hold", """A search has to beat good defaults by more than the seeds' spread: of all the
       settings recorded on the defaults' data, none keeps a better model than the defaults by the rule.""")
def _defaults_hold(book):
    settings = comparable_settings(book)
    defaults = runs(book)
    verdicts_ = {name: compare_runs(group, defaults).verdict for name, group in settings.items()
                 if name != "the defaults"}
    counts = {v: sum(1 for x in verdicts_.values() if x == v) for v in ("higher", "can't tell", "equivalent", "lower")}
    better = [name for name, v in verdicts_.items() if v == "higher"]
    return [(len(verdicts_) >= 20, f"{len(verdicts_)} recorded settings on the same data, each with 3 or more seeds"),
            (not better, f"against the defaults: {counts['higher']} higher, {counts[CANT_TELL]} can't tell, "
                         f"{counts['equivalent']} equivalent, {counts['lower']} lower"
                         + (f" (higher: {'; '.join(better)})" if better else ""))]


# ------------------------------------------------------------------------------------------------ 09 LLMs and LoRA
def llm(**changes: Any) -> dict[str, Any]:
    """The settings of the LLM's preset (`llm_lora`) with `changes`."""
    return {**PRESETS["llm_lora"], **changes}


def _percents(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.1%}" for v in values)


@claim("09.lifts_zero_shot", """Fine-tuning adds what the zero-shot model lacks: every seed starts from the same
       untouched model (61.7% of the 128 validation messages), and at the preset (LoRA rank 8, learning rate 2e-3,
       32 steps) all 5 seeds keep a model more than 20 points above it.""")
def _lifts_zero_shot(book):
    found = runs(book, **llm())
    starts = sorted({zero_shot(r) for r in found})
    kept = [kept_accuracy(r) for r in found]
    return [(len(starts) == 1 and len(found) >= 5,
             f"zero-shot accuracy of the {len(found)} seeds: {_percents(starts)}"),
            (min(kept) > max(starts) + 0.20, f"kept: {_percents(kept)}")]


@claim("09.adapters_want_larger_steps", """LoRA's adapters want a larger learning rate than full weights do: at every
       rank recorded (2, 8 and 32), 2e-3 keeps a better model than 1e-4, and at rank 8 a better one than 5e-4 too.""")
def _adapters_rate(book):
    out = [expect(compare(book, llm(lora_r=r, learning_rate=2e-3), llm(lora_r=r, learning_rate=1e-4)), "higher",
                  f"rank {r}: 2e-3 against 1e-4") for r in atlas.LORA_RANKS]
    out.append(expect(compare(book, llm(learning_rate=2e-3), llm(learning_rate=5e-4)), "higher",
                      "rank 8: 2e-3 against 5e-4"))
    return out


@claim("09.lora_rate_peaks", """LoRA's best rate is inside the recorded rates, not past them: at every rank the best
       mean of the five rates (1e-4 to 1e-2) is 2e-3 or 5e-3, and at 1e-2 the seeds scatter more widely than at
       2e-3.""")
def _lora_peak(book):
    out = []
    for r in atlas.LORA_RANKS:
        best, _ = tuned(book, atlas.LLM_RATES, **llm(lora_r=r))
        spread = {lr: accuracy_range(runs(book, **llm(lora_r=r, learning_rate=lr))) for lr in (2e-3, 1e-2)}
        width = {lr: high - low for lr, (low, high) in spread.items()}
        out += [(best in (2e-3, 5e-3), f"rank {r}: best mean at {best:g}"),
                (width[1e-2] > width[2e-3], f"rank {r}: seeds span {width[1e-2]:.1%} at 1e-2, {width[2e-3]:.1%} at 2e-3")]
    return out


@claim("09.rank_cant_tell", """At 2e-3 three seeds can't tell rank 2 or rank 32 apart from rank 8, though rank 32
       trains 16 times as many weights as rank 2: on this task a rank's effect, if any, is smaller than the seeds'.""")
def _rank(book):
    found = {r: runs(book, **llm(lora_r=r, learning_rate=2e-3)) for r in atlas.LORA_RANKS}
    weights = {r: found[r][0].meta["trainable_parameters"] for r in atlas.LORA_RANKS}
    out = [expect(compare_runs(found[r], found[8]), "can't tell", f"rank {r} against rank 8, both at 2e-3")
           for r in (2, 32)]
    out.append((weights[32] == 16 * weights[2], f"trainable weights: {weights}"))
    return out


@claim("09.lora_against_unfrozen", """Each at its own best recorded rate, three seeds can't tell LoRA in the top 10
       blocks apart from unfreezing those blocks' own weights, while LoRA trains more than 100 times fewer weights
       (0.31 M against 35.4 M); two of the three unfrozen seeds beat every LoRA seed, and the interval of the
       difference still allows the unfrozen blocks several points more.""")
def _lora_unfrozen(book):
    lora_rate, lora = tuned(book, atlas.LLM_RATES, **llm())
    top_rate, top = tuned(book, atlas.UNFROZEN_RATES, **llm(lora_r=0))
    a, b = lora[0].meta["trainable_parameters"], top[0].meta["trainable_parameters"]
    judged = compare_runs(lora, top)
    return [expect(judged, CANT_TELL, f"LoRA at {lora_rate:g} against unfrozen at {top_rate:g}"),
            (judged.interval[0] < -0.03, f"the unfrozen blocks may be up to {-judged.interval[0]:.1%} better "
                                         f"(the {judged.confidence:.0%} interval's end)"),
            (sum(kept_accuracy(r) > judged.first[1] for r in top) == 2,
             f"unfrozen seeds above LoRA's best seed ({judged.first[1]:.1%}): "
             f"{sum(kept_accuracy(r) > judged.first[1] for r in top)} of {len(top)}"),
            (b > 100 * a, f"trainable weights: LoRA {a / 1e6:.2f} M, unfrozen blocks {b / 1e6:.1f} M")]


@claim("09.accumulation", """Gradient accumulation buys the effective batch: batch 4 with 2 batches accumulated takes
       the same 32 optimizer steps on the same schedule as batch 8; three seeds can't tell the models it keeps apart
       from batch 8's.""")
def _accumulation(book):
    accumulated = runs(book, **llm(per_device_train_batch_size=4, gradient_accumulation_steps=2))
    plain = runs(book, **llm())
    steps = {r.meta["total_steps"] for r in accumulated + plain}
    return [(steps == {32}, f"optimizer steps: {sorted(steps)}"),
            expect(compare_runs(accumulated, plain), "can't tell", "batch 4 x 2 against batch 8")]


@claim("09.forgetting", """These short runs cost the unfrozen blocks and full fine-tuning none of their English: at
       each one's best rate the next-token loss on 104 everyday sentences is lower after fine-tuning than before
       (5.09 nats), on every seed, and so it is for LoRA at 2e-3. LoRA at 5e-3, which three seeds can't tell from
       2e-3 on the task, makes it worse on every seed, and 1e-2 worse still.""")
def _forgetting(book):
    out = []
    for name, changes, rates in (("unfrozen blocks", llm(lora_r=0), atlas.UNFROZEN_RATES),
                                 ("everything", llm(lora_r=0, freeze_layers=0), atlas.FULL_LLM_RATES)):
        rate, found = tuned(book, rates, **changes)
        moved = [forgetting(r) for r in found]
        out.append((max(moved) < 0, f"{name} at {rate:g}: {', '.join(f'{m:+.3f}' for m in moved)} nats "
                                    f"(before: {found[0].meta['lm_loss_before']:.2f})"))
    moved = {lr: [forgetting(r) for r in runs(book, **llm(learning_rate=lr))] for lr in (2e-3, 5e-3, 1e-2)}
    out += [(max(moved[2e-3]) < 0, f"LoRA at 2e-3: {', '.join(f'{m:+.3f}' for m in moved[2e-3])} nats"),
            (min(moved[5e-3]) > 0, f"LoRA at 5e-3: {', '.join(f'{m:+.3f}' for m in moved[5e-3])} nats"),
            (min(moved[1e-2]) > max(moved[5e-3]) or sum(moved[1e-2]) > sum(moved[5e-3]),
             f"LoRA at 1e-2: {', '.join(f'{m:+.3f}' for m in moved[1e-2])} nats"),
            expect(compare(book, llm(learning_rate=5e-3), llm(learning_rate=2e-3)), CANT_TELL,
                   "LoRA accuracy, 5e-3 against 2e-3")]
    return out


@claim("09.full_keeps_more", """Training every weight, at its own best of three recorded rates (3.2e-5; 1e-5 keeps a
       worse model, and three seeds can't tell 1e-4 from it), keeps a better model than LoRA at its best rate on
       this task (the ranges do not overlap), and three seeds can't tell it from unfreezing the top 10 blocks, for
       more than 400 times LoRA's trainable weights.""")
def _full(book):
    full_rate, full = tuned(book, atlas.FULL_LLM_RATES, **llm(lora_r=0, freeze_layers=0))
    lora_rate, lora = tuned(book, atlas.LLM_RATES, **llm())
    top_rate, top = tuned(book, atlas.UNFROZEN_RATES, **llm(lora_r=0))
    a, b = lora[0].meta["trainable_parameters"], full[0].meta["trainable_parameters"]
    return [(full_rate == 3.2e-5, f"full fine-tuning: best mean at {full_rate:g}"),
            expect(compare(book, llm(lora_r=0, freeze_layers=0, learning_rate=1e-5), llm(lora_r=0, freeze_layers=0,
                                                                                       learning_rate=full_rate)),
                   "lower", "everything at 1e-5 against its best"),
            expect(compare(book, llm(lora_r=0, freeze_layers=0, learning_rate=1e-4), llm(lora_r=0, freeze_layers=0,
                                                                                       learning_rate=full_rate)),
                   CANT_TELL, "everything at 1e-4 against its best"),
            expect(compare_runs(full, lora), "higher", f"everything at {full_rate:g} against LoRA at {lora_rate:g}"),
            expect(compare_runs(full, top), CANT_TELL, f"everything at {full_rate:g} against unfrozen blocks at "
                                                       f"{top_rate:g}"),
            (b > 400 * a, f"trainable weights: everything {b / 1e6:.1f} M, LoRA {a / 1e6:.2f} M")]


@claim("09.rate_ratio", """LoRA wants a far larger rate than full fine-tuning: its best recorded rate is more than
       100 times full fine-tuning's, and counting every rate three seeds can't tell from each one's best, still
       20 times or more.""")
def _rate_ratio(book):
    full_changes, lora_changes = llm(lora_r=0, freeze_layers=0), llm()
    full_rate, full = tuned(book, atlas.FULL_LLM_RATES, **full_changes)
    lora_rate, lora = tuned(book, atlas.LLM_RATES, **lora_changes)
    near = lambda rates, changes, best: [lr for lr in rates if lr == best[0] or not compare(  # noqa: E731
        book, {**changes, "learning_rate": lr}, {**changes, "learning_rate": best[0]}).real]
    full_near = near(atlas.FULL_LLM_RATES, full_changes, (full_rate,))
    lora_near = near(atlas.LLM_RATES, lora_changes, (lora_rate,))
    lowest = min(lora_near) / max(full_near)
    return [(lora_rate / full_rate > 100, f"best rates: LoRA {lora_rate:g}, everything {full_rate:g} "
                                          f"(ratio {lora_rate / full_rate:.0f})"),
            (lowest >= 20, f"rates that can't be told from the best: LoRA {lora_near}, everything {full_near}; "
                           f"the smallest ratio {lowest:.0f}")]


@claim("09.all_linear", """Without rsLoRA, LoRA on every linear layer of the top 10 blocks (2.65 times the weights
       of the attention projections alone) keeps a better model than attention only at 1e-4 and at 5e-4, at rank 8
       and at rank 32; at 2e-3 three seeds can't tell the two apart. On every linear layer three seeds can't tell
       5e-4, 16 times full fine-tuning's best rate, from 2e-3 at either rank, and 1e-4 keeps a worse model; on
       attention only, 5e-4 keeps a worse model than 2e-3 (claim 09.adapters_want_larger_steps).""")
def _all_linear(book):
    every, attention = atlas.LORA_TARGETS
    full_rate, _ = tuned(book, atlas.FULL_LLM_RATES, **llm(lora_r=0, freeze_layers=0))
    out = []
    for r in (8, 32):
        at = {lr: llm(lora_r=r, lora_target_modules=every, learning_rate=lr) for lr in atlas.TARGET_RATES}
        out += [expect(compare(book, at[lr], {**at[lr], "lora_target_modules": attention}),
                       "higher" if lr < 2e-3 else CANT_TELL, f"rank {r}, {lr:g}: every linear layer against attention")
                for lr in atlas.TARGET_RATES]
        out += [expect(compare(book, at[5e-4], at[2e-3]), CANT_TELL, f"rank {r}, every linear layer: 5e-4 against 2e-3"),
                expect(compare(book, at[1e-4], at[5e-4]), "lower", f"rank {r}, every linear layer: 1e-4 against 5e-4")]
    weights = {t: runs(book, **llm(lora_target_modules=t))[0].meta["trainable_parameters"] for t in (every, attention)}
    out += [(round(weights[every] / weights[attention], 2) == 2.65,
             f"trainable weights at rank 8: every linear layer {weights[every] / 1e6:.2f} M, "
             f"attention {weights[attention] / 1e6:.2f} M"),
            (round(5e-4 / full_rate) == 16, f"5e-4 against full fine-tuning's best rate {full_rate:g}: "
                                            f"{5e-4 / full_rate:.1f} times")]
    return out


@claim("09.rslora", """rsLoRA acts like a larger rate: on attention only it keeps a better model than plain LoRA at
       1e-4 and at 5e-4, at rank 8 and at rank 32; at 2e-3, where plain LoRA has learnt the task, three seeds can't
       tell it from plain LoRA at either rank, on either set of layers.""")
def _rslora(book):
    every, attention = atlas.LORA_TARGETS
    cases = [(attention, "attention", lr) for lr in atlas.TARGET_RATES] + [(every, "every linear layer", 2e-3)]
    out = []
    for r in (8, 32):
        for targets, name, lr in cases:
            plain = llm(lora_r=r, lora_target_modules=targets, learning_rate=lr)
            out.append(expect(compare(book, {**plain, "use_rslora": True}, plain),
                              "higher" if lr < 2e-3 else CANT_TELL, f"rank {r}, {lr:g}, {name}: rsLoRA against plain"))
    return out


# ------------------------------------------------------------------------------------------------ 10 forgetting
SIMILARITY = "similarity"


def _similar(book, first: dict, second: dict) -> Comparison:
    return compare(book, first, second, similarity, SIMILARITY)


@claim("10.untouched", """Before fine-tuning MiniLM scores about 0.91 on the similarity pairs; at learning rate
       1e-5 it still does (within 0.02 on every seed), and it has not learnt the task either.""")
def _untouched(book):
    found = runs(book, learning_rate=1e-5)
    before = found[0].meta["similarity_before"]
    after = [similarity(r) for r in found]
    return [(abs(before - 0.91) < 0.01, f"before fine-tuning: {before:.3f}"),
            (all(abs(a - before) <= 0.02 for a in after), f"after, at 1e-5: {', '.join(f'{a:.3f}' for a in after)}"),
            (set(verdicts(found)) == {"underfitting"}, f"verdicts at 1e-5: {', '.join(verdicts(found))}")]


@claim("10.lr_forgets", """The higher the learning rate, the more the model forgets, though not at every step:
       1e-4 keeps more similarity than 2e-4, 2e-4 more than 5e-4, and 1e-3 more than 2e-3, on every seed; with 3
       seeds we can't tell 5e-4 from 1e-3.""")
def _lr_forgets(book):
    pairs = ((1e-4, 2e-4), (2e-4, 5e-4), (1e-3, 2e-3))
    return [expect(_similar(book, {"learning_rate": a}, {"learning_rate": b}), "higher", f"lr {a:g} against {b:g}")
            for a, b in pairs]


@claim("10.accuracy_cant_tell_forgetting_can", """Settings the accuracy cannot tell apart can differ in what they
       forget: with 3 seeds we can't tell learning rate 2e-4 or batch 64 from the defaults on accuracy, and both keep
       more similarity than the defaults.""")
def _free_choice(book):
    out = []
    for name, changes in (("lr 2e-4", {"learning_rate": 2e-4}), ("batch 64", {"per_device_train_batch_size": 64})):
        out.append(expect(compare(book, changes, {}), "can't tell", f"{name} against the defaults, accuracy"))
        out.append(expect(_similar(book, changes, {}), "higher", f"{name} against the defaults, similarity"))
    return out


@claim("10.steps_forget", """More steps forget more, but the first steps forget the most: batch 4 (808 steps)
       forgets more than batch 16 (202), and half an epoch less than two; after two epochs the rule sees no
       further cost: with 3 seeds we can't tell 3 or 5 epochs from 2 on similarity.""")
def _steps_forget(book):
    return [expect(_similar(book, {"per_device_train_batch_size": 4}, {}), "lower", "batch 4 against 16"),
            expect(_similar(book, {"num_train_epochs": 0.5}, {}), "higher", "0.5 epoch against 2")] + [
        expect(_similar(book, {"num_train_epochs": e}, {}), "can't tell", f"{e} epochs against 2")
        for e in (3, 5)]


@claim("10.less_forgetting_costs", """Forgetting less is not free: half an epoch and batch 128 keep more similarity
       than the defaults but a less accurate model. With 3 seeds we can't tell freezing only 2 or 3 layers from the
       defaults (4 frozen) on accuracy, but both forget more; freezing 5 or all 6 forgets less, and learns less too.""")
def _less_forgetting_costs(book):
    out = []
    for name, changes, accuracy, kept in (("half an epoch", {"num_train_epochs": 0.5}, "lower", "higher"),
                                          ("batch 128", {"per_device_train_batch_size": 128}, "lower", "higher"),
                                          ("2 frozen", {"freeze_layers": 2}, "can't tell", "lower"),
                                          ("3 frozen", {"freeze_layers": 3}, "can't tell", "lower"),
                                          ("5 frozen", {"freeze_layers": 5}, "lower", "higher"),
                                          ("6 frozen", {"freeze_layers": 6}, "lower", "higher")):
        out.append(expect(compare(book, changes, {}), accuracy, f"{name} against the defaults, accuracy"))
        out.append(expect(_similar(book, changes, {}), kept, f"{name} against the defaults, similarity"))
    return out


@claim("10.topic_forgets_less", """The topic task, closer to what MiniLM was pretrained for, forgets less than the
       sentiment task at the same settings.""")
def _topic(book):
    return [expect(_similar(book, {"task": "topic"}, {}), "higher", "topic against sentiment, the defaults")]


# ------------------------------------------------------------------------------------------------ 11 errors
def _harder(book, phenomenon: str, than: str = "plain", **changes) -> Comparison:
    """The same runs' error rates on two kinds of message, by the one rule (each seed gives one of each)."""
    found = runs(book, **changes)
    return compare_values([error_rate(phenomenon)(r) for r in found], [error_rate(than)(r) for r in found],
                          f"error rate ({phenomenon} against {than})")


@claim("11.sentiment_errors", """For sentiment, the tuned model has a higher error rate on negations and mixed
       messages than on plain ones, on every seed.""")
def _sentiment_errors(book):
    return [expect(_harder(book, kind), "higher", f"{kind} against plain") for kind in ("negation", "mixed")]


@claim("11.topic_errors", """For topics it is typos: the tuned topic model has a higher error rate on messages
       with typos than on plain ones, on every seed, while for the sentiment model messages with typos have a lower
       error rate than plain ones, by the rule.""")
def _topic_errors(book):
    return [expect(_harder(book, "typo", task="topic"), "higher", "topic: typo against plain"),
            expect(_harder(book, "typo"), "lower", "sentiment: typo against plain")]


@claim("11.too_few_to_say", """The validation split has only 4 sarcastic messages: too few for any claim about
       sarcasm, whatever the error rate looks like.""")
def _sarcasm_too_few(book):
    total = (runs(book)[0].kept.get("errors_by_phenomenon") or {}).get("sarcasm", (0, 0))[1]
    return [(total < 10, f"sarcastic messages in the validation split: {total}")]


# ------------------------------------------------------------------------------------------------ 12 your own data
# Checked on the example file's own atlas (`atlas.example_atlas_dir()`), whatever `book` is: that is the data the
# lesson is about. The series' claims (00 to 11) are then checked on it by the same machinery as on the bundled runs.
SERIES = tuple(f"{n:02d}" for n in range(12))  # the lessons whose claims were made on the bundled data


def example_book():
    """The runs recorded on the shipped example file (by its bytes), as if on the bundled data."""
    from .data import bundled_data_path

    return atlas.load(folder=atlas.example_atlas_dir()).on_file(bundled_data_path(atlas.EXAMPLE_DATA))


_SERIES_VERDICTS: dict[tuple, tuple[dict, dict]] = {}


def series_on(book) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """The series' claims (lessons 00 to 11) on `book`, an atlas of other data ({id: (verdict, why)},
    `verdicts_on`), and on the bundled atlas cut down to the settings `book` recorded. Computed once per book."""
    key = (len(book), frozenset(book._by_key), frozenset(r["meta"].get("data_hash") for records in
                                                         book._by_key.values() for r in records))
    if key not in _SERIES_VERDICTS:
        _SERIES_VERDICTS[key] = (verdicts_on(book, SERIES), verdicts_on(atlas.load().settings_of(book), SERIES))
    return _SERIES_VERDICTS[key]


@claim("12.saw_this_file", """The example's recorded runs say which data they saw: every one of them trained on the
       very bytes of the shipped file (its content hash), the defaults at 5 seeds and every other setting at 3.""")
def _saw_this_file(book):
    from .data import bundled_data_path
    from .data_files import file_hash

    recorded, mine = atlas.load(folder=atlas.example_atlas_dir()), example_book()
    seeds = {config_key(c): len(mine.runs(c)) for c in mine.configs()}
    defaults = seeds.pop(config_key(FineTuneConfig()), 0)
    return [(len(mine) == len(recorded) > 0, f"{len(mine)} of {len(recorded)} recorded runs trained on the bytes of "
                                             f"{atlas.EXAMPLE_DATA} (hash {file_hash(bundled_data_path(atlas.EXAMPLE_DATA))})"),
            (defaults == 5 and set(seeds.values()) == {3},
             f"the defaults: {defaults} seeds; {len(seeds)} other settings: {sorted(set(seeds.values()))} seeds")]


@claim("12.one_ticket", """The validation split of the example holds 27 tickets, so one ticket is 3.7 points of
       accuracy and every kept accuracy is a whole number of tickets; the defaults' 5 seeds keep 25 or 26 of the 27.""")
def _one_ticket(book):
    tickets = example_book()
    every = [r for c in {config_key(c): c for c in tickets.configs()}.values() for r in tickets.runs(c)]
    sizes = {r.meta["num_validation"] for r in every}
    whole = all(abs(kept_accuracy(r) * 27 - round(kept_accuracy(r) * 27)) < 1e-4 for r in every)  # stored to 7 digits
    kept = sorted(round(kept_accuracy(r) * 27) for r in runs(tickets))
    return [(sizes == {27}, f"validation tickets: {sorted(sizes)}; one ticket is {1 / 27:.1%}"),
            (whole, f"every one of {len(every)} kept accuracies is a whole number of tickets out of 27"),
            (len(kept) == 5 and set(kept) == {25, 26}, f"the defaults' seeds keep {', '.join(map(str, kept))} of 27")]


@claim("12.learning_rate", """On the tickets only the learning rate's extremes keep a worse model than the default
       5e-4: 1e-5 and 5e-3. With 3 seeds we can't tell 3.2e-5, 1e-4, 2e-4, 1e-3 or 2e-3 from it, and on 27 tickets
       nothing can be shown equivalent within ±1 point: one ticket is 3.7 points, so 2e-4, whose seeds keep 26 of 27
       each, is "can't tell" too. On the bundled messages 3.2e-5 and 1e-4 keep a worse model
       too (lesson 01); on 27 tickets the rule cannot see it: at 3.2e-5 one seed keeps 25 of 27 tickets, as many as
       the defaults' worst seed, while the other two keep 15 or fewer.""")
def _tickets_rate(book):
    tickets = example_book()
    expected = {1e-5: "lower", 3.2e-5: CANT_TELL, 1e-4: CANT_TELL, 2e-4: CANT_TELL, 1e-3: CANT_TELL,
                2e-3: CANT_TELL, 5e-3: "lower"}
    out = [expect(compare(tickets, {"learning_rate": lr}, {}), verdict, f"tickets: lr {lr:g} against 5e-4")
           for lr, verdict in expected.items()]
    at_2e4 = [round(kept_accuracy(r) * 27) for r in runs(tickets, learning_rate=2e-4)]
    out.append((at_2e4 == [26] * 3, f"tickets kept at 2e-4: {', '.join(map(str, at_2e4))} of 27"))
    low = sorted(round(kept_accuracy(r) * 27) for r in runs(tickets, learning_rate=3.2e-5))
    worst = min(round(kept_accuracy(r) * 27) for r in runs(tickets))
    return out + [expect(compare(atlas.load(), {"learning_rate": lr}, {}), "lower",
                         f"bundled messages: lr {lr:g} against 5e-4") for lr in (3.2e-5, 1e-4)] + [
        (low[-1] == worst == 25 and len(low) == 3 and low[1] <= 15,
         f"tickets kept at 3.2e-5: {', '.join(map(str, low))} of 27; the defaults' worst seed: {worst}")]


def one_knob_verdicts(book) -> dict[tuple[str, Any], str]:
    """Every one-knob setting `book` recorded (`atlas.ONE_KNOB`, the defaults' own values aside, and training-row
    caps at or above the train split's size, which are the defaults again) against the defaults by the one rule:
    {(field, value): verdict}."""
    defaults, found = runs(book), {}
    whole = defaults[0].meta["num_train"]  # a cap on the training rows at or above it trains on them all: the defaults
    for name, values in atlas.ONE_KNOB.items():
        for value in values:
            seeds = book.runs(FineTuneConfig(**{name: value}))
            if name == "max_train_samples" and value >= whole:
                continue
            if value != getattr(FineTuneConfig(), name) and seeds:
                found[name, value] = compare_runs(seeds, defaults).verdict
    return found


@claim("12.one_knob", """Beyond the learning rate, of the 34 other one-knob settings recorded on the tickets only
       half an epoch keeps a worse model than the defaults, and none a better one. The other 33 can't be told from the
       defaults with 3 seeds, and none is equivalent: one ticket is 3.7 points, too coarse for ±1 point, even where
       every seed keeps as many tickets as the defaults' seed does (six settings: the four other weight decays, the
       polynomial schedule and warmup 0.05).""")
def _one_knob(book):
    found = {k: v for k, v in one_knob_verdicts(example_book()).items() if k[0] != "learning_rate"}
    by = lambda verdict: sorted(f"{k[0]} {k[1]}" for k, v in found.items() if v == verdict)  # noqa: E731
    same_count = sorted([*(f"weight_decay {d}" for d in (0.0, 0.1, 0.3, 1.0)), "lr_scheduler_type polynomial",
                         "warmup_ratio 0.05"])
    defaults = {r.config.seed: round(kept_accuracy(r) * 27) for r in runs(example_book())}
    matched = sorted(f"{k[0]} {k[1]}" for k in found
                     if all(round(kept_accuracy(r) * 27) == defaults[r.config.seed]
                            for r in example_book().runs(FineTuneConfig(**{k[0]: k[1]}))))
    return [(len(found) == 34, f"{len(found)} other one-knob settings recorded"),
            (by("lower") == ["num_train_epochs 0.5"] and not by("higher"),
             f"lower: {', '.join(by('lower'))}; higher: {', '.join(by('higher')) or 'none'}"),
            (not by("equivalent") and len(by(CANT_TELL)) == 33,
             f"equivalent: {len(by('equivalent'))}; can't tell: {len(by(CANT_TELL))}"),
            (matched == same_count, f"every seed keeps the defaults' count of tickets: {', '.join(matched)}")]


@claim("12.series", """Of the 63 claims of lessons 00 to 11, on the tickets 11 hold, 14 do not, and 38 cannot be
       judged: the settings they need were not recorded on this file. Which claims can be judged follows from the
       settings recorded, not from the data: on the bundled atlas cut down to the tickets' settings the very same
       claims are judged, and every one of them holds there; so each claim that does not hold on the tickets fails
       on what the tickets' runs show, not on a missing run. Lesson 01's "too high" holds on the tickets; its "too
       low" does not. The tickets have no kinds of message (lesson 11's negations, typos, sarcasm): no claim about
       kinds can be read on them, whatever its verdict says.""")
def _series(book):
    tickets = example_book()
    here, there = series_on(tickets)
    count = lambda verdicts, v: sum(1 for verdict, _ in verdicts.values() if verdict == v)  # noqa: E731
    judged = {id for id, (v, _) in here.items() if v != "not judged"}
    kinds = {k for r in runs(tickets) for k in (r.kept.get("errors_by_phenomenon") or {})}
    return [(len(here) == 63 and (count(here, "held"), count(here, "not held"), count(here, "not judged"))
             == (11, 14, 38),
             f"{len(here)} claims on the tickets: {count(here, 'held')} held, {count(here, 'not held')} not held, "
             f"{count(here, 'not judged')} not judged"),
            (judged == {id for id, (v, _) in there.items() if v != "not judged"},
             f"judged on the bundled atlas cut down to the tickets' settings: the same {len(judged)} claims"),
            (all(there[id][0] == "held" for id in judged), "of them held there: "
             f"{sum(there[id][0] == 'held' for id in judged)} of {len(judged)}"),
            (here["01.too_high"][0] == "held" and here["01.too_low"][0] == "not held",
             f"on the tickets 01.too_high {here['01.too_high'][0]}, 01.too_low {here['01.too_low'][0]}"),
            (not kinds, f"kinds of message in the tickets' runs: {sorted(kinds) or 'none'}")]
