"""Every setting is checked when a config is built, with an error that names it and its allowed range."""
from dataclasses import fields

import pytest

from lmtune_widgets import PRESETS, FineTuneConfig, describe, field_names


BAD_VALUES = [
    ("learning_rate", 0, "learning_rate=0 is out of range: allowed from 1e-08 to 1"),
    ("learning_rate", 5.0, "allowed from 1e-08 to 1"),
    ("learning_rate", float("nan"), "learning_rate=nan is not valid"),
    ("learning_rate", "fast", "learning_rate='fast' is not valid: expected a number"),
    ("per_device_train_batch_size", 0, "per_device_train_batch_size=0 is out of range: allowed from 1 to 1024"),
    ("per_device_train_batch_size", 8.5, "per_device_train_batch_size=8.5 is not valid: expected a whole number"),
    ("per_device_train_batch_size", 16.5, "per_device_train_batch_size=16.5 is not valid: expected a whole number from 1 to 1024"),
    ("per_device_train_batch_size", True, "per_device_train_batch_size=True is not valid: expected a whole number"),
    ("num_train_epochs", 0, "num_train_epochs=0 is out of range: allowed from 0.05 to 100"),
    ("dropout", 0.95, "dropout=0.95 is out of range: allowed from 0 to 0.9"),
    ("dropout", -0.1, "dropout=-0.1 is out of range"),
    ("weight_decay", 2, "weight_decay=2 is out of range: allowed from 0 to 1"),
    ("lr_scheduler_type", "warp", "lr_scheduler_type='warp' is not valid: choose one of linear, cosine"),
    ("warmup_ratio", 0.9, "warmup_ratio=0.9 is out of range: allowed from 0 to 0.5"),
    ("freeze_layers", -1, "freeze_layers=-1 is out of range"),
    ("seed", -5, "seed=-5 is out of range"),
    ("max_train_samples", 2, "max_train_samples=2 is out of range: allowed from 8"),
    ("max_eval_samples", 0, "max_eval_samples=0 is out of range"),
    ("label_noise", 0.7, "label_noise=0.7 is out of range: allowed from 0 to 0.5"),
    ("model_name", "", "model_name='' is not valid"),
    ("task", "emotion", "task='emotion' is not valid: choose one of sentiment, topic"),
    ("from_scratch", "yes", "from_scratch='yes' is not valid: expected True or False"),
    ("max_length", 4, "max_length=4 is out of range"),
    ("evals_per_epoch", 0, "evals_per_epoch=0 is out of range"),
    ("early_stopping_patience", -1, "early_stopping_patience=-1 is out of range"),
    ("device", "tpu", "device='tpu' is not valid: choose one of auto, cpu, cuda, mps"),
    ("max_grad_norm", -1, "max_grad_norm=-1 is out of range"),
    ("gradient_accumulation_steps", 0, "gradient_accumulation_steps=0 is out of range: allowed from 1 to 1024"),
    ("lora_r", -1, "lora_r=-1 is out of range: allowed from 0"),
    ("lora_r", 4.5, "lora_r=4.5 is not valid: expected a whole number"),
    ("lora_alpha", 0, "lora_alpha=0 is out of range"),
    ("lora_dropout", 0.95, "lora_dropout=0.95 is out of range: allowed from 0 to 0.9"),
    ("lora_target_modules", (), "lora_target_modules=() is not valid: expected one or more module names"),
    ("lora_target_modules", ("q_proj", 3), "lora_target_modules=('q_proj', 3) is not valid"),
    ("pooling", "max", "pooling='max' is not valid: choose one of cls, mean"),
    ("data_seed", -1, "data_seed=-1 is out of range: allowed from 0 to 2147483647"),
    ("data_seed", 1.5, "data_seed=1.5 is not valid: expected a whole number"),
    ("label_smoothing_factor", 0.6, "label_smoothing_factor=0.6 is out of range: allowed from 0 to 0.5"),
    ("lr_decay_ratio", 1.5, "lr_decay_ratio=1.5 is out of range: allowed from 0 to 1"),
    ("min_lr_rate", -0.1, "min_lr_rate=-0.1 is out of range: allowed from 0 to 1"),
    ("use_rslora", 1, "use_rslora=1 is not valid: expected True or False"),
    ("lora_target_modules", ("all-linear", "q_proj"), "'all-linear' already means every linear layer"),
    ("text_column", "", "text_column='' is not valid: expected a non-empty text"),
    ("label_column", 3, "label_column=3 is not valid: expected a non-empty text"),
    ("text_column", "message", "text_column='message' is not valid without a dataset"),
]


