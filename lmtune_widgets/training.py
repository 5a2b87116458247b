"""The fine-tuning loop: a real fine-tune of a pretrained transformer, written out in the open.

    from lmtune_widgets import FineTuneConfig, fine_tune
    run = fine_tune(FineTuneConfig(learning_rate=1e-4))
    run.history[-1]     # {"step": 96, "epoch": 3.0, "train_loss": ..., "eval_loss": ..., "eval_accuracy": ...}
    run.kept            # what the model the run keeps scores on the whole validation split

`fine_tune` is three parts, each usable alone: `prepare` (data, model, frozen features, optimizer), `fit`
(the loop) and `finish` (best weights back, the kept model scored, callbacks told). Each step is the loop from
transformers' `run_glue_no_trainer.py`: forward, loss, backward, clip, optimizer step, scheduler step. Every
`steps_per_epoch / evals_per_epoch` steps the model is evaluated and a point is added to the history.
Callbacks (named as in `TrainerCallback`) see each event as it happens; the panel draws from them. The run's
own rules are callbacks too: the Stop button, the divergence guard and early stopping each end a run by
raising an `EndTraining` that carries the run's status.

Why it is fast on a laptop CPU: the frozen bottom of the model (embeddings + `freeze_layers` layers) runs
in eval mode, so its output for an example is the same every epoch. It is computed once per example
(`FrozenPrefix`) and replayed, and only the trainable top runs each step. Inputs are padded per batch, not
to a fixed length, and evaluation runs under `torch.inference_mode` on batches sorted by length.
"""
from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .batching import training_batches
from .config import FineTuneConfig
from .data import splits_for
from .devices import autocast_for, machine_facts, pick_device, pick_precision
from .frozen import FrozenPrefix, frozen_features, prefix_key
from .measures import errors_by_phenomenon
from .models import count_parameters, transformer_layers
from .objectives import ClassHead, InstructionTuning, objective_for
from .planning import check_fits, make_scheduler, schedule_steps
from .runs import Run

DIVERGENCE_FACTOR = 3.0  # recent train loss above this x the first loss means the run blew up
NO_DECAY = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


class Callback:
    """Hooks into a run, named as in transformers' `TrainerCallback`. Override what you need.

    Raise `StopTraining` from any hook to end the run early (its status becomes "stopped").
    A plain function passed as a callback is called as `on_evaluate(run, point)`.
    """

    def on_train_begin(self, run: Run) -> None: ...
    def on_step_begin(self, run: Run, step: int) -> None: ...
    def on_step_end(self, run: Run, step: int, loss: float) -> None: ...
    def on_evaluate(self, run: Run, point: dict[str, Any]) -> None: ...
    def on_train_end(self, run: Run) -> None: ...


class EndTraining(Exception):
    """Ends a run from a callback, with the status it gets; `evaluate` adds one last evaluation point first."""

    status = "stopped"
    evaluate = False


class StopTraining(EndTraining):
    """Raised by a callback to end the run now, keeping its history (status "stopped")."""


class Diverged(EndTraining):
    status, evaluate = "diverged", True


class StoppedEarly(EndTraining):
    status = "finished"  # early stopping is a normal end: the best weights are kept


class _FunctionCallback(Callback):
    def __init__(self, function):
        self.function = function

    def on_evaluate(self, run, point):
        self.function(run, point)


# --------------------------------------------------------------------------------------------- the run's own rules
class StopWhenSet(Callback):
    """The Stop button: ends the run before the next step once `event` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def on_step_begin(self, run, step):
        if self.event.is_set():
            raise StopTraining


class DivergenceGuard(Callback):
    """Ends the run as "diverged" when a loss is not finite, or the mean of the last 10 batches is over
    `DIVERGENCE_FACTOR` times the first batch's loss."""

    def __init__(self):
        self.first, self.recent = None, deque(maxlen=10)

    def on_step_end(self, run, step, loss):
        self.first = loss if self.first is None else self.first
        self.recent.append(loss)
        blew_up = len(self.recent) >= 5 and sum(self.recent) / len(self.recent) > DIVERGENCE_FACTOR * self.first
        if not math.isfinite(loss) or blew_up:
            raise Diverged


