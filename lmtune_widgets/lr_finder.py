"""A learning-rate finder in the spirit of fastai's `lr_find`.

    from lmtune_widgets import lr_find
    found = lr_find(FineTuneConfig())     # one pass, learning rate raised exponentially from 1e-7 to 1
    found.suggestion                      # a learning rate to start from
    found.plot()                          # loss against learning rate (log scale), suggestion marked

The model trains for real while the learning rate grows by the same factor every step. The loss first
stays flat (too small to matter), then falls (useful rates), then shoots up (too large). The finder stops
once the smoothed loss is `stop_factor` times its best. It suggests a tenth of the rate at the lowest
smoothed loss (fastai's classic "minimum / 10" rule: the lowest point is already too fast to train at), and
also reports where the smoothed loss falls fastest (`steepest`). The first tenth of the steps is ignored:
there the smoothing has seen too few batches to mean anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from matplotlib.figure import Figure

from .config import FineTuneConfig
from .data import splits_for
from .figure_style import default_style
from .planning import schedule_steps
from .training import Callback, StopTraining, fine_tune


@dataclass
class LRFinderResult:
    learning_rates: list[float]  # the rate of each step
    losses: list[float]  # the raw training loss of each step
    smoothed: list[float]  # exponentially smoothed, bias-corrected (as fastai)
    suggestion: float  # a tenth of the rate at the lowest smoothed loss
    minimum: float  # the rate at the lowest smoothed loss
    steepest: float  # where the smoothed loss falls fastest

    @default_style
    def plot(self, title: str = "Learning-rate finder") -> Figure:
        fig = Figure(figsize=(6.5, 3.6))
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.88)
        ax = fig.subplots()
        ax.plot(self.learning_rates, self.losses, color="#bbbbbb", lw=1, label="loss at each step")
        ax.plot(self.learning_rates, self.smoothed, color="#1f77b4", lw=2, label="smoothed")
        ax.axvline(self.suggestion, color="#2ca02c", ls="--", label=f"suggestion {self.suggestion:.1e} (lowest / 10)")
        ax.axvline(self.minimum, color="#d62728", ls=":", label=f"lowest loss {self.minimum:.1e}")
        ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss", title=title)
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return fig


def lr_find(config: FineTuneConfig | None = None, start_lr: float = 1e-6, end_lr: float = 1.0,
            num_steps: int | None = None, stop_factor: float = 4.0, beta: float = 0.8) -> LRFinderResult:
    """Raise the learning rate exponentially over one pass of the training data and record the loss."""
    config = config or FineTuneConfig()
    if not 0 < start_lr < end_lr:
        raise ValueError(f"start_lr={start_lr!r} and end_lr={end_lr!r} are not valid: need 0 < start_lr < end_lr")
    num_train = min(config.max_train_samples, len(splits_for(config).train))
    steps_per_epoch, _, _ = schedule_steps(config, num_train)
    num_steps = num_steps or steps_per_epoch
    # learning_rate x lr_lambda(step) goes from start_lr to end_lr in num_steps steps
    config = config.replace(learning_rate=end_lr, lr_scheduler_type="constant", warmup_ratio=0.0,
                            num_train_epochs=max(0.05, num_steps / steps_per_epoch), evals_per_epoch=1,
                            max_eval_samples=8, early_stopping_patience=0, max_grad_norm=0.0)
    ratio = end_lr / start_lr

    class Record(Callback):  # the raw losses are the run's own (`run.train_losses`); this smooths them
        def __init__(self):
            self.smoothed, self.average = [], 0.0

        def on_step_end(self, run, step, loss):
            self.average = beta * self.average + (1 - beta) * (loss if math.isfinite(loss) else 1e9)
            self.smoothed.append(self.average / (1 - beta ** step))
            best = min(self.smoothed)
            if step > 5 and (not math.isfinite(loss) or self.smoothed[-1] > stop_factor * best):
                raise StopTraining

    record = Record()
    run = fine_tune(config, callbacks=[record], keep_model=False,
                    lr_lambda=lambda step: (start_lr / end_lr) * ratio ** (step / max(1, num_steps - 1)))
    losses = run.train_losses
    rates = run.learning_rates[: len(losses)]
    smoothed = record.smoothed
    skip = min(max(2, len(smoothed) // 10), len(smoothed) - 1)
    lowest = min(range(skip, len(smoothed)), key=smoothed.__getitem__)
    # steepest fall of the smoothed loss against log(learning rate), up to the lowest point
    slopes = {i: (smoothed[i] - smoothed[i - 1]) / (math.log(rates[i]) - math.log(rates[i - 1]))
              for i in range(skip + 1, lowest + 1)}
    steepest = min(slopes, key=slopes.get) if slopes else lowest
    return LRFinderResult(rates, losses, smoothed, suggestion=rates[lowest] / 10, minimum=rates[lowest],
                          steepest=rates[steepest])
