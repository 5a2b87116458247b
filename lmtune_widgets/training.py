"""The fine-tuning loop: a real fine-tune of a pretrained transformer, written out in the open.

    from lmtune_widgets import FineTuneConfig, fine_tune
    run = fine_tune(FineTuneConfig(learning_rate=1e-4))
    run.history[-1]     # {"step": 96, "epoch": 3.0, "train_loss": ..., "eval_loss": ..., "eval_accuracy": ...}

Each step is the loop from transformers' `run_glue_no_trainer.py`: forward, loss, backward, clip, optimizer
step, scheduler step. Every `steps_per_epoch / evals_per_epoch` steps the model is evaluated and a point
is added to the history; callbacks see each point as it happens (the panel draws from them).

Why it is fast on a laptop CPU: the frozen bottom of the model (embeddings + `freeze_layers` layers) runs
in eval mode, so its output for an example is the same every epoch. It is computed once per example
(`FrozenPrefix`) and replayed, and only the trainable top runs each step. Inputs are padded per batch, not
to a fixed length, and evaluation runs under `torch.inference_mode` on batches sorted by length.
"""
from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .config import FineTuneConfig
from .data import flip_labels, load_splits, tokenize
from .models import count_parameters, freeze_bottom, load_model, transformer_layers
from .runs import Run

DIVERGENCE_FACTOR = 3.0  # recent train loss above this x the first loss means the run blew up
EVAL_BATCH_SIZE = 128
NO_DECAY = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


class Callback:
    """Hooks into a run, named as in transformers' `TrainerCallback`. Override what you need.

    Raise `StopTraining` from any hook to end the run early (its status becomes "stopped").
    A plain function passed as a callback is called as `on_evaluate(run, point)`.
    """

    def on_train_begin(self, run: Run) -> None: ...
    def on_step_end(self, run: Run, step: int, loss: float) -> None: ...
    def on_evaluate(self, run: Run, point: dict[str, Any]) -> None: ...
    def on_train_end(self, run: Run) -> None: ...


class StopTraining(Exception):
    """Raised by a callback to end the run now, keeping its history."""


class _FunctionCallback(Callback):
    def __init__(self, function):
        self.function = function

    def on_evaluate(self, run, point):
        self.function(run, point)


# --------------------------------------------------------------------------------------------- devices
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


