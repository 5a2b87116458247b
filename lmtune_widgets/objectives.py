"""What a run learns and how it is scored: the two objectives of a fine-tune, behind one set of operations.

    objective = objective_for(config)        # ClassHead for an encoder, InstructionTuning for a decoder LLM
    model, tokenizer = objective.load(splits)
    model = objective.adapt(model, num_layers)       # what trains: the top layers, or LoRA adapters
    train, validation, num_eval, meta = objective.encode(splits, tokenizer)
    loss = objective.batch_loss(job, batch)          # a training batch's mean loss
    loss, accuracy, predicted = objective.evaluate(job, ids, labels, states)

`training.prepare` and the loop call only these, so both kinds of model share one set-up, one loop and one
frozen-feature replay (frozen.py):
- `ClassHead`: an encoder (MiniLM, or any `AutoModelForSequenceClassification`) with a new, seeded
  classification head; the loss is the cross-entropy of the class logits. The kept model is scored on the whole
  validation split; what it forgot is its sentence similarity (measures.py).
- `InstructionTuning`: a decoder LLM fine-tuned the way LLMs are: the task as a chat instruction, the label word
  as the answer (llm.py). The loss covers the answer tokens only. With LoRA (`lora_r > 0`) every pretrained weight is
  frozen and adapters go into the blocks above `freeze_layers`. For an LLM the kept model is scored on the
  `max_eval_samples` evaluated messages only: every message costs ~50x MiniLM's work. What it forgot is its
  next-token loss on everyday text.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .batching import by_length, pad_batch
from .config import FineTuneConfig
from .data import Splits, flip_labels, tokenize
from .llm import Instructions, LabelScorer, PromptTokenizer, answer_logprobs
from .measures import general_text_loss, sentence_similarity
from .models import (add_lora, freeze_bottom, is_causal_lm, load_causal_lm, load_model, model_path,
                     resolve_model_path)

EVAL_BATCH_SIZE = 128  # messages per evaluation batch of a classifier


class ClassHead:
    """An encoder with a new classification head: cross-entropy of the class logits."""

    train_eval_samples = 256  # the fixed training subsample scored in eval mode (step 0, and `thorough` runs)
    measure_name = "similarity"  # what the kept model still knows: its sentence similarity

    def __init__(self, config: FineTuneConfig):
        self.config = config

    def load(self, splits: Splits):
        config = self.config
        return load_model(config.model_name, len(splits.label_names), config.dropout, config.from_scratch,
                          config.seed, id2label=dict(enumerate(splits.label_names)), pooling=config.pooling)

    def adapt(self, model: nn.Module, num_layers: int) -> nn.Module:
        freeze_bottom(model, self.config.freeze_layers)
        return model

    def encode(self, splits: Splits, tokenizer) -> tuple[dict, dict, int, dict[str, Any]]:
        """Token ids and labels (training labels flipped as `label_noise` says); the whole validation split, of
        which the first `max_eval_samples` are evaluated at each point."""
        config = self.config
        train = tokenize(splits.train, tokenizer, config.max_length, config.max_train_samples)
        validation = tokenize(splits.validation, tokenizer, config.max_length, None)
        validation["phenomenon"] = (list(splits.validation["phenomenon"])
                                    if "phenomenon" in splits.validation.column_names
                                    else [None] * len(validation["label"]))
        num_eval = min(config.max_eval_samples, len(validation["label"]))
        train["label"], flipped = flip_labels(train["label"], config.label_noise, len(splits.label_names), config.seed)
        return train, validation, num_eval, {"flipped_labels": int(flipped.sum())}

    def model_dir(self) -> str:
        return resolve_model_path(self.config.model_name)

    def frozen_parts(self, key: tuple, train: dict, validation: dict, num_eval: int) -> tuple[tuple, list, Callable]:
        """(memory key, the id lists whose frozen features a run needs, how they make (training, validation))."""
        ids = validation["input_ids"]
        return key, [train["input_ids"], ids[:num_eval], ids[num_eval:]], lambda s: (s[0], s[1] + s[2])

    def batch_loss(self, job, batch: list[int]) -> torch.Tensor:
        """Cross-entropy of the class logits, smoothed as `label_smoothing_factor` says (as Trainer's
        `LabelSmoother`)."""
        inputs = pad_batch([job.train["input_ids"][i] for i in batch], job.tokenizer.pad_token_id, job.device)
        labels = torch.tensor([job.train["label"][i] for i in batch], device=job.device)
        if job.prefix is not None:
            job.prefix.use([job.train_states[i] for i in batch])
        with job.autocast:
            logits = job.model(**inputs).logits.float()  # (B, num_labels)
        return nn.functional.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing_factor)

    def evaluate(self, job, ids: list, labels: list[int], states: list | None) -> tuple[float, float, list[int]]:
        """Mean loss, accuracy and each example's predicted class, in eval mode, on batches sorted by length."""
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

    def measure(self, model: nn.Module, tokenizer, device) -> float:
        return sentence_similarity(model, tokenizer, device)

    def for_predict(self, model: nn.Module, tokenizer) -> tuple[nn.Module, Any]:
        """What `run.model` and `run.tokenizer` are: the classifier itself."""
        return model, tokenizer


