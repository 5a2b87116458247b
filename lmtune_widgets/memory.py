"""How much memory fine-tuning takes, and what an epoch costs: the bill, item by item.

    from lmtune_widgets.memory import SHAPES, estimate, gb_per_billion
    bill = estimate(SHAPES["8B"], method="lora", precision="bf16", batch_size=8, seq_len=512, lora_r=16)
    bill.gb                       # {"weights": 16.1, "gradients": 0.08, "optimizer": 0.3, "activations": ..., "total": ...}
    gb_per_billion("full", "bf16")   # 16.0: weights 2 + gradients 2 + fp32 master copy 4 + AdamW's two moments 8
    epoch_cost(tokens=1.6e6, tokens_per_second=2500, price_per_hour=1.2)   # hours and money per epoch

What is counted, per parameter (AdamW, no sharding, no activation checkpointing):
- weights: every parameter, in the precision's storage: fp32 4 bytes, bf16 2, 4-bit 0.5625 (4 bits + a 16-bit
  scale per block of 64, as NF4 / QLoRA stores it; the GGUF file bundled here is Q4_1, 5 bits).
- gradients, optimizer states: only trainable parameters. AdamW keeps two fp32 moments (8 bytes). Mixed
  precision (bf16) also keeps an fp32 master copy of what trains (4 bytes) and bf16 gradients (2 bytes).
  With 4-bit base weights (QLoRA) the adapters train in fp32: 4 + 4 + 8 bytes each.
- activations: what autograd keeps for the backward pass, for every layer from the lowest trainable one up:
  frozen layers above a trainable one must still pass gradients down. Per token and layer it is about
  `9 hidden + 4 intermediate` values for a Llama block (RMSNorm inputs, the rotated q and k, attention inputs and
  output, the MLP's gate, up and product), plus `hidden + r x targets` for LoRA: counted from the saved tensors
  of SmolLM2 (tests/test_llm.py measures them). Attention here keeps no (T x T) matrix (flash/SDPA kernels).
- not counted: the framework's own overhead (CUDA context ~0.5 GB, allocator slack), the output layer's logits
  beyond the answer tokens, and the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

GB = 1e9
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "4bit": 0.5625}  # storage of one base weight
METHODS = ("full", "freeze", "lora")


@dataclass(frozen=True)
class Shape:
    """What the bill depends on: a Llama-style decoder's sizes."""

    parameters: int
    layers: int
    hidden: int
    intermediate: int
    kv_dim: int  # key/value width (num_key_value_heads x head_dim): GQA makes it smaller than hidden
    vocab: int
    tied: bool = False  # output layer shares the embedding matrix

    @property
    def embedding_parameters(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def layer_parameters(self) -> int:
        """One block: q and o (hidden x hidden), k and v (hidden x kv_dim), the MLP (3 x hidden x intermediate),
        two norms."""
        h = self.hidden
        return 2 * h * h + 2 * h * self.kv_dim + 3 * h * self.intermediate + 2 * h


# Published sizes (config.json of each model). 135M is the model bundled with the kit.
SHAPES = {
    "135M": Shape(134_515_008, 30, 576, 1536, 192, 49152, tied=True),  # SmolLM2-135M-Instruct
    "1B": Shape(1_235_814_400, 16, 2048, 8192, 512, 128256, tied=True),  # Llama-3.2-1B
    "8B": Shape(8_030_261_248, 32, 4096, 14336, 1024, 128256),  # Llama-3.1-8B
    "70B": Shape(70_553_706_496, 80, 8192, 28672, 1024, 128256),  # Llama-3.1-70B
}


def shape_of(model) -> Shape:
    """The Shape of a loaded transformers decoder (or one wrapped by peft): sizes from its config, the
    parameter count from its base weights (LoRA adapters left out)."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return Shape(base, config.num_hidden_layers, config.hidden_size, config.intermediate_size, kv_heads * head_dim,
                 config.vocab_size, bool(getattr(config, "tie_word_embeddings", False)))


def trainable_parameters(shape: Shape, method: str, trained_layers: int | None = None, lora_r: int = 8,
                         lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> int:
    """How many parameters train: all (full), the top `trained_layers` blocks and the final norm (freeze), or the
    LoRA matrices r x (in + out) of each target in the top `trained_layers` blocks (lora)."""
    _check(method)
    trained_layers = shape.layers if trained_layers is None else trained_layers
    if method == "full":
        return shape.parameters
    if method == "freeze":
        return trained_layers * shape.layer_parameters + shape.hidden
    h, k, i = shape.hidden, shape.kv_dim, shape.intermediate
    sizes = {"q_proj": (h, h), "k_proj": (h, k), "v_proj": (h, k), "o_proj": (h, h), "gate_proj": (h, i),
             "up_proj": (h, i), "down_proj": (i, h)}
    return trained_layers * sum(lora_r * sum(sizes[t]) for t in lora_targets)


@dataclass
class Bill:
    """Bytes of each part of training memory (see the module's docstring for what each counts)."""

    bytes: dict[str, float] = field(default_factory=dict)
    trainable: int = 0

    @property
    def total(self) -> float:
        return sum(self.bytes.values())

    @property
    def gb(self) -> dict[str, float]:
        return {**{k: round(v / GB, 3) for k, v in self.bytes.items()}, "total": round(self.total / GB, 3)}


def estimate(shape: Shape, method: str = "full", precision: str = "fp32", batch_size: int = 8, seq_len: int = 256,
             trained_layers: int | None = None, lora_r: int = 8,
             lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> Bill:
    """The memory of one training step: weights, gradients, optimizer states and activations, in bytes.

    `trained_layers` (default: all) is how many top blocks train (freeze) or hold adapters (lora); activations
    are kept for those blocks. `precision` is "fp32", "bf16" (mixed precision) or "4bit" (QLoRA: LoRA only)."""
    _check(method)
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision={precision!r} is not valid: choose one of {', '.join(WEIGHT_BYTES)}")
    if precision == "4bit" and method != "lora":
        raise ValueError("precision='4bit' is for LoRA (QLoRA): 4-bit weights cannot be trained directly")
    trained_layers = shape.layers if (trained_layers is None or method == "full") else trained_layers
    trainable = trainable_parameters(shape, method, trained_layers, lora_r, lora_targets)
    weights = shape.parameters * WEIGHT_BYTES[precision]
    if method == "lora":
        weights += trainable * 4  # adapters stored in fp32
    gradient_bytes, optimizer_bytes = {"fp32": (4, 8), "bf16": (2, 12), "4bit": (4, 8)}[precision]
    if method == "lora":  # adapters train in fp32, whatever the base
        gradient_bytes, optimizer_bytes = 4, 8
    activation_bytes = 4 if precision == "fp32" else 2
    per_token_layer = 9 * shape.hidden + 4 * shape.intermediate
    if method == "lora":
        per_token_layer += shape.hidden + lora_r * len(lora_targets)
    activations = batch_size * seq_len * trained_layers * per_token_layer * activation_bytes
    return Bill({"weights": weights, "gradients": trainable * gradient_bytes, "optimizer": trainable * optimizer_bytes,
                 "activations": activations}, trainable)


def gb_per_billion(method: str, precision: str) -> float:
    """The rule of thumb: GB per billion parameters for weights + gradients + optimizer states (no activations),
    when everything trains (full) or nothing of the base does (freeze/lora, adapters aside)."""
    shape = Shape(10**9, 1, 1, 1, 1, 1)
    if method == "full":
        bill = estimate(shape, "full", precision, batch_size=0)
        return round(bill.total / GB, 4)
    return WEIGHT_BYTES[precision]


def epoch_cost(tokens: float, tokens_per_second: float, price_per_hour: float = 0.0) -> dict[str, float]:
    """Hours and money for one epoch of `tokens` training tokens at a measured speed and a price per GPU hour."""
    hours = tokens / tokens_per_second / 3600
    return {"hours": hours, "cost": hours * price_per_hour}


def table(method_precisions=(("full", "fp32"), ("full", "bf16"), ("freeze", "bf16"), ("lora", "bf16"),
                             ("lora", "4bit")), sizes=("135M", "1B", "8B", "70B"), batch_size: int = 8,
          seq_len: int = 512, lora_r: int = 16) -> list[dict]:
    """Total GB for each model size and method, batch 8 x 512 tokens: the table the lesson shows. `freeze` trains
    the top quarter of the blocks; LoRA puts adapters in every block."""
    rows = []
    for size in sizes:
        shape = SHAPES[size]
        row = {"model": size}
        for method, precision in method_precisions:
            trained = max(1, shape.layers // 4) if method == "freeze" else None
            bill = estimate(shape, method, precision, batch_size, seq_len, trained, lora_r)
            scope = {"full": "", "freeze": " (top 1/4)", "lora": " (all blocks)"}[method]
            row[f"{method}{scope} {precision}"] = round(bill.total / GB, 1)
        rows.append(row)
    return rows


def _check(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not valid: choose one of {', '.join(METHODS)}")
