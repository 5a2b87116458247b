"""What a config will do, known before anything trains: its steps and learning rates, whether it fits the model
and the data, and about how long it takes. The panel asks these once per change of a control, and `fine_tune`
asks the same functions once per run, so the plan a learner sees is the run they get.

    from lmtune_widgets.planning import schedule_steps, planned_learning_rates, estimate_seconds
    steps_per_epoch, total, warmup = schedule_steps(config, num_train=1616)
    planned_learning_rates(config)        # one rate per optimizer step, from transformers' own schedulers
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import FineTuneConfig
from .models import is_causal_lm


def schedule_steps(config: FineTuneConfig, num_train: int) -> tuple[int, int, int]:
    """(steps per epoch, total optimizer steps, warmup steps) for a training set of `num_train` examples.
    One optimizer step takes `gradient_accumulation_steps` batches: the effective batch size."""
    steps_per_epoch = math.ceil(num_train / config.effective_batch_size)
    total = max(1, math.ceil(config.num_train_epochs * steps_per_epoch))
    warmup = math.ceil(config.warmup_ratio * total)
    return steps_per_epoch, total, warmup


def scheduler_kwargs(config: FineTuneConfig, total: int) -> dict[str, Any]:
    """What `TrainingArguments.lr_scheduler_kwargs` would hold for the config's schedule: warmup_stable_decay's
    decay steps (ceil(lr_decay_ratio x total), like warmup's), cosine_with_min_lr's floor."""
    if config.lr_scheduler_type == "warmup_stable_decay":
        return {"num_decay_steps": math.ceil(config.lr_decay_ratio * total)}
    if config.lr_scheduler_type == "cosine_with_min_lr":
        return {"min_lr_rate": config.min_lr_rate}
    return {}


def make_scheduler(config: FineTuneConfig, optimizer, total: int, warmup: int):
    from transformers import get_scheduler

    return get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total,
                         scheduler_specific_kwargs=scheduler_kwargs(config, total) or None)


def planned_learning_rates(config: FineTuneConfig, num_train: int | None = None) -> list[float]:
    """The learning rate of every optimizer step the config will take, without training anything."""
    num_train = num_train or config.max_train_samples
    _, total, warmup = schedule_steps(config, num_train)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = make_scheduler(config, optimizer, total, warmup)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def check_fits(config: FineTuneConfig, num_train: int, num_layers: int) -> None:
    """The checks that need the model and the data: raise the same ValueError the run would."""
    if config.lora_r > 0 and not is_causal_lm(config.model_name):
        raise ValueError(f"lora_r={config.lora_r} applies to decoder LLMs (model_name='smollm2', or a hub causal LM); "
                         f"{config.model_name} is fine-tuned with a classification head, where freeze_layers "
                         "chooses what trains: allowed lora_r=0")
    if config.freeze_layers > num_layers:
        raise ValueError(f"freeze_layers={config.freeze_layers} is out of range: allowed from 0 to {num_layers} "
                         f"({config.model_name} has {num_layers} layers)")
    if config.per_device_train_batch_size > num_train:
        raise ValueError(f"per_device_train_batch_size={config.per_device_train_batch_size} is out of range: "
                         f"allowed from 1 to {num_train} (the training set has {num_train} examples)")


# Seconds per example per trainable layer for one forward pass, measured on a 2-core CPU with MiniLM
# (about 1.3 ms); the panel refines it from the runs it has seen.
SECONDS_PER_EXAMPLE_LAYER = 1.3e-3


LLM_WORK_FACTOR = 8  # a SmolLM2 block on a prompted message (~60 tokens, ~2x wider) costs ~8x a MiniLM layer


def estimate_seconds(config: FineTuneConfig, num_train: int, num_eval: int, num_layers: int,
                     seconds_per_example_layer: float = SECONDS_PER_EXAMPLE_LAYER) -> float:
    """A rough forecast of training + evaluation time: backward costs about twice a forward pass."""
    steps_per_epoch, total, _ = schedule_steps(config, num_train)
    trainable_layers = max(num_layers - config.freeze_layers, 0) + 0.3  # + the head
    examples_trained = min(total * config.effective_batch_size, math.ceil(config.num_train_epochs * num_train))
    evaluations = total // max(1, steps_per_epoch // config.evals_per_epoch) + 1
    work = 3 * examples_trained * trainable_layers + evaluations * num_eval * trainable_layers
    if config.freeze_layers == 0:
        work += 40 * total  # AdamW on the 12M word embeddings, every step
    if is_causal_lm(config.model_name):
        work *= LLM_WORK_FACTOR
    return work * seconds_per_example_layer

