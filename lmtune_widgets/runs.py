"""What a run leaves behind, and what its curves say.

    run = fine_tune(cfg)
    run.status, run.history[-1]["eval_accuracy"], run.best["epoch"]
    run.predict(["Parcel arrived early, thanks!"])      # -> ["positive"]
    run.save("run.json"); Run.load("run.json")           # plain JSON, never pickle
    d = diagnose(run); d.verdict, d.advice              # "overfitting", "Stop earlier: ..."
    compare_runs(runs_a, runs_b).verdict                # "higher"/"lower" (they differ), "can't tell" or "equivalent"

`diagnose` reads the curves the way an instructor would, with the thresholds written out below.
`compare_runs` is the kit's one rule for "is this difference real?", used by the panel, the lessons and
`diagnose`: see its docstring.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import FineTuneConfig

FORMAT = "lmtune-widgets/run"
FORMAT_VERSION = 1
STATUSES = ("running", "finished", "diverged", "stopped", "failed")


@dataclass(eq=False)
class Run:
    """One fine-tuning run: its config, its curves (`history`), and while in memory its trained model."""

    config: FineTuneConfig
    label_names: list[str]
    status: str = "running"  # "finished" | "diverged" | "stopped" | "failed" once it ends
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per evaluation point
    learning_rates: list[float] = field(default_factory=list)  # the rate used at every optimizer step
    train_losses: list[float] = field(default_factory=list)  # the training loss of every optimizer step
    meta: dict[str, Any] = field(default_factory=dict)  # sizes, timings, device, threads, versions
    kept: dict[str, Any] = field(default_factory=dict)  # the kept model on the whole validation split (see below)
    error: str | None = None  # why a "failed" run failed
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        best = f", best_accuracy={self.best_accuracy:.3f}" if self.history else ""
        return (f"Run(status={self.status!r}, points={len(self.history)}, steps={len(self.learning_rates)}{best}, "
                f"changes={self.config.changes()})")

    # ------------------------------------------------------------------ reading the curves
    @property
    def best(self) -> dict[str, Any] | None:
        """The evaluation point with the lowest validation loss."""
        finite = [h for h in self.history if _finite(h["eval_loss"])]
        return min(finite, key=lambda h: h["eval_loss"]) if finite else None

    @property
    def best_accuracy(self) -> float:
        values = [h["eval_accuracy"] for h in self.history if _finite(h["eval_accuracy"])]
        return max(values) if values else math.nan

    def column(self, key: str) -> list[float]:
        return [h[key] for h in self.history]

    # ------------------------------------------------------------------ using the model
    def predict(self, texts: list[str] | str) -> list[str]:
        """The predicted label name of each text."""
        import torch

        if self.model is None:
            raise RuntimeError("this run has no trained model in memory (it was loaded from a file, released, or run "
                               "with keep_model=False); run fine_tune again to predict")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return []
        device = next(self.model.parameters()).device
        inputs = self.tokenizer(texts, truncation=True, max_length=self.config.max_length, padding=True,
                                return_tensors="pt").to(device)
        self.model.eval()
        with torch.inference_mode():
            ids = self.model(**inputs).logits.argmax(-1).tolist()
        return [self.label_names[i] for i in ids]

    def accuracy(self, split: str = "test", limit: int | None = None) -> float:
        """The trained model's accuracy on a split of its data: "test" is the one no choice was made on."""
        from .data import splits_for

        splits = splits_for(self.config)
        parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
        if split not in parts:
            raise ValueError(f"split={split!r} is not valid: choose one of {', '.join(parts)}")
        part = parts[split].select(range(min(limit or len(parts[split]), len(parts[split]))))
        texts, labels = part["text"], part["label"]
        predicted = [name for i in range(0, len(texts), 64) for name in self.predict(texts[i:i + 64])]
        return sum(name == splits.label_names[label] for name, label in zip(predicted, labels)) / max(1, len(labels))

    def release(self) -> None:
        """Drop the trained model (the curves stay); frees its memory."""
        self.model = self.tokenizer = None

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "status": self.status, "config": self.config.to_dict(),
                "label_names": self.label_names, "history": [_json_safe(h) for h in self.history],
                "learning_rates": [_json_safe(x) for x in self.learning_rates],
                "train_losses": [_json_safe(x) for x in self.train_losses], "meta": _json_safe(self.meta),
                "kept": _json_safe(self.kept), "error": self.error}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a run file: it is not valid JSON ({error})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "data") -> "Run":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source} is not a run file saved by lmtune-widgets (no '\"format\": \"{FORMAT}\"')")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source} is a run file of version {data.get('version')!r}; this kit reads version {FORMAT_VERSION}")
        try:
            history = [{k: _from_json(v) for k, v in h.items()} for h in data["history"]]
            run = cls(config=FineTuneConfig.from_dict(data["config"]), label_names=list(data["label_names"]),
                      status=data["status"], history=history,
                      learning_rates=[_from_json(x) for x in data["learning_rates"]], meta=dict(data["meta"]),
                      train_losses=[_from_json(x) for x in data.get("train_losses", [])],  # older files lack these
                      kept=dict(data.get("kept") or {}), error=data.get("error"))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(f"{source} is a damaged run file: {type(error).__name__}: {error}") from None
        if run.status not in STATUSES:
            raise ValueError(f"{source} is a damaged run file: unknown status {run.status!r}")
        return run


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: they are written as null (and read back as NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    return math.nan if value is None else value


# ------------------------------------------------------------------------------------------------ diagnose
UNDERFIT_TRAIN_RATIO = 0.7  # train loss ends above 70% of where it started: the model barely learnt
OVERFIT_RISE = 0.10  # validation loss ends 10% above its minimum ...
OVERFIT_GAP = 0.0  # ... and is above the training loss
UNSTABLE_RATIO = 1.1  # train loss ends 10% above where it started: training made it worse
CHANCE_MARGIN = 0.03  # accuracy within 3 points of always guessing the commonest class
WEIGHTS_MOVED = 0.05  # trainable weights' norm changed by over 5% (weight decay alone moves it ~1%)


@dataclass
class Diagnosis:
    """What the curves say: a verdict, where the run was best, and what to try next, in plain words."""

    verdict: str  # "diverged" | "underfitting" | "overfitting" | "good fit"
    best_epoch: float | None
    best_step: int | None
    best_accuracy: float
    reason: str
    advice: str
    spread: str = ""  # where the run lands against recorded seeds of the same settings (when given)

    def __str__(self) -> str:
        best = f"best at epoch {self.best_epoch:.2f}, accuracy {self.best_accuracy:.1%}" if self.best_epoch is not None else "no finite evaluation"
        spread = f" Against the recorded runs: {self.spread}." if self.spread else ""
        return f"{self.verdict.upper()} ({best}). {self.reason} {self.advice}{spread}"


def diagnose(run: Run, recorded: list[Run] | None = None) -> Diagnosis:
    """Read a run's curves: diverged, underfitting, overfitting or a good fit, with advice. With `recorded`
    (the atlas's runs of the same settings) it also says whether the run lands inside their seed spread."""
    d = _read_curves(run)
    if recorded:
        d.spread = place_in_spread(run, recorded)
    return d


def _read_curves(run: Run) -> Diagnosis:
    history = run.history
    best = run.best
    best_epoch = best["epoch"] if best else None
    best_step = best["step"] if best else None
    accuracy = run.best_accuracy
    chance = run.meta.get("chance_accuracy", 1.0 / max(2, len(run.label_names)))

    def verdict(name: str, reason: str, advice: str) -> Diagnosis:
        return Diagnosis(name, best_epoch, best_step, accuracy, reason, advice)

    train = [h["train_loss"] for h in history if _finite(h["train_loss"])]
    start = run.meta.get("first_train_loss") or (train[0] if train else math.nan)
    last = history[-1] if history else None
    nonfinite = any(not _finite(h["train_loss"]) or not _finite(h["eval_loss"]) for h in history if h["step"] > 0)
    final_accuracy = last["eval_accuracy"] if last else math.nan
    at_chance = _finite(final_accuracy) and final_accuracy <= chance + CHANCE_MARGIN
    norms = [h["weight_norm"] for h in history if _finite(h.get("weight_norm"))]
    # Only pretrained weights moving a lot says the steps are big: a new head alone (every layer frozen) starts
    # small and moves a lot by itself, whatever the rate.
    head_only = run.meta.get("num_layers") is not None and run.config.freeze_layers >= run.meta["num_layers"] \
        and not run.config.lora_r
    moved = not head_only and len(norms) >= 2 and norms[0] > 0 and abs(norms[-1] - norms[0]) > WEIGHTS_MOVED * norms[0]
    lower = f"Lower the learning rate (try {run.config.learning_rate / 10:.0e})"
    warmup = "lengthen the warmup" if run.config.warmup_ratio > 0 else "add warmup"
    advice = f"{lower} or {warmup}."
    if run.status == "diverged" or nonfinite or (at_chance and train and max(train) > 1.5 * start):
        return verdict("diverged", "The loss blew up instead of going down, so the model ended no better than "
                       "guessing.", advice)
    if at_chance and moved:  # collapsed: big steps knocked the model into predicting one class
        return verdict("diverged", "The weights moved a lot, yet the model ended no better than guessing: the "
                       "steps were so big that it collapsed to predicting one class.", advice)
    if not history or not train:
        return verdict("underfitting", "The run ended before it learnt anything measurable.",
                       "Train for longer (more epochs) and make sure the run is not stopped early.")
    # The training loss at the end, over a whole evaluation interval of steps: the last point may average only the
    # few steps after the previous evaluation (batch 4: 4 steps, against 134 before it), too noisy to judge alone.
    window = [v for v in run.train_losses[-int(run.meta.get("eval_every") or 1):] if _finite(v)]
    if len(window) > 1 and len(run.train_losses) >= len(window):
        train[-1] = sum(window) / len(window)
    eval_losses = [h["eval_loss"] for h in history]
    lowest = min(eval_losses)
    lowest_at = eval_losses.index(lowest)
    final_eval = eval_losses[-1]
    if train[-1] > UNSTABLE_RATIO * start:  # a tiny learning rate cannot make the loss worse; big steps can
        return verdict("diverged", f"The training loss ended higher than it started ({start:.2f} to {train[-1]:.2f}): "
                       "the steps are too big for the model to settle, and each one can undo what the last "
                       "learnt.", f"{lower} or use a decaying schedule with warmup.")
    if train[-1] >= UNDERFIT_TRAIN_RATIO * start and moved:  # big steps that go nowhere, not small ones
        return verdict("underfitting",
                       f"The training loss only went from {start:.2f} to {train[-1]:.2f}, although the weights moved "
                       f"a lot: the steps are too big for the model to settle, not too small.",
                       f"{lower}, or {warmup} and use a decaying schedule.")
    if train[-1] >= UNDERFIT_TRAIN_RATIO * start:
        return verdict("underfitting",
                       f"The training loss only went from {start:.2f} to {train[-1]:.2f}: the model has barely "
                       "started to learn, and validation is just as poor.",
                       "Raise the learning rate, train for more epochs, or unfreeze more layers.")
    if (lowest_at < len(history) - 1 and final_eval >= (1 + OVERFIT_RISE) * lowest
            and final_eval > train[-1] + OVERFIT_GAP):
        return verdict("overfitting",
                       f"Validation loss was lowest at epoch {history[lowest_at]['epoch']:.2f} ({lowest:.2f}) and "
                       f"then rose to {final_eval:.2f} while the training loss kept falling: the model memorises "
                       "the training examples.",
                       f"Stop at about epoch {history[lowest_at]['epoch']:.1f} (early stopping), or add more training "
                       "data or dropout.")
    return verdict("good fit",
                   f"Training and validation loss both fell and validation stayed near its best "
                   f"(accuracy {accuracy:.1%}).",
                   "Keep these settings; try a slightly higher learning rate or one more epoch to see if it improves.")


# ------------------------------------------------------------------------------------------------ is it real?
MIN_SEEDS = 3  # a spread over fewer seeds says too little


def kept_accuracy(run: Run) -> float:
    """The accuracy of the model the run keeps, on the whole validation split (NaN if it was not scored)."""
    value = run.kept.get("validation_accuracy")
    return value if _finite(value) else math.nan


def accuracy_range(runs: list[Run], measure: Callable[[Run], float] = kept_accuracy) -> tuple[float, float]:
    """(lowest, highest) of `measure` (by default the kept accuracy) over runs that differ only by seed."""
    values = [measure(r) for r in runs if _finite(measure(r))]
    return (min(values), max(values)) if values else (math.nan, math.nan)


EQUIVALENCE_MARGIN = 0.01  # "equivalent" means within ±1 accuracy point (of the kept accuracy, or of any rate)
CONFIDENCE = 0.90  # of the interval of the mean difference: two one-sided tests at 5% each (TOST)


@dataclass
class Comparison:
    """The rule's answer for two settings, each run with several seeds: one of three words.

    - they **differ** (`verdict` "higher" or "lower", the first against the second): the ranges do not overlap;
    - they are **equivalent** within ±`margin`: the `confidence` interval of the difference of their means lies
      inside ±margin, so the data rule out any difference larger than the margin;
    - otherwise we **can't tell** with this many seeds: overlapping ranges are not a proof of sameness.
    ("too few seeds" below `MIN_SEEDS` on either side.)"""

    verdict: str  # "higher" | "lower" | "can't tell" | "equivalent" | "too few seeds"
    first: tuple[float, float]  # lowest and highest kept accuracy (or `what`) over the first setting's seeds
    second: tuple[float, float]
    seeds: tuple[int, int]
    what: str = "kept accuracy"
    means: tuple[float, float] = (math.nan, math.nan)
    interval: tuple[float, float] = (math.nan, math.nan)  # of mean(first) - mean(second), at `confidence`
    margin: float | None = EQUIVALENCE_MARGIN  # None: no margin was set for this measure; never "equivalent"
    confidence: float = CONFIDENCE
    paired: int = 0  # how many seeds the interval pairs (0: Welch's, over all seeds of each side)
    centre: float = math.nan  # when paired: the mean of the seed-by-seed differences
    step: float | None = None  # the smallest difference the measure can show (one validation message), when known

    @property
    def real(self) -> bool:
        """True when the two differ (the ranges do not overlap)."""
        return self.verdict in ("higher", "lower")

    @property
    def word(self) -> str:
        """The verdict in the kit's three words: "differ", "can't tell", "equivalent" (or "too few seeds")."""
        return "differ" if self.real else self.verdict

    @property
    def difference(self) -> float:
        """The centre of the interval: the mean seed-by-seed difference when paired, else the means' difference."""
        return self.centre if self.paired else self.means[0] - self.means[1]

    def _format(self, x: float, signed: bool = False) -> str:
        if self._as_points:
            return f"{x * 100:+.1f}" if signed else f"{x:.1%}"
        return f"{x:+.3g}" if signed else f"{x:.3g}"

    @property
    def _as_points(self) -> bool:
        return "accuracy" in self.what or "rate" in self.what

    @property
    def spans(self) -> str:
        f = self._format
        return (f"{f(self.first[0])} to {f(self.first[1])} over {self.seeds[0]} seeds against "
                f"{f(self.second[0])} to {f(self.second[1])} over {self.seeds[1]}")

    @property
    def interval_text(self) -> str:
        """"means 88.1% against 87.6%: difference +0.5 points (90% interval -0.9 to +1.9)"."""
        f, unit = self._format, " points" if self._as_points else ""
        if not all(map(math.isfinite, self.means)):
            return "means not known"
        low, high = self.interval
        means = f"means {f(self.means[0])} against {f(self.means[1])}"
        if self.paired:
            return (f"{means}; seed by seed on the {self.paired} shared seeds, difference {f(self.difference, True)}"
                    f"{unit} ({self.confidence:.0%} interval {f(low, True)} to {f(high, True)})")
        return (f"{means}: difference {f(self.difference, True)}{unit} "
                f"({self.confidence:.0%} interval {f(low, True)} to {f(high, True)})")

    @property
    def margin_text(self) -> str:
        if self.margin is None:
            return "no margin of sameness set for this measure"
        if self._as_points:
            points = round(self.margin * 100, 6)
            return f"±{points:g} point{'' if points == 1 else 's'}"
        return f"±{self.margin:g}"

    @property
    def short(self) -> str:
        """The verdict in a few words with the mean difference and its interval, for a table or a line: "differ,
        higher (+2.1 points, 90% interval +0.9 to +3.3)", "can't tell with 3 seeds (...)", "equivalent within ±1
        point (...)"."""
        if self.verdict == "too few seeds":
            return f"too few seeds (at least {MIN_SEEDS} each)"
        word = {"equivalent": f"equivalent within {self.margin_text}",
                "can't tell": f"can't tell with {min(self.seeds)} seeds"}.get(self.verdict, f"differ, {self.verdict}")
        if not all(map(math.isfinite, self.interval)):
            return word
        f, unit = self._format, " points" if self._as_points else ""
        return (f"{word} ({f(self.difference, True)}{unit}, {self.confidence:.0%} interval {f(self.interval[0], True)} "
                f"to {f(self.interval[1], True)})")

    def __str__(self) -> str:
        if self.verdict == "too few seeds":
            return f"too few seeds to tell (at least {MIN_SEEDS} each): {self.spans}"
        if self.verdict == "equivalent":
            return (f"equivalent within {self.margin_text}: the {self.confidence:.0%} interval of the difference "
                    f"lies inside it ({self.interval_text}; {self.spans})")
        if self.verdict == "can't tell":
            why = ("" if self.margin is None else f", and the interval is not inside {self.margin_text}")
            if self.margin is not None and self.step is not None and self.step >= self.margin:
                why = (f", and one validation message is {self._format(self.step, True).lstrip('+')} points: too coarse "
                       f"to show sameness within {self.margin_text}")
            return (f"can't tell with {min(self.seeds)} seeds: the ranges of {self.what} overlap{why} "
                    f"({self.spans}; {self.interval_text})")
        return (f"they differ, {self.verdict}: the ranges of {self.what} do not overlap ({self.spans}; "
                f"{self.interval_text})")


def default_margin(what: str) -> float | None:
    """±1 point for accuracies and rates; other measures (losses, similarities) name their own margin."""
    return EQUIVALENCE_MARGIN if ("accuracy" in what or "rate" in what) else None


def compare_runs(first: list[Run], second: list[Run], measure: Callable[[Run], float] = kept_accuracy,
                 what: str = "kept accuracy", margin: float | None = -1.0) -> Comparison:
    """Is the difference between two settings real, and if not, is it known to be small? Each is run with at
    least `MIN_SEEDS` seeds.

    - They differ when the ranges (lowest to highest) of the kept model's accuracy on the whole validation split
      do not overlap. Ranges, not means: with 3 to 5 seeds a mean hides how far one seed can land from another,
      and the learner sees the same ranges drawn as bands.
    - They are equivalent within ±`margin` (1 accuracy point by default) when the 90% t interval of the
      difference of the means lies inside ±margin: two one-sided tests at 5%, as in equivalence testing. When at
      least `MIN_SEEDS` runs of one setting have a partner in the other with the same seed and data order (the
      same head initialisation, the same batches), the interval is the paired one, over the differences seed by
      seed on those shared seeds; otherwise Welch's, over all seeds of each.
    - Otherwise: can't tell with this many seeds.

    The same rule judges any other number a run keeps (`measure`, named `what`): its similarity score, its error
    rate on negations; a measure that is not an accuracy or a rate must name its `margin` to be called
    equivalent."""
    a, b = [measure(r) for r in first], [measure(r) for r in second]
    seed = lambda run: (run.config.seed, run.config.shuffle_seed)  # noqa: E731
    by_seed = {seed(r): x for r, x in zip(second, b)}
    pairs = [(x, by_seed[seed(r)]) for r, x in zip(first, a) if seed(r) in by_seed]
    sizes = [r.meta.get("num_validation") for r in first + second] if measure is kept_accuracy else []
    step = 1 / min(sizes) if sizes and all(sizes) else None  # the kept accuracy counts whole validation messages
    return compare_values(a, b, what, margin, pairs, step)


def mean_difference_interval(a: list[float], b: list[float], confidence: float = CONFIDENCE,
                             paired: bool = False) -> tuple[float, float]:
    """The t interval of mean(a) - mean(b) (scipy's): paired over a[i] - b[i], or Welch's; exact when the
    differences (paired) or both sides (Welch) have no spread."""
    from scipy import stats

    diff = sum(a) / len(a) - sum(b) / len(b)
    if paired:
        if len({x - y for x, y in zip(a, b)}) == 1:
            return diff, diff
        ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=confidence)
    else:
        if max(a) == min(a) and max(b) == min(b):
            return diff, diff
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=confidence)
    return float(ci.low), float(ci.high)