@pytest.mark.parametrize("name,value,message", BAD_VALUES, ids=[b[0] + "-" + repr(b[1]) for b in BAD_VALUES])
def test_bad_value_names_field_value_and_range(name, value, message):
    with pytest.raises(ValueError) as error:
        FineTuneConfig(**{name: value})
    assert message in str(error.value)


def test_every_field_has_a_bad_value_test_and_a_description():
    tested = {b[0] for b in BAD_VALUES}
    assert set(field_names()) - tested <= {"dataset"}  # dataset is free text (None or a hub name)
    for name in field_names():
        assert len(describe(name)) > 20, name


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['learning_rat'\]"):
        FineTuneConfig().replace(learning_rat=1e-3)


INT_FIELDS = [f.name for f in fields(FineTuneConfig) if f.type == "int"]


@pytest.mark.parametrize("name", INT_FIELDS)
def test_whole_number_floats_are_stored_as_ints(name):
    default = getattr(FineTuneConfig(), name)
    value = getattr(FineTuneConfig(**{name: float(default)}), name)
    assert type(value) is int and value == default, (name, value)


def test_whole_number_floats_from_share_strings_and_copies_are_ints():
    shared = FineTuneConfig.from_share_string('{"per_device_train_batch_size":32.0,"seed":7.0}')
    assert type(shared.per_device_train_batch_size) is int and shared.per_device_train_batch_size == 32
    assert type(shared.seed) is int and shared.seed == 7
    copied = FineTuneConfig().replace(max_train_samples=512.0)
    assert type(copied.max_train_samples) is int and copied == FineTuneConfig(max_train_samples=512)
    assert copied.to_share_string() == '{"max_train_samples":512}'


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_valid_configs(name):
    config = FineTuneConfig.from_preset(name)
    for key, value in PRESETS[name].items():
        assert getattr(config, key) == value


def test_good_preset_is_the_defaults_and_unknown_preset_is_named():
    assert FineTuneConfig.from_preset("good") == FineTuneConfig()
    with pytest.raises(ValueError, match="preset='great' is not a preset; choose one of"):
        FineTuneConfig.from_preset("great")


def test_share_string_round_trips_and_is_short():
    config = FineTuneConfig(learning_rate=3e-3, dropout=0.25, lr_scheduler_type="cosine")
    text = config.to_share_string()
    assert len(text) < 80
    assert FineTuneConfig.from_share_string(text) == config
    assert FineTuneConfig.from_share_string("") == FineTuneConfig()


@pytest.mark.parametrize("text,message", [("{oops", "share string is not valid"), ("[1, 2]", "share string is not valid"),
                                          ('{"dropout": 3}', "dropout=3 is out of range")])
def test_bad_share_string_is_explained(text, message):
    with pytest.raises(ValueError, match=message):
        FineTuneConfig.from_share_string(text)


def test_changes_lists_only_what_differs():
    assert FineTuneConfig(seed=7).changes() == {"seed": 7}


def test_data_seed_defaults_to_the_seed_and_stays_out_of_share_strings_and_recorded_keys():
    from lmtune_widgets.config import config_key

    assert FineTuneConfig(seed=7).shuffle_seed == 7 and FineTuneConfig(seed=7, data_seed=3).shuffle_seed == 3
    assert FineTuneConfig(data_seed=3.0).data_seed == 3 and isinstance(FineTuneConfig(data_seed=3.0).data_seed, int)
    assert FineTuneConfig().to_share_string() == "{}"  # the defaults of the new knobs add nothing
    assert config_key(FineTuneConfig()) == config_key(FineTuneConfig(label_smoothing_factor=0.0, data_seed=None))
    assert config_key(FineTuneConfig(data_seed=1)) != config_key(FineTuneConfig())
    shared = FineTuneConfig(data_seed=1, label_smoothing_factor=0.1, use_rslora=True, lora_target_modules="all-linear")
    assert FineTuneConfig.from_share_string(shared.to_share_string()) == shared


def test_warmup_and_decay_of_warmup_stable_decay_must_fit_in_the_run():
    FineTuneConfig(lr_scheduler_type="warmup_stable_decay", warmup_ratio=0.3, lr_decay_ratio=0.7)
    FineTuneConfig(warmup_ratio=0.5, lr_decay_ratio=0.9)  # only warmup_stable_decay decays by lr_decay_ratio
    with pytest.raises(ValueError, match=r"lr_decay_ratio=0.8 is out of range with warmup_ratio=0.3: .* from 0 to 0.7"):
        FineTuneConfig(lr_scheduler_type="warmup_stable_decay", warmup_ratio=0.3, lr_decay_ratio=0.8)
