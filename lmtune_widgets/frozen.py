"""Frozen features: the frozen bottom of a model computed once per example, then replayed while the top trains.

    prefix = FrozenPrefix(model, n)                     # embeddings + layers[:n] are frozen, in eval mode
    train_states, validation_states, source = frozen_features(prefix, key, model_dir, parts, assemble, ...)

The embeddings and the bottom `freeze_layers` layers run in eval mode (no dropout), so their output for an example
is the same every epoch. It is computed once (`FrozenPrefix.compute`) and replayed (`FrozenPrefix.install` swaps
those layers for replays), so a training step runs only the trainable top. The features are kept between runs:
in memory for the next run in this process that shares them (the panel reruns with a new learning rate), and on
disk (`feature_cache`) for the next process.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Callable, Sequence

import torch
from torch import nn

from . import feature_cache
from .batching import by_length, pad_batch
from .config import FineTuneConfig
from .models import transformer_layers


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


def prefix_key(config: FineTuneConfig, device: torch.device) -> tuple:
    key = (config.model_name, config.from_scratch, config.seed if config.from_scratch else None,
           config.freeze_layers, config.task, config.dataset, config.max_length, config.max_train_samples,
           config.max_eval_samples, str(device))
    from .data_files import data_stamp, is_local_path

    if config.dataset is not None and is_local_path(config.dataset):  # a learner's file: edited, it is other data
        key += (data_stamp(config.dataset),)
    if config.text_column is not None or config.label_column is not None:  # other columns, other data
        key += (config.text_column, config.label_column)
    return key


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


def clear_caches() -> None:
    """Forget the frozen features kept between runs (frees their memory)."""
    with _PREFIX_LOCK:
        _PREFIX_CACHE.clear()



def frozen_features(prefix: FrozenPrefix, key: tuple, model_dir: str, parts: Sequence[Sequence[Sequence[int]]],
                    assemble: Callable[[list], tuple], pad_id: int, device: torch.device,
                    autocast=contextlib.nullcontext(), precision: str = "float32") -> tuple[list, list, str]:
    """(training states, validation states, where they came from) for a run whose frozen part is `prefix`, and the
    replay installed. Looked up in memory under `key`, then on disk, else computed part by part in the order of
    `parts` (the evaluated examples first, so their numbers never depend on the rest) and saved.
    `assemble(states of each part)` makes the (training, validation) pair a run reads."""
    cached, source = _cached_prefix(key), "memory"
    if cached is None:  # then the disk, where an earlier process may have left them (feature_cache.py)
        disk_name = feature_cache.entry_name(key, model_dir, parts, precision)
        found = feature_cache.load(disk_name, device, parts)
        if found is not None:
            source = "disk"
        else:
            found = (*(prefix.compute(part, pad_id, device, autocast) for part in parts), prefix.returns_tuple)
            feature_cache.save(disk_name, found)
            source = "computed"
        cached = (*assemble(list(found[:-1])), found[-1])
        _store_prefix(key, cached)
    train_states, validation_states, prefix.returns_tuple = cached
    prefix.install()
    return train_states, validation_states, source