def compare_values(first: list[float], second: list[float], what: str, margin: float | None = -1.0,
                   pairs: list[tuple[float, float]] | None = None, step: float | None = None) -> Comparison:
    """The rule on two lists of numbers, one per seed (NaN ignored). `margin` -1 means `default_margin(what)`;
    `pairs` ((first, second) with the same seed) makes the interval the paired one. `step`: the smallest difference
    the measure can show (an accuracy on 27 messages moves by 1/27); "equivalent" needs it finer than the margin,
    since seeds that all keep the same count give a zero-wide interval that says nothing below one message."""
    a = [x for x in first if _finite(x)]
    b = [x for x in second if _finite(x)]
    margin = default_margin(what) if margin == -1.0 else margin
    span = lambda v: (min(v), max(v)) if v else (math.nan, math.nan)  # noqa: E731
    (a_low, a_high), (b_low, b_high) = span(a), span(b)
    means = (sum(a) / len(a) if a else math.nan, sum(b) / len(b) if b else math.nan)
    pairs = [(x, y) for x, y in pairs or () if _finite(x) and _finite(y)]
    paired = len(pairs) >= MIN_SEEDS
    if paired:
        interval = mean_difference_interval([x for x, _ in pairs], [y for _, y in pairs], paired=True)
    else:
        interval = mean_difference_interval(a, b) if min(len(a), len(b)) >= 2 else (math.nan, math.nan)
    if min(len(a), len(b)) < MIN_SEEDS:
        verdict = "too few seeds"
    elif a_low > b_high:
        verdict = "higher"
    elif a_high < b_low:
        verdict = "lower"
    elif margin is not None and (step is None or step < margin) and -margin < interval[0] and interval[1] < margin:
        verdict = "equivalent"
    else:
        verdict = "can't tell"
    centre = sum(x - y for x, y in pairs) / len(pairs) if paired else math.nan
    return Comparison(verdict, (a_low, a_high), (b_low, b_high), (len(a), len(b)), what, means, interval, margin,
                      paired=len(pairs) if paired else 0, centre=centre, step=step)


def seed_band(runs: list[Run]) -> list[dict[str, Any]]:
    """Mean/min/max over runs that differ only by seed, at each evaluation step any of them reached."""
    steps = sorted({h["step"] for run in runs for h in run.history})
    band = []
    for step in steps:
        points = [h for run in runs for h in run.history if h["step"] == step]
        row: dict[str, Any] = {"step": step, "epoch": points[0]["epoch"], "seeds": len(points)}
        for key in ("eval_loss", "eval_accuracy", "train_loss"):
            values = [p[key] for p in points if isinstance(p.get(key), (int, float)) and math.isfinite(p[key])]
            row[key] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)} if values else None
        band.append(row)
    return band


def place_in_spread(run: Run, recorded: list[Run]) -> str:
    """Where one run lands against the recorded seeds of the same settings: inside, above or below their range."""
    low, high = accuracy_range(recorded)
    value = kept_accuracy(run)
    if not recorded or not _finite(value) or not _finite(low):
        return ""
    where = "inside" if low <= value <= high else ("above" if value > high else "below")
    return (f"kept accuracy {value:.1%}: {where} the recorded spread ({low:.1%} to {high:.1%} over "
            f"{len(recorded)} seeds)")
