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
import platform
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import feature_cache
from .config import FineTuneConfig
from .data import flip_labels, load_splits, tokenize
from .models import (count_parameters, freeze_bottom, is_causal_lm, load_model, resolve_model_path,
                     transformer_layers)
from .runs import Run

DIVERGENCE_FACTOR = 3.0  # recent train loss above this x the first loss means the run blew up
EVAL_BATCH_SIZE = 128
TRAIN_EVAL_SAMPLES = 256  # the fixed training subsample scored in eval mode (step 0, and `thorough` runs)
LLM_TRAIN_EVAL_SAMPLES = 64  # the same for a decoder LLM
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


# --------------------------------------------------------------------------------------------- devices, precision
def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' is not valid here: no CUDA GPU is available; use 'auto' or 'cpu'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' is not valid here: no Apple GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)


def pick_precision(device_type: str, capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype for a device: bfloat16 on GPUs that have it natively (compute capability 8.0 and up:
    A100, H100, RTX 30xx/40xx), float16 on older ones (a Colab T4 is 7.5; `torch.cuda.is_bf16_supported()`
    also counts slow emulation), and None (plain float32) on CPUs and Apple GPUs."""
    if device_type != "cuda":
        return None
    if capability is None:
        capability = torch.cuda.get_device_capability()
    return torch.bfloat16 if capability >= (8, 0) else torch.float16


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """One mixed-precision context per run, entered at every forward pass (a no-op in float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------- optimizer
def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups as `Trainer` makes them: no decay for biases and LayerNorm/RMSNorm weights."""
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{module_name}.{name}" if module_name else name
            skip = isinstance(module, nn.LayerNorm) or NO_DECAY.search(full.lower())
            (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def schedule_steps(config: FineTuneConfig, num_train: int) -> tuple[int, int, int]:
    """(steps per epoch, total optimizer steps, warmup steps) for a training set of `num_train` examples.
    One optimizer step takes `gradient_accumulation_steps` batches: the effective batch size."""
    steps_per_epoch = math.ceil(num_train / config.effective_batch_size)
    total = max(1, math.ceil(config.num_train_epochs * steps_per_epoch))
    warmup = math.ceil(config.warmup_ratio * total)
    return steps_per_epoch, total, warmup


def scheduler_kwargs(config: FineTuneConfig, total: int) -> dict[str, Any]:
    """What `TrainingArguments.lr_scheduler_kwargs` would hold for the config's schedule: warmup_stable_decay's
    decay steps (ceil(lr_decay_ratio x total), like warmup's), cosine_with_min_lr's floor."""
    if config.lr_scheduler_type == "warmup_stable_decay":
        return {"num_decay_steps": math.ceil(config.lr_decay_ratio * total)}
    if config.lr_scheduler_type == "cosine_with_min_lr":
        return {"min_lr_rate": config.min_lr_rate}
    return {}


def make_scheduler(config: FineTuneConfig, optimizer, total: int, warmup: int):
    from transformers import get_scheduler

    return get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total,
                         scheduler_specific_kwargs=scheduler_kwargs(config, total) or None)


def planned_learning_rates(config: FineTuneConfig, num_train: int | None = None) -> list[float]:
    """The learning rate of every optimizer step the config will take, without training anything."""
    num_train = num_train or config.max_train_samples
    _, total, warmup = schedule_steps(config, num_train)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = make_scheduler(config, optimizer, total, warmup)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


# --------------------------------------------------------------------------------------------- batching
def pad_batch(ids: list[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad a list of token-id lists to the longest one: input_ids and attention_mask, (B, T)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def training_batches(lengths: list[int], batch_size: int, generator: torch.Generator,
                     megabatch: int = 8) -> list[list[int]]:
    """One epoch of random batches of similar length (like Trainer's `group_by_length`).

    The examples are shuffled, cut into megabatches of `megabatch` batches, each sorted by length and cut
    into batches; then the batches are shuffled. Batches stay random but pad far less: on the bundled
    data the padded length drops from about 40 tokens to about 26.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = batch_size * megabatch
    batches = []
    for start in range(0, len(order), size):
        chunk = sorted(order[start : start + size], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def by_length(ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (for evaluation: less padding, same result)."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------------------- frozen prefix
class _Captured(Exception):
    pass


class _Replay(nn.Module):
    """Stands in for a frozen layer while training: returns the cached output instead of computing it."""

    def __init__(self, prefix: "FrozenPrefix", last: bool):
        super().__init__()
        self.__dict__["prefix"] = prefix  # not a submodule
        self.last = last

    def forward(self, hidden_states, *args, **kwargs):
        out = self.prefix.current if self.last else hidden_states
        return (out,) if self.prefix.returns_tuple else out


class FrozenPrefix:
    """Computes the frozen bottom of a model once per example, then replays it.

    The embeddings and layers[:n] are frozen and kept in eval mode (no dropout), so their output for a
    given example never changes. `compute` runs them once; `installed()` swaps those layers for replays,
    so a training step runs only the trainable top. Works for any architecture whose layers take the
    hidden states as their first argument (BERT, DistilBERT, RoBERTa, GPT-2, Llama, Qwen, ...).
    """

    def __init__(self, model: nn.Module, n: int):
        self.model, self.n = model, n
        self.layers = transformer_layers(model)
        self.originals = list(self.layers[:n])
        self.returns_tuple = False
        self.current: torch.Tensor | None = None

    @torch.no_grad()
    def compute(self, ids: list[list[int]], pad_id: int, device: torch.device,
                autocast=contextlib.nullcontext()) -> list[torch.Tensor]:
        """The output of layer n-1 for each example, (length, hidden), without padding."""
        out: list[torch.Tensor | None] = [None] * len(ids)
        captured = {}

        def hook(module, args, output):
            self.returns_tuple = isinstance(output, tuple)
            captured["h"] = output[0] if isinstance(output, tuple) else output
            raise _Captured  # the rest of the model is not needed

        was_training = self.model.training
        self.model.eval()
        handle = self.originals[-1].register_forward_hook(hook)
        try:
            for batch in by_length(ids, 64):
                inputs = pad_batch([ids[i] for i in batch], pad_id, device)
                try:
                    with autocast:
                        self.model(**inputs)
                except _Captured:
                    pass
                hidden = captured["h"].float()
                for row, i in enumerate(batch):
                    out[i] = hidden[row, : len(ids[i])].clone()
        finally:
            handle.remove()
            self.model.train(was_training)
        return out

    def use(self, states: list[torch.Tensor]) -> None:
        """Set the cached states of the next batch, padded like its input_ids: (B, T, hidden)."""
        self.current = nn.utils.rnn.pad_sequence(states, batch_first=True)

    def install(self) -> None:
        for i in range(self.n):
            self.layers[i] = _Replay(self, last=(i == self.n - 1))

    def remove(self) -> None:
        for i, layer in enumerate(self.originals):
            self.layers[i] = layer
        self.current = None


# Frozen features are reused between runs in one process (the panel reruns with a new learning rate):
# the cache holds one entry, keyed by everything that changes what the frozen layers see.
_PREFIX_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_PREFIX_CACHE_SIZE = 1
_PREFIX_LOCK = threading.Lock()


def _prefix_key(config: FineTuneConfig, device: torch.device) -> tuple:
    return (config.model_name, config.from_scratch, config.seed if config.from_scratch else None,
            config.freeze_layers, config.task, config.dataset, config.max_length, config.max_train_samples,
            config.max_eval_samples, str(device))


def _cached_prefix(key: tuple):
    """The frozen features stored under `key`, or None."""
    with _PREFIX_LOCK:
        return _PREFIX_CACHE.get(key)


def _store_prefix(key: tuple, cached: tuple) -> None:
    """Keep frozen features for the next run, dropping the oldest beyond the cache's size."""
    with _PREFIX_LOCK:
        _PREFIX_CACHE[key] = cached
        while len(_PREFIX_CACHE) > _PREFIX_CACHE_SIZE:
            _PREFIX_CACHE.popitem(last=False)


def _job(config, run, model, tokenizer, device, autocast, dtype, train, validation, prefix, train_states,
         validation_states, total_steps, warmup_steps, lr_lambda, thorough, objective=None) -> "Job":
    """The optimizer, schedule and scaler of a prepared run, bundled as its Job (both training routes)."""
    torch.manual_seed(config.seed)  # dropout
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.learning_rate,
                                  betas=(0.9, 0.999), eps=1e-8)
    scheduler = (make_scheduler(config, optimizer, total_steps, warmup_steps) if lr_lambda is None
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Job(config, run, model, tokenizer, device, autocast, scaler, optimizer, scheduler, train, validation,
               prefix, train_states, validation_states, torch.Generator().manual_seed(config.shuffle_seed), thorough,
               trainable=[p for p in model.parameters() if p.requires_grad], objective=objective)


def clear_caches() -> None:
    """Forget the frozen features kept between runs (frees their memory)."""
    with _PREFIX_LOCK:
        _PREFIX_CACHE.clear()


def check_fits(config: FineTuneConfig, num_train: int, num_layers: int) -> None:
    """The checks that need the model and the data: raise the same ValueError the run would."""
    if config.lora_r > 0 and not is_causal_lm(config.model_name):
        raise ValueError(f"lora_r={config.lora_r} applies to decoder LLMs (model_name='smollm2', or a hub causal LM); "
                         f"{config.model_name} is fine-tuned with a classification head, where freeze_layers "
                         "chooses what trains: allowed lora_r=0")
    if config.freeze_layers > num_layers:
        raise ValueError(f"freeze_layers={config.freeze_layers} is out of range: allowed from 0 to {num_layers} "
                         f"({config.model_name} has {num_layers} layers)")
    if config.per_device_train_batch_size > num_train:
        raise ValueError(f"per_device_train_batch_size={config.per_device_train_batch_size} is out of range: "
                         f"allowed from 1 to {num_train} (the training set has {num_train} examples)")


# Seconds per example per trainable layer for one forward pass, measured on a 2-core CPU with MiniLM
# (about 1.3 ms); the panel refines it from the runs it has seen.
SECONDS_PER_EXAMPLE_LAYER = 1.3e-3
LLM_WORK_FACTOR = 8  # a SmolLM2 block on a prompted message (~60 tokens, ~2x wider) costs ~8x a MiniLM layer


def estimate_seconds(config: FineTuneConfig, num_train: int, num_eval: int, num_layers: int,
                     seconds_per_example_layer: float = SECONDS_PER_EXAMPLE_LAYER) -> float:
    """A rough forecast of training + evaluation time: backward costs about twice a forward pass."""
    steps_per_epoch, total, _ = schedule_steps(config, num_train)
    trainable_layers = max(num_layers - config.freeze_layers, 0) + 0.3  # + the head
    examples_trained = min(total * config.effective_batch_size, math.ceil(config.num_train_epochs * num_train))
    evaluations = total // max(1, steps_per_epoch // config.evals_per_epoch) + 1
    work = 3 * examples_trained * trainable_layers + evaluations * num_eval * trainable_layers
    if config.freeze_layers == 0:
        work += 40 * total  # AdamW on the 12M word embeddings, every step
    if is_causal_lm(config.model_name):
        work *= LLM_WORK_FACTOR
    return work * seconds_per_example_layer


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
    objective: Any = None  # None: a class head (cross-entropy on logits); an LLM's `llm.Instructions` otherwise

    def dispatch(self, event: str, *args) -> None:
        """Call `event` on the learner's callbacks, then on the run's own rules."""
        for callback in (*self.callbacks, *self.rules):
            getattr(callback, event)(self.run, *args)


def prepare(config: FineTuneConfig, lr_lambda: Callable[[int], float] | None = None, thorough: bool = False) -> Job:
    """Set-up: data, model, frozen features (computed once, reused by the next run that shares them), optimizer.
    A decoder LLM is set up by `llm.prepare_instruction_tuning` instead: the task becomes an instruction."""
    if is_causal_lm(config.model_name):
        if config.pooling != "cls":
            raise ValueError(f"pooling={config.pooling!r} applies to a classification head; {config.model_name} "
                             "is a decoder LLM that answers in words: leave pooling='cls'")
        from .llm import prepare_instruction_tuning  # llm.py builds on this module

        return prepare_instruction_tuning(config, lr_lambda, thorough)
    device = pick_device(config.device)
    splits = load_splits(config.task, config.dataset)
    num_labels = len(splits.label_names)
    model, tokenizer = load_model(config.model_name, num_labels, config.dropout, config.from_scratch, config.seed,
                                  id2label=dict(enumerate(splits.label_names)), pooling=config.pooling)
    num_layers = len(transformer_layers(model))
    check_fits(config, num_train=min(config.max_train_samples, len(splits.train)), num_layers=num_layers)
    dtype = pick_precision(device.type)
    autocast = autocast_for(device, dtype)
    run = Run(config=config, label_names=list(splits.label_names), status="running", meta=machine_facts(device, dtype))
    if thorough:  # before any change to the weights: what the pretrained model knows
        run.meta["similarity_before"] = measured_before(config, model, tokenizer, device)
    freeze_bottom(model, config.freeze_layers)
    model.to(device)

    train = tokenize(splits.train, tokenizer, config.max_length, config.max_train_samples)
    validation = tokenize(splits.validation, tokenizer, config.max_length, None)
    validation["phenomenon"] = (list(splits.validation["phenomenon"]) if "phenomenon" in splits.validation.column_names
                                else [None] * len(validation["label"]))
    num_train, num_eval = len(train["label"]), min(config.max_eval_samples, len(validation["label"]))
    train["label"], flipped = flip_labels(train["label"], config.label_noise, num_labels, config.seed)
    steps_per_epoch, total_steps, warmup_steps = schedule_steps(config, num_train)
    eval_labels = torch.tensor(validation["label"][:num_eval])
    trainable, total_params = count_parameters(model)
    run.meta.update({
        "num_train": num_train, "num_eval": num_eval, "num_validation": len(validation["label"]),
        "num_layers": num_layers, "trainable_parameters": trainable, "total_parameters": total_params,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
        "eval_every": max(1, steps_per_epoch // config.evals_per_epoch),
        "chance_accuracy": torch.bincount(eval_labels, minlength=num_labels).max().item() / num_eval,
        "flipped_labels": int(flipped.sum()), "data": splits.source})

    # frozen features: computed once, and kept for the next run with the same frozen part
    prefix = FrozenPrefix(model, config.freeze_layers) if config.freeze_layers > 0 else None
    train_states = validation_states = None
    t_cache = time.perf_counter()
    if prefix is not None:
        key = _prefix_key(config, device)
        cached, run.meta["features_from"] = _cached_prefix(key), "memory"
        if cached is None:  # then the disk, where an earlier process may have left them (feature_cache.py)
            ids = validation["input_ids"]
            parts = [train["input_ids"], ids[:num_eval], ids[num_eval:]]
            disk_name = feature_cache.entry_name(key, resolve_model_path(config.model_name), parts, str(dtype))
            on_disk = feature_cache.load(disk_name, device, parts)
            if on_disk is not None:
                cached, run.meta["features_from"] = (on_disk[0], on_disk[1] + on_disk[2], on_disk[3]), "disk"
            else:  # the evaluated subset alone first, so its numbers never depend on the rest
                pad_id = tokenizer.pad_token_id
                computed = [prefix.compute(part, pad_id, device, autocast) for part in parts]
                feature_cache.save(disk_name, (*computed, prefix.returns_tuple))
                cached = (computed[0], computed[1] + computed[2], prefix.returns_tuple)
                run.meta["features_from"] = "computed"
            _store_prefix(key, cached)
        train_states, validation_states, prefix.returns_tuple = cached
        prefix.install()
    run.meta["cache_s"] = time.perf_counter() - t_cache

    return _job(config, run, model, tokenizer, device, autocast, dtype, train, validation, prefix, train_states,
                validation_states, total_steps, warmup_steps, lr_lambda, thorough)


def evaluate(job: Job, ids: list[list[int]], labels: list[int], states: list | None) -> tuple[float, float, list[int]]:
    """Mean loss, accuracy and each example's predicted class, in eval mode, on batches sorted by length."""
    if job.objective is not None:
        return job.objective.evaluate(job, ids, labels, states)
    job.model.eval()
    targets = torch.tensor(labels)
    loss_sum, predicted = 0.0, [0] * len(ids)
    with torch.inference_mode():
        for batch in by_length(ids, EVAL_BATCH_SIZE):
            inputs = pad_batch([ids[i] for i in batch], job.tokenizer.pad_token_id, job.device)
            if job.prefix is not None:
                job.prefix.use([states[i] for i in batch])
            with job.autocast:
                logits = job.model(**inputs).logits.float()  # (B, num_labels)
            loss_sum += nn.functional.cross_entropy(logits, targets[batch].to(job.device), reduction="sum").item()
            for i, guess in zip(batch, logits.argmax(-1).tolist()):
                predicted[i] = guess
    job.model.train()
    correct = sum(guess == label for guess, label in zip(predicted, labels))
    return loss_sum / len(ids), correct / len(ids), predicted


def _train_subsample_loss(job: Job) -> float:
    """The loss on the first `TRAIN_EVAL_SAMPLES` training examples (their labels as trained), in eval mode; for
    a decoder LLM, whose every message costs ~50x MiniLM's work, on the first `LLM_TRAIN_EVAL_SAMPLES`."""
    n = min(len(job.train["label"]), TRAIN_EVAL_SAMPLES if job.objective is None else LLM_TRAIN_EVAL_SAMPLES)
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
    if job.objective is not None:
        return job.objective.batch_loss(job, batch)
    inputs = pad_batch([job.train["input_ids"][i] for i in batch], job.tokenizer.pad_token_id, job.device)
    labels = torch.tensor([job.train["label"][i] for i in batch], device=job.device)
    if job.prefix is not None:
        job.prefix.use([job.train_states[i] for i in batch])
    with job.autocast:
        logits = job.model(**inputs).logits.float()  # (B, num_labels)
    return nn.functional.cross_entropy(logits, labels, label_smoothing=job.config.label_smoothing_factor)


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
        from .measures import general_text_loss, sentence_similarity

        if job.objective is None:  # an encoder: its sentence similarity
            run.kept["similarity"] = sentence_similarity(job.model, job.tokenizer, job.device)
        else:  # a decoder LLM: its next-token loss on everyday text
            run.kept["lm_loss"] = general_text_loss(job.model, job.tokenizer, job.device)
    run.meta["finish_s"] = time.perf_counter() - t
    run.meta["first_train_loss"] = run.history[0]["train_loss"] if run.history else None  # where the curve starts
    if keep_model:
        run.model, run.tokenizer = job.model, job.tokenizer
        if job.objective is not None:  # an LLM: run.predict scores the label words
            run.model, run.tokenizer = job.objective.for_predict(job.model, job.tokenizer)
    for callback in job.callbacks:
        callback.on_train_end(run)


def _score_kept(job: Job) -> None:
    """The kept model on the whole validation split: loss, accuracy, and its errors by kind of message."""
    from .measures import errors_by_phenomenon

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


def machine_facts(device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    """Where and how a run ran: a recorded run is only reproduced bit for bit on the same kind."""
    import transformers

    from . import __version__

    return {"device": str(device), "precision": str(dtype or torch.float32).replace("torch.", ""),
            "threads": torch.get_num_threads(), "processor": _processor(device), "torch": torch.__version__,
            "transformers": transformers.__version__, "kit": __version__}


@lru_cache(maxsize=None)
def _processor(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_MEASURED_BEFORE: dict[tuple, float] = {}


def measured_before(config: FineTuneConfig, model, tokenizer, device) -> float:
    """What the untouched model knows, measured once per model in a process: an encoder's sentence similarity, a
    decoder LLM's next-token loss on everyday text (measures.py)."""
    from .measures import general_text_loss, sentence_similarity

    measure = general_text_loss if is_causal_lm(config.model_name) else sentence_similarity
    key = (measure.__name__, config.model_name, config.from_scratch, config.seed if config.from_scratch else None,
           str(device))
    if key not in _MEASURED_BEFORE:
        _MEASURED_BEFORE[key] = measure(model.to(device), tokenizer, device)
    return _MEASURED_BEFORE[key]