class InstructionTuning:
    """A decoder LLM fine-tuned on instructions: the label word as the answer, its tokens the only loss."""

    train_eval_samples = 64  # a prompted message costs ~50x MiniLM's work: a smaller fixed subsample
    measure_name = "lm_loss"  # what the kept model still knows: its next-token loss on everyday text

    def __init__(self, config: FineTuneConfig):
        if config.pooling != "cls":
            raise ValueError(f"pooling={config.pooling!r} applies to a classification head; {config.model_name} "
                             "is a decoder LLM that answers in words: leave pooling='cls'")
        self.config = config
        self.instructions: Instructions | None = None  # made by `encode`, with the tokenizer

    def load(self, splits: Splits):
        config = self.config
        return load_causal_lm(config.model_name, config.dropout, config.from_scratch, config.seed)

    def adapt(self, model: nn.Module, num_layers: int) -> nn.Module:
        if self.config.lora_r > 0:
            return add_lora(model, self.config, num_layers)
        freeze_bottom(model, self.config.freeze_layers)
        return model

    def encode(self, splits: Splits, tokenizer) -> tuple[dict, dict, int, dict[str, Any]]:
        """Prompt + answer sequences: the gold answer for training; for evaluation the gold answer when every
        label is one token, else a sequence per candidate label. Only the evaluated messages are kept."""
        config, label_names = self.config, list(splits.label_names)
        instructions = self.instructions = Instructions.make(tokenizer, label_names)
        num_train = min(config.max_train_samples, len(splits.train))
        num_eval = min(config.max_eval_samples, len(splits.validation))
        train_split, eval_split = splits.train.select(range(num_train)), splits.validation.select(range(num_eval))
        encode = lambda texts: tokenizer(list(texts), add_special_tokens=False, truncation=True,  # noqa: E731
                                         max_length=config.max_length).input_ids
        train_labels, flipped = flip_labels(list(train_split["label"]), config.label_noise, len(label_names),
                                            config.seed)
        eval_labels = list(eval_split["label"])
        train = {"input_ids": instructions.sequences(encode(train_split["text"]), train_labels, candidates=False),
                 "label": train_labels, "text": list(train_split["text"])}
        validation = {"input_ids": instructions.sequences(encode(eval_split["text"]), eval_labels,
                                                          candidates=not instructions.single_token),
                      "label": eval_labels, "text": list(eval_split["text"]),
                      "phenomenon": (list(eval_split["phenomenon"]) if "phenomenon" in eval_split.column_names
                                     else [None] * num_eval)}
        return train, validation, num_eval, {
            "flipped_labels": int(flipped.sum()), "objective": "instruction",
            "prompt_tokens": len(instructions.before) + len(instructions.after),
            "mean_train_tokens": sum(map(len, train["input_ids"])) / num_train}

    def model_dir(self) -> str:
        return model_path(self.config.model_name)

    def frozen_parts(self, key: tuple, train: dict, validation: dict, num_eval: int) -> tuple[tuple, list, Callable]:
        """The answers are part of the inputs, so the labels (and their noise) are in the key. Candidate sequences
        of a message are flattened for the features, then regrouped per message."""
        config = self.config
        key = (*key, "instruction", config.label_noise, config.seed if config.label_noise else None)
        nested = not self.instructions.single_token
        flat = [seq for x in validation["input_ids"] for seq in (x if nested else [x])]
        k = len(self.instructions.label_ids)

        def assemble(states):
            evaluated, train_states = states
            if nested:  # one state per candidate answer of each message
                evaluated = [evaluated[i * k:(i + 1) * k] for i in range(num_eval)]
            return train_states, evaluated

        return key, [flat, train["input_ids"]], assemble

    def batch_loss(self, job, batch: list[int]) -> torch.Tensor:
        """Mean cross-entropy of the gold answer tokens of a training batch (the prompt is not trained on)."""
        ids = [job.train["input_ids"][i] for i in batch]
        answers = [len(self.instructions.label_ids[job.train["label"][i]]) for i in batch]
        states = [job.train_states[i] for i in batch] if job.prefix is not None else None
        token_logprobs, _ = answer_logprobs(job.model, ids, answers, job.tokenizer.pad_token_id, job.device,
                                            job.autocast, job.prefix, states,
                                            smoothing=self.config.label_smoothing_factor)
        return -token_logprobs.sum() / sum(answers)

    def evaluate(self, job, ids: list, labels: list[int], states: list | None) -> tuple[float, float, list[int]]:
        """Mean answer-token loss, accuracy (whole log-probability of each label word) and each prediction."""
        job.model.eval()
        with torch.inference_mode():
            loss, scores = self.instructions.score(job.model, ids, labels, job.tokenizer.pad_token_id, job.device,
                                                   job.autocast, job.prefix, states)
        job.model.train()
        predicted = scores.argmax(-1).tolist()
        correct = sum(guess == label for guess, label in zip(predicted, labels))
        return loss, correct / len(ids), predicted

    def measure(self, model: nn.Module, tokenizer, device) -> float:
        return general_text_loss(model, tokenizer, device)

    def for_predict(self, model: nn.Module, tokenizer) -> tuple[LabelScorer, PromptTokenizer]:
        """`run.predict(texts)` gives label names: `run.model` scores the label words, `run.tokenizer` prompts."""
        return LabelScorer(model, self.instructions, tokenizer.pad_token_id), PromptTokenizer(tokenizer,
                                                                                              self.instructions)


def objective_for(config: FineTuneConfig) -> ClassHead | InstructionTuning:
    """The objective a config's model is fine-tuned with: instructions for a decoder LLM, a class head otherwise."""
    return InstructionTuning(config) if is_causal_lm(config.model_name) else ClassHead(config)

