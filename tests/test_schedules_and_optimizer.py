"""Learning-rate schedules against transformers.get_scheduler; AdamW groups against Trainer's."""
import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments, get_scheduler

from lmtune_widgets import FineTuneConfig
from lmtune_widgets.models import freeze_bottom, tiny_config
from lmtune_widgets.planning import planned_learning_rates, schedule_steps
from lmtune_widgets.training import optimizer_groups


def stepped_rates(optimizer, scheduler, total):
    """The rate of each of `total` steps, read before the step as the kit's loop does."""
    rates = []
    for _ in range(total):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def reference_rates(name, lr, warmup, total):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    return stepped_rates(optimizer, scheduler, total)


@pytest.mark.parametrize("name", ["linear", "cosine", "constant", "constant_with_warmup", "polynomial",
                                  "cosine_with_restarts", "inverse_sqrt"])
@pytest.mark.parametrize("warmup_ratio", [0.0, 0.1, 0.33])
def test_planned_schedule_matches_get_scheduler(name, warmup_ratio):
    config = FineTuneConfig(lr_scheduler_type=name, warmup_ratio=warmup_ratio, learning_rate=3e-4,
                            num_train_epochs=2.5, max_train_samples=100, per_device_train_batch_size=16)
    steps_per_epoch, total, warmup = schedule_steps(config, 100)
    assert steps_per_epoch == 7 and total == math.ceil(2.5 * 7)
    assert warmup == math.ceil(warmup_ratio * total)
    assert planned_learning_rates(config) == pytest.approx(reference_rates(name, 3e-4, warmup, total), rel=1e-12)


def trainer_rates(config, total):
    """The rates Trainer's own scheduler gives, from TrainingArguments as a learner would write them."""
    kwargs = {"warmup_stable_decay": {"num_decay_steps": math.ceil(config.lr_decay_ratio * total)},
              "cosine_with_min_lr": {"min_lr_rate": config.min_lr_rate}}.get(config.lr_scheduler_type, {})
    model = torch.nn.Linear(2, 2)
    args = TrainingArguments(output_dir="/tmp/lmtune-trainer", learning_rate=config.learning_rate, report_to=[],
                             use_cpu=True, lr_scheduler_type=config.lr_scheduler_type, lr_scheduler_kwargs=kwargs,
                             warmup_steps=math.ceil(config.warmup_ratio * total))
    trainer = Trainer(model=model, args=args)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    trainer.optimizer = optimizer
    scheduler = trainer.create_scheduler(num_training_steps=total, optimizer=optimizer)
    return stepped_rates(optimizer, scheduler, total)


@pytest.mark.parametrize("name,extra", [("warmup_stable_decay", {"lr_decay_ratio": 0.2}),
                                        ("warmup_stable_decay", {"lr_decay_ratio": 0.5, "warmup_ratio": 0.0}),
                                        ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
                                        ("cosine_with_min_lr", {"min_lr_rate": 0.0, "warmup_ratio": 0.3})])
def test_warmup_stable_decay_and_cosine_with_min_lr_match_trainer(name, extra):
    config = FineTuneConfig(lr_scheduler_type=name, learning_rate=3e-4, num_train_epochs=2.5, max_train_samples=100,
                            **extra)
    _, total, warmup = schedule_steps(config, 100)
    rates = planned_learning_rates(config)
    assert rates == pytest.approx(trainer_rates(config, total), rel=1e-12, abs=1e-15)
    decay = math.ceil(config.lr_decay_ratio * total)
    if name == "warmup_stable_decay":  # the rate holds at its peak from warmup to the last `decay` steps
        assert rates[warmup:total - decay + 1] == [3e-4] * (total - decay + 1 - warmup)  # the decay starts at the peak
        tail = rates[total - decay:]
        assert all(a > b for a, b in zip(tail, tail[1:])) and rates[-1] < 3e-4 / 5
    else:  # the cosine ends at its floor, not 0
        assert min(rates[warmup:]) == pytest.approx(3e-4 * config.min_lr_rate, abs=3e-4 * 0.02)


def test_warmup_rises_then_linear_decays_to_zero():
    rates = planned_learning_rates(FineTuneConfig(warmup_ratio=0.25, num_train_epochs=1, max_train_samples=64,
                                                  per_device_train_batch_size=8))
    assert rates[0] == 0.0 and rates[2] == pytest.approx(FineTuneConfig().learning_rate)  # 2 warmup steps
    assert rates[-1] < rates[3] and all(a >= b for a, b in zip(rates[2:], rates[3:]))


def trainer_groups(model, weight_decay):
    args = TrainingArguments(output_dir="/tmp/lmtune-trainer", weight_decay=weight_decay, report_to=[],
                             use_cpu=True)
    trainer = Trainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    return [(group["weight_decay"], sorted(names[id(p)] for p in group["params"])) for group in optimizer.param_groups]


@pytest.mark.parametrize("architecture", ["bert", "distilbert", "gpt2", "llama"])
@pytest.mark.parametrize("frozen", [0, 2])
def test_optimizer_groups_match_trainer(architecture, frozen):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config(architecture))
    freeze_bottom(model, frozen)
    names = {id(p): n for n, p in model.named_parameters()}
    ours = [(g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in optimizer_groups(model, 0.05)]
    theirs = [g for g in trainer_groups(model, 0.05) if g[1]]
    assert [g for g in ours if g[1]] == theirs
    no_decay = ours[1][1]
    assert no_decay and all("bias" in n or "norm" in n.lower() or "ln" in n for n in no_decay)


def test_a_tied_embedding_is_in_the_optimizer_once_as_in_trainer():
    """An LLM's lm_head shares the input embedding: listed twice, AdamW would step it twice per step."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = tiny_config("llama")
    config.tie_word_embeddings = True
    model = AutoModelForCausalLM.from_config(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    groups = optimizer_groups(model, 0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})
    names = {id(p): n for n, p in model.named_parameters()}
    ours = [(g["weight_decay"], sorted(names[id(p)] for p in g["params"])) for g in groups]
    assert [g for g in ours if g[1]] == [g for g in trainer_groups(model, 0.05) if g[1]]
