"""What a run's kept model scores beyond its curves: errors by kind of message, and what it forgot.

    from lmtune_widgets.measures import sentence_similarity, errors_by_phenomenon, spearman
    sentence_similarity(model, tokenizer)     # 0.8x for the pretrained MiniLM; lower once it forgets
    errors_by_phenomenon([1, 0], [1, 1], ["plain", "sarcasm"])   # {"plain": [0, 1], "sarcasm": [1, 1]}
    general_text_loss(lm, tokenizer)          # a decoder LLM's next-token loss on everyday text; higher once it forgets

**Forgetting.** MiniLM (all-MiniLM-L6-v2) was pretrained to place sentences of similar meaning close together.
Fine-tuning it for sentiment can wear that ability away. `sentence_similarity` measures it: the Spearman rank
correlation between the cosine similarity of the model's mean-pooled sentence embeddings and human scores
(0 = unrelated to 5 = same meaning) on `data/similarity_pairs.csv`, 79 pairs written for this kit. The same
pooling as the model's pretraining (mean over the tokens), so the untouched model is measured as it was trained.
Forgetting = the score before fine-tuning minus the score after. A model whose encoder is fully frozen
(`freeze_layers` = all, head only) forgets nothing by construction.

A decoder LLM has no sentence embeddings to compare; what it was pretrained for is predicting the next word of
ordinary text. `general_text_loss` measures that: its mean next-token loss (nats per token; lower is better) on the
104 distinct sentences of the same pairs file, as plain text: everyday English, most of it about anything but
the task (cats, guitars, weather), some about orders and service. Forgetting is then the loss after
fine-tuning minus the loss before. Adapters that leave the model's language alone leave this number where it was.
"""
from __future__ import annotations

import csv
from functools import lru_cache

import torch

SIMILARITY_FILE = "similarity_pairs.csv"


@lru_cache(maxsize=1)
def similarity_pairs() -> tuple[list[str], list[str], list[float]]:
    """(first sentences, second sentences, human scores 0-5) of the bundled pairs."""
    from .data import bundled_data_path

    with open(bundled_data_path(SIMILARITY_FILE), newline="") as file:
        rows = list(csv.DictReader(file))
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r["score"]) for r in rows]


def _ranks(values: list[float]) -> torch.Tensor:
    """Ranks from 1, ties sharing their average rank (as Spearman's rho needs)."""
    x = torch.tensor(values, dtype=torch.float64)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    for value in torch.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / torch.sqrt((ra**2).sum() * (rb**2).sum()))


@torch.inference_mode()
def sentence_embeddings(model, tokenizer, texts: list[str], device=None) -> torch.Tensor:
    """Mean-pooled last hidden states of the model's encoder, one row per text: (N, hidden)."""
    base = getattr(model, model.base_model_prefix, model)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(texts), 64):
        inputs = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=128,
                           return_tensors="pt").to(device)
        hidden = base(**inputs).last_hidden_state.float()  # (B, T, H)
        mask = inputs["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        rows.append((hidden * mask).sum(1) / mask.sum(1))
    model.train(was_training)
    return torch.cat(rows)


def sentence_similarity(model, tokenizer, device=None) -> float:
    """How well the model still tells similar sentences from different ones (Spearman, -1 to 1)."""
    first, second, scores = similarity_pairs()
    a = sentence_embeddings(model, tokenizer, first, device)
    b = sentence_embeddings(model, tokenizer, second, device)
    cosine = torch.nn.functional.cosine_similarity(a, b).tolist()
    return spearman(cosine, scores)


@lru_cache(maxsize=1)
def general_sentences() -> tuple[str, ...]:
    """The distinct sentences of the similarity pairs, in file order (104): everyday English."""
    first, second, _ = similarity_pairs()
    return tuple(dict.fromkeys(first + second))


@torch.inference_mode()
def general_text_loss(model, tokenizer, device=None, batch_size: int = 32) -> float:
    """A causal LM's mean next-token loss (nats per token) on `general_sentences()`, as plain text (no prompt)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    texts = list(general_sentences())
    total, tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        inputs = tokenizer(texts[start:start + batch_size], padding=True, return_tensors="pt").to(device)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, vocab)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # each next token's
        real = mask[:, 1:].bool()  # padding is neither predicted nor counted
        total -= logprobs[real].sum().item()
        tokens += int(real.sum())
    model.train(was_training)
    return total / tokens


def errors_by_phenomenon(predicted: list[int], labels: list[int], phenomena: list) -> dict[str, list[int]]:
    """{phenomenon: [errors, messages]} for the examples that have a phenomenon (the bundled data does)."""
    counts: dict[str, list[int]] = {}
    for guess, label, kind in zip(predicted, labels, phenomena):
        if kind is None:
            continue
        row = counts.setdefault(kind, [0, 0])
        row[0] += int(guess != label)
        row[1] += 1
    return dict(sorted(counts.items()))
