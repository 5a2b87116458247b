"""The settings of one fine-tuning run, checked the moment they are made.

    from lmtune_widgets import FineTuneConfig
    cfg = FineTuneConfig(learning_rate=3e-4, num_train_epochs=2)
    cfg = FineTuneConfig.from_preset("overfit")
    cfg = cfg.replace(dropout=0.3)          # a changed copy; the original stays as it was

Names follow `transformers.TrainingArguments`, so what a learner learns here carries over to `Trainer`.
Every field is validated when the config is built: a bad value raises a `ValueError` that names the field,
the value and the allowed range. Whole-number settings take a whole float (16.0, as a slider or JSON may
give) and store it as an int; 16.5, True or "16" are errors. Bounds that depend on the model (how many
layers can be frozen) are checked at the start of `fine_tune`, once the model is known.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any

SCHEDULES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",
    "cosine_with_min_lr",
)
TASKS = ("sentiment", "topic")


@dataclass(frozen=True)
class Field:
    """How one setting is checked and shown: its range, and one line on what it does."""

    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""


# One line each on what the setting does; the panel shows these as tooltips.
FIELDS: dict[str, Field] = {
    "learning_rate": Field(1e-8, 1.0, help="Step size of AdamW. Too low: the loss crawls. Too high: it jumps up or becomes NaN."),
    "per_device_train_batch_size": Field(1, 1024, help="Examples per optimizer step. Small: noisy curves, many steps. Large: smooth curves, fewer steps per epoch."),
    "num_train_epochs": Field(0.05, 100, help="Passes over the training set. Too few: underfitting. Too many: validation loss turns back up (overfitting)."),
    "dropout": Field(0.0, 0.9, help="Chance of zeroing each hidden activation while training. Fights overfitting; too much slows learning."),
    "weight_decay": Field(0.0, 1.0, help="AdamW's pull of the weights towards zero (not biases or LayerNorm). Fights overfitting; too much underfits."),
    "lr_scheduler_type": Field(choices=SCHEDULES, help="How the learning rate changes over the run, after warmup."),
    "warmup_ratio": Field(0.0, 0.5, help="Fraction of the steps spent raising the learning rate from 0. Steadies the first steps."),
    "freeze_layers": Field(0, 1000, help="Embeddings + the bottom N layers are frozen. More: faster and fewer trainable weights, but less to adapt."),
    "seed": Field(0, 2**31 - 1, help="Seeds the new head's weights, dropout, label noise and (unless data_seed is set) the data order. Same seed, same curves."),
    "max_train_samples": Field(8, 1_000_000, help="How many training examples to use. Fewer: faster, but easier to memorise (overfit)."),
    "max_eval_samples": Field(8, 1_000_000, help="How many validation examples each evaluation uses."),
    "label_noise": Field(0.0, 0.5, help="Fraction of training labels flipped at random (outliers). Validation labels stay clean."),
    "model_name": Field(help="'minilm' (bundled, offline) or any Hugging Face model id (online)."),
    "task": Field(choices=TASKS, help="What to predict from the bundled customer messages: sentiment (2 classes) or topic (5)."),
    "from_scratch": Field(choices=(False, True), help="Start from random weights instead of the pretrained ones."),
    "dataset": Field(help="Your own data instead of the bundled messages: a .csv, .jsonl, .json or .parquet file or a folder saved with datasets' save_to_disk (a text and a label column; a split column is kept), or a Hugging Face data set name (online), e.g. 'rotten_tomatoes'."),
    "max_length": Field(8, 512, help="Longest input in tokens; longer messages are cut."),
    "max_grad_norm": Field(0.0, 1e6, help="Gradients are clipped to this norm (0 = no clipping), as in Trainer."),
    "evals_per_epoch": Field(1, 50, help="How many evaluation points per epoch, so short runs still draw curves."),
    "early_stopping_patience": Field(0, 1000, help="Stop after this many evaluations without a better validation loss, and keep the best weights (0 = off)."),
    "device": Field(choices=("auto", "cpu", "cuda", "mps"), help="Where to train: 'auto' takes a GPU when there is one."),
    "gradient_accumulation_steps": Field(1, 1024, help="Batches whose gradients add up before one optimizer step: the effective batch is this x the batch size, for the memory of one batch."),
    "lora_r": Field(0, 1024, help="LoRA rank (0 = no LoRA). The pretrained weights stay frozen; small r x d matrices learn the change. Higher: more capacity, more memory."),
    "lora_alpha": Field(1e-3, 1e4, help="LoRA scale: the learnt change is multiplied by alpha / r. Often 2 x r."),
    "lora_dropout": Field(0.0, 0.9, help="Dropout on the input of the LoRA matrices while training."),
    "pooling": Field(choices=("cls", "mean"), help="What the classification head reads: 'cls' the first token (the architecture's own head), 'mean' the average of the message's tokens, as MiniLM was pretrained to embed sentences."),
    "lora_target_modules": Field(help="Which linear layers get LoRA matrices, by name (e.g. q_proj, v_proj: the attention projections), or 'all-linear' (every linear layer of a block, MLP included)."),
    "data_seed": Field(0, 2**31 - 1, help="Seeds only the order the training examples come in (None: the seed). Apart from seed, it separates the two noises: initialisation and data order."),
    "label_smoothing_factor": Field(0.0, 0.5, help="Trains towards (1 - f) on the right class and f spread over all classes: the model is never pushed to total certainty. Another answer to noisy labels."),
    "lr_decay_ratio": Field(0.0, 1.0, help="warmup_stable_decay only: the fraction of the steps spent decaying the rate to 0 at the end; before it the rate stays at its peak."),
    "min_lr_rate": Field(0.0, 1.0, help="cosine_with_min_lr only: the cosine ends at this fraction of the peak rate instead of 0."),
    "use_rslora": Field(choices=(False, True), help="Rank-stabilised LoRA: the change is scaled by alpha / sqrt(r) instead of alpha / r, so a higher rank is not damped."),
    "text_column": Field(help="Which column of your dataset holds the texts (None: the one named text, sentence, review, content or document)."),
    "label_column": Field(help="Which column of your dataset holds the classes, as text or whole numbers (None: the one named label, labels or sentiment)."),
}
# Added after runs were recorded: at their defaults they are left out of `config_key`, so recorded runs still match.
LATER_FIELDS = ("gradient_accumulation_steps", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "pooling",
                "data_seed", "label_smoothing_factor", "lr_decay_ratio", "min_lr_rate", "use_rslora", "text_column",
                "label_column")
ALL_LINEAR = "all-linear"  # peft's name for "every linear layer of the adapted blocks" (lora_target_modules)
LLM_MODELS = ("smollm2",)  # bundled decoder LLMs: fine-tuned as instructions (see llm.py), not with a class head


@dataclass(frozen=True)
class FineTuneConfig:
    """Every knob of one fine-tuning run. The defaults are the "good" preset."""

    learning_rate: float = 5e-4  # peak step size of AdamW
    per_device_train_batch_size: int = 16  # examples per optimizer step
    num_train_epochs: float = 2  # passes over the training subset
    dropout: float = 0.1  # hidden, attention and classifier dropout
    weight_decay: float = 0.01  # decoupled (AdamW); biases and LayerNorm weights excluded
    lr_scheduler_type: str = "linear"  # a transformers.get_scheduler name
    warmup_ratio: float = 0.1  # warmup steps = ceil(ratio x total optimizer steps)
    freeze_layers: int = 4  # embeddings + this many bottom layers stay fixed
    seed: int = 42  # one seed for head init, dropout, shuffling, label noise
    max_train_samples: int = 1616  # training subset: the first N of the train split (all 1616)
    max_eval_samples: int = 256  # validation subset used at each evaluation point
    label_noise: float = 0.0  # fraction of training labels flipped
    model_name: str = "minilm"  # bundled offline MiniLM, or a Hugging Face id
    task: str = "sentiment"  # "sentiment" or "topic" on the bundled data
    from_scratch: bool = False  # random weights, same architecture
    dataset: str | None = None  # a file or folder of your own, or a Hugging Face data set, instead of the bundled one
    max_length: int = 64  # tokens per message at most
    max_grad_norm: float = 1.0  # gradient clipping, as Trainer does
    evals_per_epoch: int = 3  # evaluation points per epoch
    early_stopping_patience: int = 0  # 0 = off
    device: str = "auto"  # "auto", "cpu", "cuda" or "mps"
    gradient_accumulation_steps: int = 1  # batches per optimizer step (effective batch = this x batch size)
    lora_r: int = 0  # LoRA rank; 0 = no LoRA (peft's r)
    lora_alpha: float = 16  # LoRA scale alpha / r (peft's lora_alpha)
    lora_dropout: float = 0.05  # dropout before the LoRA matrices (peft's lora_dropout)
    lora_target_modules: tuple = ("q_proj", "k_proj", "v_proj", "o_proj")  # layers given LoRA (peft's target_modules)
    pooling: str = "cls"  # what the head reads: the first token ("cls") or the mean of the tokens ("mean")
    data_seed: int | None = None  # the training data's order alone (transformers' data_seed); None: the seed
    label_smoothing_factor: float = 0.0  # the target: 1 - f on the label, f spread over the classes (Trainer's name)
    lr_decay_ratio: float = 0.2  # warmup_stable_decay: the fraction of the steps in its final decay
    min_lr_rate: float = 0.1  # cosine_with_min_lr: where the cosine ends, as a fraction of the peak
    use_rslora: bool = False  # LoRA scaled by alpha / sqrt(r) instead of alpha / r (peft's use_rslora)
    text_column: str | None = None  # the dataset's column of texts (None: found by name)
    label_column: str | None = None  # the dataset's column of classes (None: found by name)

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, (list, str)):  # JSON gives a list; "q_proj,v_proj" from a command line
            names = self.lora_target_modules.split(",") if isinstance(self.lora_target_modules, str) else self.lora_target_modules
            object.__setattr__(self, "lora_target_modules", tuple(n.strip() if isinstance(n, str) else n for n in names))
        for f in fields(self):
            value = getattr(self, f.name)
            _check(f.name, value, f.type)
            if f.type.startswith("int") and value is not None and not isinstance(value, int):  # a whole float (16.0)
                object.__setattr__(self, f.name, int(value))
        for name in ("text_column", "label_column"):
            if getattr(self, name) is not None and self.dataset is None:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid without a dataset: it names a column "
                                 "of your own data (dataset='my_file.csv'); the bundled data has its own")
        if self.lr_scheduler_type == "warmup_stable_decay" and self.warmup_ratio + self.lr_decay_ratio > 1:
            raise ValueError(f"lr_decay_ratio={self.lr_decay_ratio:g} is out of range with warmup_ratio="
                             f"{self.warmup_ratio:g}: warmup and decay share the steps, so allowed from 0 to "
                             f"{1 - self.warmup_ratio:g}")

    @property
    def shuffle_seed(self) -> int:
        """The seed of the training data's order: `data_seed`, or `seed` when it is None."""
        return self.seed if self.data_seed is None else self.data_seed

    # ------------------------------------------------------------------ building and copying
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "FineTuneConfig":
        """The settings of a named lesson ("good", "underfit", "overfit", "diverge"), with overrides."""
        if name not in PRESETS:
            raise ValueError(f"preset={name!r} is not a preset; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> "FineTuneConfig":
        """A copy with some fields changed (validated like a new config)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FineTuneConfig":
        unknown = set(values) - set(field_names())
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are {field_names()}")
        return cls(**values)

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step: the batch size x gradient_accumulation_steps."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def changes(self, base: "FineTuneConfig | None" = None) -> dict[str, Any]:
        """The fields that differ from `base` (the defaults when not given)."""
        base = base or FineTuneConfig()
        return {k: v for k, v in self.to_dict().items() if v != getattr(base, k)}

    def to_share_string(self) -> str:
        """A short text another learner can paste into `from_share_string` to get the same settings."""
        return json.dumps(self.changes(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_share_string(cls, text: str) -> "FineTuneConfig":
        try:
            values = json.loads(text.strip() or "{}")
        except json.JSONDecodeError as error:
            raise ValueError(f"share string is not valid: {error.msg} (expected text like "
                             '{"learning_rate":0.001})') from None
        if not isinstance(values, dict):
            raise ValueError('share string is not valid: expected text like {"learning_rate":0.001}')
        return cls.from_dict(values)


# The four lessons the curves must show; "good" is the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "good": {},
    "underfit": {"learning_rate": 1e-6, "num_train_epochs": 1, "max_train_samples": 256},  # steps far too small
    "overfit": {  # few, noisy examples, many epochs, no regularisation: the model memorises the noise
        "learning_rate": 1e-4, "num_train_epochs": 10, "max_train_samples": 192, "label_noise": 0.15,
        "dropout": 0.0, "weight_decay": 0.0, "lr_scheduler_type": "constant", "warmup_ratio": 0.0,
        "evals_per_epoch": 1, "max_eval_samples": 128,
    },
    "diverge": {"learning_rate": 0.05, "warmup_ratio": 0.0, "lr_scheduler_type": "constant", "max_grad_norm": 0.0,
                "max_train_samples": 256},  # steps far too large, no clipping
    # the bundled decoder LLM (SmolLM2-135M-Instruct) with LoRA on the attention projections of its top 10
    # layers; the bottom 20 are replayed from cache. Adapters take a larger rate than full weights: of the recorded
    # 1e-4, 5e-4 and 2e-3, 2e-3 keeps the best model in these 32 steps (lesson 09's rank x rate grid).
    "llm_lora": {"model_name": "smollm2", "lora_r": 8, "lora_alpha": 16, "learning_rate": 2e-3, "dropout": 0.0,
                 "freeze_layers": 20, "max_train_samples": 256, "max_eval_samples": 128, "num_train_epochs": 1,
                 "per_device_train_batch_size": 8, "evals_per_epoch": 4, "max_length": 96, "weight_decay": 0.0},
}


def field_names() -> list[str]:
    return [f.name for f in fields(FineTuneConfig)]


def describe(name: str) -> str:
    """One line on what a setting does and what too high / too low looks like."""
    return FIELDS[name].help


def _check(name: str, value: Any, type_name: str) -> None:
    spec = FIELDS[name]
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} is not valid: expected True or False")
        return
    if type_name == "tuple":
        if not isinstance(value, tuple) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f"{name}={value!r} is not valid: expected one or more module names such as ('q_proj', 'v_proj')")
        if ALL_LINEAR in value and len(value) > 1:
            raise ValueError(f"{name}={value!r} is not valid: {ALL_LINEAR!r} already means every linear layer; "
                             "give it alone or name the layers")
        return
    if type_name == "int | None":
        if value is None:
            return
        type_name = "int"
    if type_name in ("str", "str | None"):
        if value is None and type_name == "str | None":
            return
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}={value!r} is not valid: expected a non-empty text")
        if spec.choices and value not in spec.choices:
            raise ValueError(f"{name}={value!r} is not valid: choose one of {', '.join(spec.choices)}")
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "int" and not (is_number and float(value).is_integer()):
        raise ValueError(f"{name}={value!r} is not valid: expected a whole number from {_fmt(spec.low)} to {_fmt(spec.high)}")
    if not is_number or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not valid: expected a number from {_fmt(spec.low)} to {_fmt(spec.high)}")
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{name}={value!r} is out of range: allowed from {_fmt(spec.low)} to {_fmt(spec.high)}")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


def config_key(config: FineTuneConfig, seed: bool = False) -> tuple:
    """What makes two configs the same recorded experiment: the learning rate on the slider's tenth-of-a-decade
    positions, other numbers to 4 significant digits, the seed only when asked."""
    items = []
    for name, value in config.to_dict().items():
        if name == "seed" and not seed:
            continue
        if name in LATER_FIELDS and value == _DEFAULTS[name]:
            continue
        if name == "learning_rate":
            value = ("log10", round(math.log10(value), 1))
        elif isinstance(value, float):
            value = float(f"{value:.4g}")
        items.append((name, value))
    return tuple(items)


_DEFAULTS = FineTuneConfig().to_dict()