class EarlyStopping(Callback):
    """Ends the run after `patience` evaluations without a lower validation loss, and puts back the weights
    of the best point, like Trainer's `load_best_model_at_end`. The step-0 point (before training) never counts."""

    def __init__(self, patience: int, parameters: list[nn.Parameter]):
        self.patience, self.parameters = patience, parameters
        self.best_loss, self.best_step, self.best_state, self.waited = math.inf, None, None, 0

    def on_evaluate(self, run, point):
        if point["step"] == 0:
            return
        if point["eval_loss"] < self.best_loss - 1e-4:
            self.best_loss, self.best_step, self.waited = point["eval_loss"], point["step"], 0
            self.best_state = [p.detach().clone() for p in self.parameters]
        else:
            self.waited += 1
        if self.waited >= self.patience:
            run.meta["stopped_early_at_step"] = point["step"]
            raise StoppedEarly

    def on_train_end(self, run):
        if self.best_state is None:
            return
        with torch.no_grad():
            for p, kept in zip(self.parameters, self.best_state):
                p.copy_(kept)
        run.meta["restored_best_step"] = run.kept["step"] = self.best_step


# --------------------------------------------------------------------------------------------- optimizer
def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups as `Trainer` makes them: no decay for biases and LayerNorm/RMSNorm weights. A weight
    shared by two modules (an LLM's tied input and output embeddings) is listed once, or AdamW would step it twice."""
    decay, no_decay, seen = [], [], set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{name}" if module_name else name
            skip = isinstance(module, nn.LayerNorm) or NO_DECAY.search(full.lower())
            (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------- the loop
@dataclass(eq=False)
class Job:
    """What one run needs while it trains: made by `prepare`, used by `fit` and `finish`."""

    config: FineTuneConfig
    run: Run
    model: nn.Module
    tokenizer: Any
    device: torch.device
    autocast: Any  # the run's mixed-precision context (a no-op in float32)
    scaler: Any  # torch.amp.GradScaler: scales float16 losses, passes everything else through
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train: dict[str, list]  # input_ids and label (as trained: noisy when label_noise > 0)
    validation: dict[str, list]  # the whole validation split: input_ids, label, phenomenon
    prefix: FrozenPrefix | None
    train_states: list | None  # the frozen layers' output for each example, or None
    validation_states: list | None
    shuffler: torch.Generator
    thorough: bool
    trainable: list[nn.Parameter] = field(default_factory=list)  # the parameters that train (clipped, decayed)
    callbacks: list[Callback] = field(default_factory=list)  # the learner's
    rules: list[Callback] = field(default_factory=list)  # the run's own: stop, divergence, early stopping
    step: int = 0
    since_point: list[float] = field(default_factory=list)  # training losses since the last point
    t0: float = 0.0
    objective: ClassHead | InstructionTuning | None = None  # what the run learns, and how it is scored

    def dispatch(self, event: str, *args) -> None:
        """Call `event` on the learner's callbacks, then on the run's own rules."""
        for callback in (*self.callbacks, *self.rules):
            getattr(callback, event)(self.run, *args)


def prepare(config: FineTuneConfig, lr_lambda: Callable[[int], float] | None = None, thorough: bool = False) -> Job:
    """Set-up: data, model, frozen features (computed once, reused by the next run that shares them), optimizer.
    Both kinds of model go through here; what differs (loading, what trains, how examples are encoded, the loss)
    is the config's objective (objectives.py)."""
    objective = objective_for(config)
    device = pick_device(config.device)
    splits = splits_for(config)
    t_load = time.perf_counter()
    model, tokenizer = objective.load(splits)
    load_s = time.perf_counter() - t_load
    num_layers = len(transformer_layers(model))
    check_fits(config, num_train=min(config.max_train_samples, len(splits.train)), num_layers=num_layers)
    dtype = pick_precision(device.type)
    autocast = autocast_for(device, dtype)
    run = Run(config=config, label_names=list(splits.label_names), status="running", meta=machine_facts(device, dtype))
    if thorough:  # before any change to the weights: what the pretrained model knows
        run.meta[f"{objective.measure_name}_before"] = measured_before(config, objective, model, tokenizer, device)
    model = objective.adapt(model, num_layers)
    model.to(device)

    train, validation, num_eval, extra = objective.encode(splits, tokenizer)
    num_train = len(train["label"])
    steps_per_epoch, total_steps, warmup_steps = schedule_steps(config, num_train)
    eval_labels = torch.tensor(validation["label"][:num_eval])
    trainable, total_params = count_parameters(model)
    run.meta.update({
        "num_train": num_train, "num_eval": num_eval, "num_validation": len(validation["label"]),
        "num_layers": num_layers, "trainable_parameters": trainable, "total_parameters": total_params,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
        "eval_every": max(1, steps_per_epoch // config.evals_per_epoch),
        "chance_accuracy": torch.bincount(eval_labels, minlength=len(splits.label_names)).max().item() / num_eval,
        "data": splits.source, "load_s": load_s, **extra})
    if splits.data_hash is not None:  # a learner's own file: which bytes this run saw (bundled runs' meta unchanged)
        run.meta.update(data_hash=splits.data_hash, data_path=str(Path(config.dataset).expanduser().resolve()))

    # frozen features: computed once, and kept for the next run with the same frozen part
    prefix = FrozenPrefix(model, config.freeze_layers) if config.freeze_layers > 0 else None
    train_states = validation_states = None
    t_cache = time.perf_counter()
    if prefix is not None:
        key, parts, assemble = objective.frozen_parts(prefix_key(config, device), train, validation, num_eval)
        train_states, validation_states, run.meta["features_from"] = frozen_features(
            prefix, key, objective.model_dir(), parts, assemble, tokenizer.pad_token_id, device, autocast, str(dtype))
    run.meta["cache_s"] = time.perf_counter() - t_cache

    torch.manual_seed(config.seed)  # dropout
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.learning_rate,
                                  betas=(0.9, 0.999), eps=1e-8)
    scheduler = (make_scheduler(config, optimizer, total_steps, warmup_steps) if lr_lambda is None
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Job(config, run, model, tokenizer, device, autocast, scaler, optimizer, scheduler, train, validation,
               prefix, train_states, validation_states, torch.Generator().manual_seed(config.shuffle_seed), thorough,
               trainable=[p for p in model.parameters() if p.requires_grad], objective=objective)


def evaluate(job: Job, ids: list, labels: list[int], states: list | None) -> tuple[float, float, list[int]]:
    """Mean loss, accuracy and each example's predicted class, in eval mode (the objective's own scoring)."""
    return job.objective.evaluate(job, ids, labels, states)


def _train_subsample_loss(job: Job) -> float:
    """The loss on the first training examples (their labels as trained), in eval mode: 256 for a classifier, 64
    for a decoder LLM, whose every message costs ~50x MiniLM's work (the objective's `train_eval_samples`)."""
    n = min(len(job.train["label"]), job.objective.train_eval_samples)
    states = job.train_states[:n] if job.prefix is not None else None
    return evaluate(job, job.train["input_ids"][:n], job.train["label"][:n], states)[0]


def add_point(job: Job) -> dict[str, Any]:
    """Evaluate now, add the point to the history, and show it to the callbacks."""
    run, num_eval = job.run, job.run.meta["num_eval"]
    states = job.validation_states[:num_eval] if job.prefix is not None else None
    eval_loss, eval_accuracy, _ = evaluate(job, job.validation["input_ids"][:num_eval],
                                           job.validation["label"][:num_eval], states)
    if job.step == 0:  # before any step: the loss on the training subsample, so both curves start together
        train_loss = _train_subsample_loss(job)
    else:  # the mean loss of the training batches since the last point, as Trainer logs it
        train_loss = sum(job.since_point) / len(job.since_point) if job.since_point else math.nan
    job.since_point.clear()
    with torch.no_grad():
        weight_norm = torch.sqrt(sum((p.float() ** 2).sum() for p in job.trainable)).item() if job.trainable else 0.0
    point = {"step": job.step, "epoch": job.step / run.meta["steps_per_epoch"], "train_loss": train_loss,
             "eval_loss": eval_loss, "eval_accuracy": eval_accuracy,
             "learning_rate": run.learning_rates[-1] if run.learning_rates else 0.0, "weight_norm": weight_norm,
             "elapsed_s": time.perf_counter() - job.t0}
    if job.thorough:  # the training loss without dropout: comparable with the validation loss
        point["train_eval_loss"] = train_loss if job.step == 0 else _train_subsample_loss(job)
    run.history.append(point)
    job.dispatch("on_evaluate", point)
    return point


def batch_loss(job: Job, batch: list[int]) -> torch.Tensor:
    """The mean loss of one batch: cross-entropy of the class logits (an LLM: of its answer tokens), smoothed as
    `label_smoothing_factor` says (as Trainer's `LabelSmoother`). Evaluation losses are never smoothed: they stay
    the plain cross-entropy, comparable between runs with and without smoothing."""
    return job.objective.batch_loss(job, batch)


def train_step(job: Job, *batches: list[int]) -> float:
    """One optimizer step; returns its loss. With several batches (gradient accumulation) each one's gradients
    are added up, each loss divided by their number, so the step sees the mean over all their examples."""
    job.run.learning_rates.append(job.optimizer.param_groups[0]["lr"])
    value = 0.0
    for batch in batches:
        loss = batch_loss(job, batch)
        if len(batches) > 1:
            loss = loss / len(batches)
        job.scaler.scale(loss).backward()
        value += loss.item()
    if job.config.max_grad_norm > 0:
        job.scaler.unscale_(job.optimizer)
        nn.utils.clip_grad_norm_(job.trainable, job.config.max_grad_norm)
    scale = job.scaler.get_scale() if job.scaler.is_enabled() else None
    job.scaler.step(job.optimizer)
    job.scaler.update()
    if scale is not None and job.scaler.get_scale() < scale:
        # float16 overflowed: the scaler skipped this update and halved its scale. As Trainer (through accelerate)
        # does, the schedule waits for the next real step.
        job.run.meta["skipped_steps"] = job.run.meta.get("skipped_steps", 0) + 1
    else:
        job.scheduler.step()
    job.optimizer.zero_grad(set_to_none=True)
    job.run.train_losses.append(value)
    job.since_point.append(value)
    return value


def one_epoch(job: Job) -> None:
    """A pass over the shuffled training batches, `gradient_accumulation_steps` of them per optimizer step,
    evaluating every `eval_every` steps and at the very end."""
    meta, accumulate = job.run.meta, job.config.gradient_accumulation_steps
    batches = training_batches([len(x) for x in job.train["input_ids"]], job.config.per_device_train_batch_size,
                               job.shuffler)
    for start in range(0, len(batches), accumulate):
        job.dispatch("on_step_begin", job.step)
        loss = train_step(job, *batches[start:start + accumulate])
        job.step += 1
        job.dispatch("on_step_end", job.step, loss)
        if job.step % meta["eval_every"] == 0 or job.step == meta["total_steps"]:
            add_point(job)
        if job.step >= meta["total_steps"]:
            return


def fit(job: Job) -> None:
    """Evaluate where the model starts (step 0), then train epoch after epoch until the planned steps are done."""
    job.model.train()
    job.t0 = time.perf_counter()
    job.dispatch("on_train_begin")
    add_point(job)
    while job.step < job.run.meta["total_steps"]:
        one_epoch(job)


def finish(job: Job, keep_model: bool) -> None:
    """End a run however it ended: the run's own rules first (early stopping puts the best weights back), then
    the kept model is scored on the whole validation split, then the learner's callbacks see the final run."""
    run = job.run
    run.meta["train_s"] = time.perf_counter() - job.t0
    t = time.perf_counter()
    try:
        if run.history:
            run.kept["step"] = run.history[-1]["step"]
        for rule in job.rules:
            rule.on_train_end(run)
        if run.status != "failed" and run.history:
            _score_kept(job)
    finally:
        if job.prefix is not None:
            job.prefix.remove()
        job.model.eval()
    if job.thorough and run.status != "failed":  # what the kept model still knows (measures.py)
        run.kept[job.objective.measure_name] = job.objective.measure(job.model, job.tokenizer, job.device)
    run.meta["finish_s"] = time.perf_counter() - t
    run.meta["first_train_loss"] = run.history[0]["train_loss"] if run.history else None  # where the curve starts
    if keep_model:  # an LLM's: run.predict scores the label words
        run.model, run.tokenizer = job.objective.for_predict(job.model, job.tokenizer)
    for callback in job.callbacks:
        callback.on_train_end(run)


def _score_kept(job: Job) -> None:
    """The kept model on the whole validation split: loss, accuracy, and its errors by kind of message."""
    validation = job.validation
    loss, accuracy, predicted = evaluate(job, validation["input_ids"], validation["label"], job.validation_states)
    job.run.kept.update(validation_loss=loss, validation_accuracy=accuracy,
                        errors_by_phenomenon=errors_by_phenomenon(predicted, validation["label"],
                                                                  validation["phenomenon"]))


def fine_tune(config: FineTuneConfig | None = None, callbacks: Iterable = (), stop_event: threading.Event | None = None,
              keep_model: bool = True, lr_lambda: Callable[[int], float] | None = None, thorough: bool = False) -> Run:
    """Fine-tune a pretrained model as `config` says; blocks until the run ends and returns its `Run`.

    `stop_event` (a `threading.Event`) is checked before every step: set it to end the run, keeping its
    history. With `keep_model=False` the trained weights are dropped at the end (sweeps that only need
    the curves keep less memory alive); `run.predict` then explains that they are gone. `lr_lambda(step)`
    replaces the schedule with learning_rate x lr_lambda(step) (the learning-rate finder uses it).
    `thorough=True` also measures, as recorded runs do, the training loss in eval mode at every point
    (`train_eval_loss`) and what the kept model forgot: an encoder's sentence similarity (`run.kept["similarity"]`,
    against `run.meta["similarity_before"]`), a decoder LLM's next-token loss on everyday text (`run.kept["lm_loss"]`,
    against `run.meta["lm_loss_before"]`).

    A run that raises keeps what it had: its status is "failed" (or "stopped" on Ctrl-C), `run.error` says
    why, the callbacks' `on_train_end` still runs, and the exception carries the run as `error.run`.
    """
    config = config or FineTuneConfig()
    if not isinstance(config, FineTuneConfig):
        raise TypeError(f"config must be a FineTuneConfig, not {type(config).__name__}")
    job = prepare(config, lr_lambda, thorough)
    job.callbacks = [c if isinstance(c, Callback) else _FunctionCallback(c) for c in callbacks]
    job.rules = [StopWhenSet(stop_event)] if stop_event is not None else []
    job.rules.append(DivergenceGuard())
    if config.early_stopping_patience:
        job.rules.append(EarlyStopping(config.early_stopping_patience, job.trainable))
    run = job.run
    try:
        fit(job)
        run.status = "finished"
    except EndTraining as end:
        run.status = end.status
        if end.evaluate:  # e.g. where a diverged run ended up
            with contextlib.suppress(EndTraining):
                add_point(job)
    except BaseException as error:
        run.status = "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
        run.error = f"{type(error).__name__}: {error}"
        error.run = run  # nothing lost: whoever catches this still has the history so far
        raise
    finally:
        finish(job, keep_model)
    return run


_MEASURED_BEFORE: dict[tuple, float] = {}


def measured_before(config: FineTuneConfig, objective, model, tokenizer, device) -> float:
    """What the untouched model knows, measured once per model in a process: an encoder's sentence similarity, a
    decoder LLM's next-token loss on everyday text (the objective's `measure`)."""
    key = (objective.measure_name, config.model_name, config.from_scratch,
           config.seed if config.from_scratch else None, str(device))
    if key not in _MEASURED_BEFORE:
        _MEASURED_BEFORE[key] = objective.measure(model.to(device), tokenizer, device)
    return _MEASURED_BEFORE[key]
