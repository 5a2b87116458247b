"""Freezing, dropout and padding work on any architecture: tested offline on tiny random configs."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from lmtune_widgets import FineTuneConfig, fine_tune
from lmtune_widgets.models import (count_parameters, embedding_modules, freeze_bottom, load_model,
                                   parameters_by_layer, set_dropout, set_pooling, tiny_config, transformer_layers)
from lmtune_widgets.batching import pad_batch
from lmtune_widgets.frozen import FrozenPrefix

ARCHITECTURES = ["bert", "distilbert", "gpt2", "llama"]


def tiny(architecture):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config(architecture))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_layers_and_embeddings_are_found(architecture):
    model = tiny(architecture)
    assert len(transformer_layers(model)) == 3
    embeddings = embedding_modules(model)
    assert embeddings, "no embeddings found"
    assert model.get_input_embeddings() in [m for e in embeddings for m in e.modules()]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("n", [0, 1, 3])
def test_freeze_bottom_freezes_embeddings_and_bottom_layers_only(architecture, n):
    model = tiny(architecture)
    freeze_bottom(model, n)
    layers = transformer_layers(model)
    for i, layer in enumerate(layers):
        assert all(p.requires_grad == (i >= n) for p in layer.parameters()), f"layer {i}"
    for module in embedding_modules(model):
        assert all(p.requires_grad == (n == 0) for p in module.parameters())
    head = model.get_output_embeddings() or getattr(model, "classifier", None) or getattr(model, "score", None)
    assert all(p.requires_grad for p in head.parameters())
    trainable, total = count_parameters(model)
    rows = parameters_by_layer(model)
    assert sum(r[1] for r in rows) == trainable and sum(r[2] for r in rows) == total


def test_freeze_more_layers_than_exist_names_the_range():
    with pytest.raises(ValueError, match=r"freeze_layers=4 is out of range: allowed from 0 to 3"):
        freeze_bottom(tiny("gpt2"), 4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_dropout_reaches_every_dropout(architecture):
    config = tiny_config(architecture)
    set_dropout(config, 0.37)
    model = AutoModelForSequenceClassification.from_config(config)
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    values = [v for k, v in config.to_dict().items() if "drop" in k and isinstance(v, float)]
    assert values and set(values) == {0.37}
    assert rates <= {0.37}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_frozen_prefix_replay_gives_the_same_logits(architecture):
    """Replaying cached frozen layers must give what running them gives (eval mode, padded batch)."""
    model = tiny(architecture).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    expected, replayed, restored, states = _replay(model, 2)
    assert [s.shape[0] for s in states] == [6, 2, 4]
    torch.testing.assert_close(replayed, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(restored, expected)


def _replay(model, frozen):
    """The logits of a padded batch run whole, with the bottom `frozen` layers replayed from cached states, and run
    whole again once the replay is removed; and the cached states."""
    freeze_bottom(model, frozen)
    ids = [[5, 17, 93, 4, 8, 11], [7, 3], [9, 9, 14, 2]]
    batch = pad_batch(ids, 0, torch.device("cpu"))
    with torch.no_grad():
        expected = model(**batch).logits
        prefix = FrozenPrefix(model, frozen)
        states = prefix.compute(ids, 0, torch.device("cpu"))
        prefix.install()
        prefix.use(states)
        replayed = model(**batch).logits
        prefix.remove()
        restored = model(**batch).logits
    return expected, replayed, restored, states


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "distilbert"])
def test_fine_tune_runs_on_tiny_architectures(architecture, tiny_model_dir):
    """The whole loop (freezing, cache, padding, pad token) on decoders and a distilled encoder."""
    config = FineTuneConfig(model_name=tiny_model_dir(architecture), freeze_layers=1, max_train_samples=48,
                            max_eval_samples=32, num_train_epochs=2, evals_per_epoch=2, learning_rate=1e-3)
    run = fine_tune(config)
    assert run.status == "finished"
    assert run.meta["num_layers"] == 3
    assert [h["step"] for h in run.history] == [0, 1, 2, 3, 4, 5, 6]  # step 0, then 3 steps an epoch, 2 evals asked: every step
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"] + 0.5
    assert run.predict(["the parcel was late", "great support"]) != []
    with pytest.raises(ValueError, match=r"freeze_layers=5 is out of range: allowed from 0 to 3"):
        fine_tune(config.replace(freeze_layers=5))


def test_bundled_minilm_loads_offline_as_a_six_layer_bert():
    model, tokenizer = load_model("minilm", num_labels=5, dropout=0.2)
    assert model.config.model_type == "bert" and len(transformer_layers(model)) == 6
    assert model.config.hidden_dropout_prob == 0.2 and model.config.attention_probs_dropout_prob == 0.2
    assert tokenizer("hello")["input_ids"][0] == tokenizer.cls_token_id
    assert count_parameters(model)[1] > 20_000_000


def test_from_scratch_has_random_weights():
    pretrained, _ = load_model("minilm", 2, 0.1)
    scratch, _ = load_model("minilm", 2, 0.1, from_scratch=True)
    a = transformer_layers(pretrained)[0].attention.self.query.weight
    b = transformer_layers(scratch)[0].attention.self.query.weight
    assert a.shape == b.shape and not torch.allclose(a, b)
    assert b.std().item() == pytest.approx(scratch.config.initializer_range, rel=0.2)


def test_mean_pooling_reads_the_mean_of_the_real_tokens_through_the_same_dense_layer():
    """pooling='mean': the head's dense + tanh read the mean of the message's tokens, padding left out, so a
    message scores the same alone and padded in a batch; the weights are the architecture's own."""
    model = tiny("bert").eval()
    dense_before = model.bert.pooler.dense.weight.clone()
    set_pooling(model, "mean")
    ids = [[5, 17, 93, 4, 8, 11], [7, 3]]
    with torch.no_grad():
        batch = pad_batch(ids, 0, torch.device("cpu"))
        out = model(**batch, output_hidden_states=True)
        last = out.hidden_states[-1][1, :2]  # the short message's two real tokens
        pooler = model.bert.pooler.original
        expected = model.classifier(pooler.activation(pooler.dense(last.mean(dim=0))))
        alone = model(**pad_batch(ids[1:], 0, torch.device("cpu"))).logits[0]
    torch.testing.assert_close(out.logits[1], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone, out.logits[1], rtol=1e-4, atol=1e-5)
    assert torch.equal(model.bert.pooler.original.dense.weight, dense_before)
    with torch.no_grad():  # and it is not what the first token gives
        cls = tiny("bert").eval()(**batch).logits
    assert not torch.allclose(cls[1], out.logits[1], atol=1e-4)


def test_mean_pooling_replays_frozen_layers_like_running_them():
    model = tiny("bert").eval()
    set_pooling(model, "mean")
    expected, replayed, restored, _ = _replay(model, 3)
    torch.testing.assert_close(replayed, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(restored, expected)


@pytest.mark.parametrize("architecture", ["distilbert", "gpt2"])
def test_mean_pooling_without_a_bert_pooler_is_named(architecture):
    with pytest.raises(ValueError, match=r"pooling='mean' needs a head that reads a BERT-style pooler.*pooling='cls'"):
        set_pooling(tiny(architecture), "mean", architecture)



def test_mean_pooling_is_refused_for_a_decoder_llm_before_anything_loads():
    with pytest.raises(ValueError, match=r"pooling='mean' applies to a classification head; smollm2 is a decoder LLM"):
        fine_tune(FineTuneConfig.from_preset("llm_lora", pooling="mean"))