def _autocast(device: torch.device):
    """bfloat16 mixed precision on GPUs that support it; plain float32 elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


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
    """(steps per epoch, total optimizer steps, warmup steps) for a training set of `num_train` examples."""
    steps_per_epoch = math.ceil(num_train / config.per_device_train_batch_size)
    total = max(1, math.ceil(config.num_train_epochs * steps_per_epoch))
    warmup = math.ceil(config.warmup_ratio * total)
    return steps_per_epoch, total, warmup


def make_scheduler(config: FineTuneConfig, optimizer, total: int, warmup: int):
    from transformers import get_scheduler

    return get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total)


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
    def compute(self, ids: list[list[int]], pad_id: int, device: torch.device) -> list[torch.Tensor]:
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
                    with _autocast(device):
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


def clear_caches() -> None:
    """Forget the frozen features kept between runs (frees their memory)."""
    with _PREFIX_LOCK:
        _PREFIX_CACHE.clear()


def check_fits(config: FineTuneConfig, num_train: int, num_layers: int) -> None:
    """The checks that need the model and the data: raise the same ValueError the run would."""
    if config.freeze_layers > num_layers:
        raise ValueError(f"freeze_layers={config.freeze_layers} is out of range: allowed from 0 to {num_layers} "
                         f"({config.model_name} has {num_layers} layers)")
    if config.per_device_train_batch_size > num_train:
        raise ValueError(f"per_device_train_batch_size={config.per_device_train_batch_size} is out of range: "
                         f"allowed from 1 to {num_train} (the training set has {num_train} examples)")


# Seconds per example per trainable layer for one forward pass, measured on a 2-core CPU with MiniLM
# (about 1.3 ms); the panel refines it from the runs it has seen.
SECONDS_PER_EXAMPLE_LAYER = 1.3e-3


def estimate_seconds(config: FineTuneConfig, num_train: int, num_eval: int, num_layers: int,
                     seconds_per_example_layer: float = SECONDS_PER_EXAMPLE_LAYER) -> float:
    """A rough forecast of training + evaluation time: backward costs about twice a forward pass."""
    steps_per_epoch, total, _ = schedule_steps(config, num_train)
    trainable_layers = max(num_layers - config.freeze_layers, 0) + 0.3  # + the head
    examples_trained = min(total * config.per_device_train_batch_size, math.ceil(config.num_train_epochs * num_train))
    evaluations = total // max(1, steps_per_epoch // config.evals_per_epoch) + 1
    work = 3 * examples_trained * trainable_layers + evaluations * num_eval * trainable_layers
    if config.freeze_layers == 0:
        work += 40 * total  # AdamW on the 12M word embeddings, every step
    return work * seconds_per_example_layer


# --------------------------------------------------------------------------------------------- the loop
def fine_tune(config: FineTuneConfig | None = None, callbacks: Iterable = (), stop_event: threading.Event | None = None,
              keep_model: bool = True, lr_lambda: Callable[[int], float] | None = None) -> Run:
    """Fine-tune a pretrained model as `config` says; blocks until the run ends and returns its `Run`.

    `stop_event` (a `threading.Event`) is checked before every step: set it to end the run, keeping its
    history. With `keep_model=False` the trained weights are dropped at the end (sweeps that only need
    the curves keep less memory alive); `run.predict` then explains that they are gone. `lr_lambda(step)`
    replaces the schedule with learning_rate x lr_lambda(step) (the learning-rate finder uses it).
    """
    config = config or FineTuneConfig()
    if not isinstance(config, FineTuneConfig):
        raise TypeError(f"config must be a FineTuneConfig, not {type(config).__name__}")
    callbacks = [c if isinstance(c, Callback) else _FunctionCallback(c) for c in callbacks]
    t_setup = time.perf_counter()
    device = pick_device(config.device)

    # ---- data and model
    splits = load_splits(config.task, config.dataset)
    num_labels = len(splits.label_names)
    model, tokenizer = load_model(config.model_name, num_labels, config.dropout, config.from_scratch, config.seed,
                                  id2label=dict(enumerate(splits.label_names)))
    num_layers = len(transformer_layers(model))
    check_fits(config, num_train=min(config.max_train_samples, len(splits.train)), num_layers=num_layers)
    freeze_bottom(model, config.freeze_layers)
    model.to(device)
    train = tokenize(splits.train, tokenizer, config.max_length, config.max_train_samples)
    evalset = tokenize(splits.validation, tokenizer, config.max_length, config.max_eval_samples)
    num_train = len(train["label"])
    train_lengths = [len(x) for x in train["input_ids"]]
    train_labels, flipped = flip_labels(train["label"], config.label_noise, num_labels, config.seed)
    eval_labels = torch.tensor(evalset["label"])
    pad_id = tokenizer.pad_token_id

    steps_per_epoch, total_steps, warmup_steps = schedule_steps(config, num_train)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    trainable, total_params = count_parameters(model)
    majority = torch.bincount(eval_labels, minlength=num_labels).max().item() / len(eval_labels)
    run = Run(config=config, label_names=list(splits.label_names), status="running", meta={
        "device": str(device), "num_train": num_train, "num_eval": len(eval_labels), "num_layers": num_layers,
        "trainable_parameters": trainable, "total_parameters": total_params, "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps, "warmup_steps": warmup_steps, "eval_every": eval_every,
        "chance_accuracy": majority, "flipped_labels": int(flipped.sum()), "data": splits.source,
    })

    # ---- frozen features, computed once (and reused by the next run with the same frozen part)
    prefix = FrozenPrefix(model, config.freeze_layers) if config.freeze_layers > 0 else None
    train_states = eval_states = None
    t_cache = time.perf_counter()
    if prefix is not None:
        key = _prefix_key(config, device)
        with _PREFIX_LOCK:
            cached = _PREFIX_CACHE.get(key)
        if cached is None:
            train_states = prefix.compute(train["input_ids"], pad_id, device)
            eval_states = prefix.compute(evalset["input_ids"], pad_id, device)
            cached = (train_states, eval_states, prefix.returns_tuple)
            with _PREFIX_LOCK:
                _PREFIX_CACHE[key] = cached
                while len(_PREFIX_CACHE) > _PREFIX_CACHE_SIZE:
                    _PREFIX_CACHE.popitem(last=False)
        train_states, eval_states, prefix.returns_tuple = cached
        prefix.install()
    run.meta["cache_s"] = time.perf_counter() - t_cache

    # ---- optimizer and schedule
    torch.manual_seed(config.seed)  # dropout
    shuffler = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.learning_rate,
                                  betas=(0.9, 0.999), eps=1e-8)
    if lr_lambda is None:
        scheduler = make_scheduler(config, optimizer, total_steps, warmup_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    trainable_params = [p for p in model.parameters() if p.requires_grad]

    def evaluate(ids: list[list[int]], labels_all: torch.Tensor, states: list | None) -> tuple[float, float]:
        """Mean loss and accuracy over a data set, in eval mode, batches sorted by length."""
        model.eval()
        loss_sum, correct = 0.0, 0
        with torch.inference_mode():
            for batch in by_length(ids, EVAL_BATCH_SIZE):
                inputs = pad_batch([ids[i] for i in batch], pad_id, device)
                labels = labels_all[batch].to(device)
                if prefix is not None:
                    prefix.use([states[i] for i in batch])
                with _autocast(device):
                    logits = model(**inputs).logits.float()
                loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
                correct += (logits.argmax(-1) == labels).sum().item()
        model.train()
        return loss_sum / len(labels_all), correct / len(labels_all)

    run.meta["setup_s"] = time.perf_counter() - t_setup
    best_loss, best_state, evals_since_best = math.inf, None, 0
    recent: deque[float] = deque(maxlen=10)
    since_point: list[float] = []
    first_loss = None
    step = 0
    t0 = time.perf_counter()

    def add_point() -> dict[str, Any]:
        eval_loss, eval_accuracy = evaluate(evalset["input_ids"], eval_labels, eval_states)
        if step == 0:  # before any step: the loss on (up to) 256 training examples, so both curves start together
            n = min(num_train, 256)
            train_loss = evaluate(train["input_ids"][:n], torch.tensor(train_labels[:n]),
                                  train_states[:n] if prefix is not None else None)[0]
        else:  # the mean loss of the training batches since the last point, as Trainer logs it
            train_loss = sum(since_point) / len(since_point) if since_point else math.nan
        since_point.clear()
        with torch.no_grad():
            weight_norm = torch.sqrt(sum((p.float() ** 2).sum() for p in trainable_params)).item() if trainable_params else 0.0
        point = {"step": step, "epoch": step / steps_per_epoch, "train_loss": train_loss, "eval_loss": eval_loss,
                 "eval_accuracy": eval_accuracy, "learning_rate": run.learning_rates[-1] if run.learning_rates else 0.0,
                 "weight_norm": weight_norm, "elapsed_s": time.perf_counter() - t0}
        run.history.append(point)
        for callback in callbacks:
            callback.on_evaluate(run, point)
        return point

    model.train()
    try:
        for callback in callbacks:
            callback.on_train_begin(run)
        add_point()  # step 0: where the model starts
        status = "finished"
        while step < total_steps and status == "finished":
            for batch in training_batches(train_lengths, config.per_device_train_batch_size, shuffler):
                if stop_event is not None and stop_event.is_set():
                    status = "stopped"
                    break
                inputs = pad_batch([train["input_ids"][i] for i in batch], pad_id, device)
                labels = torch.tensor([train_labels[i] for i in batch], device=device)
                if prefix is not None:
                    prefix.use([train_states[i] for i in batch])
                run.learning_rates.append(optimizer.param_groups[0]["lr"])
                with _autocast(device):
                    logits = model(**inputs).logits.float()  # (B, num_labels)
                loss = nn.functional.cross_entropy(logits, labels)
                loss.backward()
                if config.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(trainable_params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                value = loss.item()
                run.train_losses.append(value)
                first_loss = value if first_loss is None else first_loss
                recent.append(value)
                since_point.append(value)
                for callback in callbacks:
                    callback.on_step_end(run, step, value)
                blew_up = len(recent) >= 5 and sum(recent) / len(recent) > DIVERGENCE_FACTOR * first_loss
                if not math.isfinite(value) or blew_up:
                    status = "diverged"
                    add_point()
                    break
                if step % eval_every == 0 or step == total_steps:
                    point = add_point()
                    if point["eval_loss"] < best_loss - 1e-4:
                        best_loss, evals_since_best = point["eval_loss"], 0
                        if config.early_stopping_patience:
                            best_state = {id(p): p.detach().clone() for p in trainable_params}
                    else:
                        evals_since_best += 1
                    if config.early_stopping_patience and evals_since_best >= config.early_stopping_patience:
                        run.meta["stopped_early_at_step"] = step
                        status = "early_stopped"
                        break
                if step >= total_steps:
                    break
    except StopTraining:
        status = "stopped"
    except BaseException as error:
        run.status = "stopped"
        error.run = run  # nothing lost: whoever catches this still has the history so far
        raise
    finally:
        if prefix is not None:
            prefix.remove()
        model.eval()
    if best_state is not None:  # early stopping keeps the best weights, like load_best_model_at_end
        with torch.no_grad():
            for p in trainable_params:
                p.copy_(best_state[id(p)])
        run.meta["restored_best_step"] = min(run.history, key=lambda h: h["eval_loss"])["step"]
    run.status = "finished" if status == "early_stopped" else status
    run.meta["train_s"] = time.perf_counter() - t0
    run.meta["first_train_loss"] = run.history[0]["train_loss"] if run.history else first_loss  # where the curve starts
    if keep_model:
        run.model, run.tokenizer = model, tokenizer
    for callback in callbacks:
        callback.on_train_end(run)
    return run
