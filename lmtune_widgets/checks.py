"""Start small: catch a broken set-up in seconds, on a tiny subset, before a long run finds it for you.

    from lmtune_widgets.checks import start_small
    report = start_small(config)     # prints what it finds; report.problems is empty when all is well

Two checks, the ones experienced practitioners run first (Karpathy's "recipe for training neural networks"):
1. **Look at what the model sees.** A few training messages as the tokenizer hands them to the model, with their
   labels, and how many messages `max_length` cuts short. A truncation that drops the end of a message (where
   "... but it broke the next day" lives) is invisible in the curves.
2. **Overfit a tiny set.** 32 training messages, no regularisation, a constant learning rate: a working set-up
   drives the training loss close to zero within a few seconds of training. If it cannot, nothing bigger will:
   the learning rate, the labels, the frozen layers or the data are wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import FineTuneConfig
from .runs import Run

TINY = 32  # training messages in the overfit check
TRUNCATED_AT_MOST = 0.05  # more messages than this cut short by max_length is a problem
OVERFIT_BELOW = 0.1  # the tiny set's training loss must end below this


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    truncated: float = 0.0  # fraction of training messages longer than max_length tokens
    examples: list[dict[str, Any]] = field(default_factory=list)
    tiny_run: Run | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def look_at_inputs(config: FineTuneConfig, count: int = 4) -> tuple[list[dict[str, Any]], float]:
    """The first `count` training messages as the model sees them (decoded after truncation), with their labels,
    and the fraction of all training messages that `max_length` cuts short."""
    from .data import splits_for
    from .models import load_tokenizer

    splits = splits_for(config)
    tokenizer = load_tokenizer(config.model_name)
    texts = list(splits.train["text"][: config.max_train_samples])
    labels = list(splits.train["label"][: config.max_train_samples])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    truncated = sum(n > config.max_length for n in lengths) / max(len(lengths), 1)
    seen = tokenizer(texts[:count], truncation=True, max_length=config.max_length)["input_ids"]
    examples = [{"label": splits.label_names[label], "text": text,
                 "model_sees": tokenizer.decode(ids, skip_special_tokens=True)}
                for text, label, ids in zip(texts, labels, seen)]
    return examples, truncated


def overfit_tiny(config: FineTuneConfig, examples: int = TINY, epochs: float = 10) -> Run:
    """The same set-up on `examples` training messages, without regularisation or a schedule, for `epochs`."""
    from .training import fine_tune

    tiny = config.replace(max_train_samples=examples, max_eval_samples=examples, num_train_epochs=epochs,
                          per_device_train_batch_size=min(8, examples), dropout=0.0, weight_decay=0.0,
                          label_noise=0.0, lr_scheduler_type="constant", warmup_ratio=0.0, evals_per_epoch=1,
                          early_stopping_patience=0)
    return fine_tune(tiny, keep_model=False)


def start_small(config: FineTuneConfig, verbose: bool = True) -> Report:
    """Both checks on `config`; prints what they find and returns a Report (`report.ok`, `report.problems`)."""
    report = Report()
    report.examples, report.truncated = look_at_inputs(config)
    if report.truncated > TRUNCATED_AT_MOST:
        report.problems.append(
            f"max_length={config.max_length} cuts {report.truncated:.0%} of the training messages short: the model "
            f"never sees their ends. Raise max_length (the longest messages need more tokens).")
    report.tiny_run = run = overfit_tiny(config)
    losses = [h["train_loss"] for h in run.history if h["step"] > 0]
    final = losses[-1] if losses else float("nan")
    if run.status in ("diverged", "failed") or not final < OVERFIT_BELOW:
        report.problems.append(
            f"the model cannot fit {TINY} messages: training loss {run.history[0]['train_loss']:.2f} -> {final:.2f} in "
            f"{run.meta.get('total_steps')} steps (status {run.status}). Check the learning rate "
            f"({config.learning_rate:g}), the labels and freeze_layers before any long run.")
    if verbose:
        for example in report.examples:
            print(f"{example['label']:>9} | model sees: {example['model_sees']}")
        print(f"messages cut short by max_length={config.max_length}: {report.truncated:.0%}")
        print(f"overfit {TINY} messages: training loss {run.history[0]['train_loss']:.2f} -> {final:.3f} "
              f"in {run.meta.get('total_steps')} steps, {run.meta.get('train_s', 0):.1f} s of training")
        print("start small: all clear" if report.ok else "start small found problems:\n- " + "\n- ".join(report.problems))
    return report
