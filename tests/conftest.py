"""Shared set-up: the suite runs offline, and expensive real runs are made once per session."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

_RUNS = {}


@pytest.fixture(scope="session", autouse=True)
def _quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


@pytest.fixture(scope="session")
def preset_run():
    """preset_run("overfit") -> the Run of that preset, trained once per test session."""
    from lmtune_widgets import FineTuneConfig, fine_tune

    def get(name: str):
        if name not in _RUNS:
            _RUNS[name] = fine_tune(FineTuneConfig.from_preset(name))
        return _RUNS[name]

    return get


# A short real run of the bundled model: a few seconds, enough to see the loss move.
SHORT = dict(max_train_samples=64, max_eval_samples=64, num_train_epochs=1, evals_per_epoch=2,
             per_device_train_batch_size=16, freeze_layers=5)


@pytest.fixture
def short_config():
    from lmtune_widgets import FineTuneConfig

    return FineTuneConfig(**SHORT)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir("gpt2") -> a folder with a small random model of that architecture and a tokenizer."""
    from transformers import AutoModelForSequenceClassification

    from lmtune_widgets.models import load_tokenizer, tiny_config

    made = {}

    def make(architecture: str):
        if architecture not in made:
            folder = tmp_path_factory.mktemp(f"tiny-{architecture}")
            tokenizer = load_tokenizer("minilm")
            config = tiny_config(architecture)
            config.vocab_size = len(tokenizer)
            if hasattr(config, "pad_token_id"):
                config.pad_token_id = tokenizer.pad_token_id
            AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            made[architecture] = str(folder)
        return made[architecture]

    return make
