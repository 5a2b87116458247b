"""Batches: inputs padded per batch (not to a fixed length), training batches of similar length, evaluation
batches sorted by length. Both kinds of model and the frozen-feature replay batch this way."""
from __future__ import annotations

import torch


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

