"""The fine-tuning engine on the bundled model and data: lessons, determinism, faults, files."""
import json
import math
import threading
import time

import pytest

from lmtune_widgets import Callback, FineTuneConfig, Run, StopTraining, diagnose, fine_tune
from lmtune_widgets.hub import HubUnavailableError

HISTORY_KEYS = {"step", "epoch", "train_loss", "eval_loss", "eval_accuracy", "learning_rate", "elapsed_s"}


# ------------------------------------------------------------------------------------------ the four lessons
def test_good_preset_is_a_good_fit(preset_run):
    run = preset_run("good")
    d = diagnose(run)
    assert run.status == "finished"
    assert run.best_accuracy >= 0.88, run.history
    assert d.verdict == "good fit", d
    assert len(run.history) >= 3 * run.config.num_train_epochs  # several points per epoch
    assert HISTORY_KEYS <= set(run.history[0])
    assert [h["step"] for h in run.history] == sorted({h["step"] for h in run.history})


def test_overfit_preset_shows_validation_loss_turning_up(preset_run):
    run = preset_run("overfit")
    eval_loss = run.column("eval_loss")
    train_loss = run.column("train_loss")
    lowest = min(range(len(eval_loss)), key=eval_loss.__getitem__)
    assert run.history[-1]["epoch"] - run.history[lowest]["epoch"] >= 2, eval_loss
    assert eval_loss[-1] >= 1.10 * eval_loss[lowest], eval_loss
    assert train_loss[-1] < 0.5 * run.meta["first_train_loss"], train_loss
    assert diagnose(run).verdict == "overfitting"
    assert diagnose(run).best_epoch == pytest.approx(run.history[lowest]["epoch"])


def test_underfit_preset_barely_learns(preset_run):
    run = preset_run("underfit")
    assert min(run.column("train_loss")) >= 0.85 * run.meta["first_train_loss"]
    assert run.best_accuracy <= 0.75
    assert diagnose(run).verdict == "underfitting"


def test_diverge_preset_diverges_and_keeps_history(preset_run):
    run = preset_run("diverge")
    at_chance = run.history[-1]["eval_accuracy"] <= run.meta["chance_accuracy"] + 0.03
    assert run.status == "diverged" or at_chance
    assert diagnose(run).verdict == "diverged"
    assert run.history and run.learning_rates
    assert "Lower the learning rate" in diagnose(run).advice


# ------------------------------------------------------------------------------------------ mechanics
def test_same_seed_same_history_different_seed_different(short_config):
    a, b = fine_tune(short_config), fine_tune(short_config)
    c = fine_tune(short_config.replace(seed=7))
    strip = lambda run: [{k: v for k, v in h.items() if k != "elapsed_s"} for h in run.history]  # noqa: E731
    assert strip(a) == strip(b)
    assert a.learning_rates == b.learning_rates
    assert strip(a) != strip(c)


def test_data_seed_changes_the_data_order_alone_and_defaults_to_the_seed(short_config):
    strip = lambda run: [{k: v for k, v in h.items() if k != "elapsed_s"} for h in run.history]  # noqa: E731
    base = fine_tune(short_config)
    assert strip(fine_tune(short_config.replace(data_seed=short_config.seed))) == strip(base)  # None means the seed
    other_order = fine_tune(short_config.replace(data_seed=7))
    other_init = fine_tune(short_config.replace(seed=7, data_seed=short_config.seed))
    assert strip(other_order)[0] == strip(base)[0]  # step 0: the same head, before any batch
    assert other_order.train_losses != base.train_losses  # other batches from the first step on
    assert strip(other_init)[0]["eval_loss"] != strip(base)[0]["eval_loss"]  # another head
    assert other_init.meta["flipped_labels"] == base.meta["flipped_labels"]


def test_label_smoothing_trains_on_trainers_smoothed_loss_and_evaluates_plain_cross_entropy(short_config):
    import torch
    from transformers.trainer_pt_utils import LabelSmoother

    from lmtune_widgets.training import batch_loss, evaluate, prepare

    job = prepare(short_config.replace(label_smoothing_factor=0.2))
    job.model.eval()  # no dropout: the same logits twice
    batch = list(range(8))
    ours = batch_loss(job, batch).item()
    plain = prepare(short_config)
    plain.model.eval()
    assert ours != pytest.approx(batch_loss(plain, batch).item(), rel=1e-6)
    ids = [job.train["input_ids"][i] for i in batch]
    from lmtune_widgets.batching import pad_batch

    job.prefix.use([job.train_states[i] for i in batch])
    with torch.no_grad():
        logits = job.model(**pad_batch(ids, job.tokenizer.pad_token_id, job.device)).logits
    labels = torch.tensor([job.train["label"][i] for i in batch])
    assert ours == pytest.approx(LabelSmoother(epsilon=0.2)({"logits": logits}, labels).item(), rel=1e-5)
    n = job.run.meta["num_eval"]
    states = job.validation_states[:n]
    assert evaluate(job, job.validation["input_ids"][:n], job.validation["label"][:n], states)[0] == pytest.approx(
        evaluate(plain, plain.validation["input_ids"][:n], plain.validation["label"][:n], states)[0], rel=1e-6)
    for j in (job, plain):
        j.prefix.remove()


def test_learning_rates_follow_the_schedule(short_config):
    from lmtune_widgets import planned_learning_rates

    config = short_config.replace(lr_scheduler_type="cosine", warmup_ratio=0.25)
    run = fine_tune(config)
    assert run.learning_rates == pytest.approx(planned_learning_rates(config, run.meta["num_train"]))
    assert len(run.learning_rates) == run.meta["total_steps"] == 4
    assert run.meta["warmup_steps"] == 1


def test_callbacks_see_every_point_as_it_happens(short_config):
    seen, events = [], []

    class Recorder(Callback):
        def on_train_begin(self, run):
            events.append("begin")

        def on_step_end(self, run, step, loss):
            events.append(step)

        def on_evaluate(self, run, point):
            seen.append((point["step"], len(run.history)))

        def on_train_end(self, run):
            events.append("end")

    run = fine_tune(short_config, callbacks=[Recorder(), lambda r, p: events.append("fn")])
    assert seen == [(h["step"], i + 1) for i, h in enumerate(run.history)]
    assert events[0] == "begin" and events[-1] == "end" and events.count("fn") == len(run.history)


def test_stop_event_ends_the_run_within_a_step_and_keeps_history():
    stop = threading.Event()
    stopped_at = {}

    def stop_after_first_point(run, point):
        if point["step"] > 0:  # the first point after training started
            stop.set()
            stopped_at.setdefault("step", point["step"])

    config = FineTuneConfig(num_train_epochs=20, max_train_samples=64, max_eval_samples=32, freeze_layers=5,
                            evals_per_epoch=2)
    run = fine_tune(config, callbacks=[stop_after_first_point], stop_event=stop)
    assert run.status == "stopped"
    assert len(run.history) == 2 and len(run.learning_rates) == stopped_at["step"]
    assert run.predict(["fast delivery"])  # what was learnt so far is kept


def test_stop_from_another_thread_is_quick():
    stop = threading.Event()
    config = FineTuneConfig(num_train_epochs=50, max_train_samples=128, max_eval_samples=32, freeze_layers=5)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("run", fine_tune(config, stop_event=stop)))
    worker.start()
    time.sleep(6)
    stop.set()
    t = time.perf_counter()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.perf_counter() - t < 5
    assert result["run"].status == "stopped" and result["run"].history


def test_callback_can_stop_training(short_config):
    def stop(run, point):
        raise StopTraining

    run = fine_tune(short_config, callbacks=[stop])
    assert run.status == "stopped" and len(run.history) == 1 and run.history[0]["step"] == 0 and not run.learning_rates


def test_callback_error_propagates_with_the_partial_run(short_config):
    def broken(run, point):
        raise KeyError("boom")

    ended = []

    class SeesTheEnd(Callback):
        def on_train_end(self, run):
            ended.append(run.status)

    with pytest.raises(KeyError) as error:
        fine_tune(short_config, callbacks=[broken, SeesTheEnd()])
    run = error.value.run
    assert run.history and run.status == "failed" and run.error == "KeyError: 'boom'"
    assert ended == ["failed"]  # callbacks are told how the run ended, even when it failed
    assert diagnose(run).verdict in ("underfitting", "good fit", "overfitting", "diverged")


def test_a_failed_run_survives_a_round_trip(short_config, tmp_path):
    run = Run(config=short_config, label_names=["negative", "positive"], status="failed", error="KeyError: 'boom'",
              history=[{"step": 0, "epoch": 0.0, "train_loss": 0.7, "eval_loss": 0.7, "eval_accuracy": 0.5}])
    loaded = Run.load(run.save(tmp_path / "failed.json"))
    assert loaded.status == "failed" and loaded.error == "KeyError: 'boom'"


def test_divergence_is_detected_and_history_kept(short_config):
    run = fine_tune(short_config.replace(learning_rate=0.5, max_grad_norm=0.0, lr_scheduler_type="constant",
                                         warmup_ratio=0.0, num_train_epochs=3, freeze_layers=4))
    assert run.status == "diverged"
    assert run.history and run.history[-1]["step"] == len(run.learning_rates)
    assert diagnose(run).verdict == "diverged"


def test_early_stopping_restores_the_best_weights(preset_run):
    config = FineTuneConfig.from_preset("overfit", early_stopping_patience=2)
    run = fine_tune(config)
    trained = [h for h in run.history if h["step"] > 0]  # the step-0 point is where the model started: never kept
    best = min(trained, key=lambda h: h["eval_loss"])
    assert run.meta["stopped_early_at_step"] < run.meta["total_steps"]
    assert run.meta["restored_best_step"] == run.kept["step"] == best["step"] != run.history[-1]["step"]
    assert len(run.history) < len(preset_run("overfit").history)
    # the weights in the model are the best point's: scoring them again gives that point's accuracy
    assert run.accuracy("validation", limit=run.meta["num_eval"]) == pytest.approx(best["eval_accuracy"], abs=1e-9)


def test_early_stopping_never_reports_the_starting_point_as_kept(short_config):
    # steps this large make every trained point worse than where the model started (step 0)
    config = short_config.replace(learning_rate=3e-3, label_noise=0.2, num_train_epochs=3, evals_per_epoch=3,
                                  freeze_layers=3, max_train_samples=96, early_stopping_patience=2)
    run = fine_tune(config)
    assert min(run.history, key=lambda h: h["eval_loss"])["step"] == 0, run.history
    trained = [h for h in run.history if h["step"] > 0]
    kept = min(trained, key=lambda h: h["eval_loss"])
    assert run.meta["restored_best_step"] == run.kept["step"] == kept["step"] > 0
    assert run.accuracy("validation", limit=run.meta["num_eval"]) == pytest.approx(kept["eval_accuracy"], abs=1e-9)


def test_the_kept_model_is_scored_on_the_whole_validation_split(short_config):
    run = fine_tune(short_config)
    kept = run.kept
    assert kept["step"] == run.history[-1]["step"]
    assert run.meta["num_validation"] == 351 > run.meta["num_eval"]
    errors = kept["errors_by_phenomenon"]
    assert set(errors) == {"plain", "negation", "mixed", "sarcasm", "typo"}
    assert sum(total for _, total in errors.values()) == 351
    assert kept["validation_accuracy"] == pytest.approx(1 - sum(e for e, _ in errors.values()) / 351)
    assert kept["validation_accuracy"] == pytest.approx(run.accuracy("validation"), abs=1 / 351)
    assert {"threads", "torch", "transformers", "processor", "chip", "precision"} <= set(run.meta)


def test_a_recorded_run_is_held_to_the_last_digit_only_on_the_same_chip():
    import torch

    from lmtune_widgets.devices import chip, machine_facts, same_machine_kind

    here = machine_facts(torch.device("cpu"), None)
    assert here["chip"] == chip(torch.device("cpu")) and torch.backends.cpu.get_cpu_capability() in here["chip"]
    assert same_machine_kind(here)
    assert not same_machine_kind({**here, "chip": "family 25 model 17, AVX2"})  # same name, another rounding
    assert not same_machine_kind({**here, "processor": "AMD EPYC"})
    assert not same_machine_kind({**here, "torch": "2.0.0"})
    before_chips = {k: v for k, v in here.items() if k != "chip"}
    assert same_machine_kind(before_chips)  # recorded before the chip was noted: judged by the name


def test_thorough_runs_measure_the_eval_mode_training_loss_and_forgetting(short_config):
    from lmtune_widgets.measures import sentence_similarity

    run = fine_tune(short_config.replace(freeze_layers=4, learning_rate=3e-3), thorough=True)
    assert all(math.isfinite(h["train_eval_loss"]) for h in run.history)
    assert run.history[0]["train_eval_loss"] == run.history[0]["train_loss"]
    assert run.meta["similarity_before"] > 0.8  # the pretrained MiniLM ranks the pairs much as people do
    assert run.kept["similarity"] == pytest.approx(sentence_similarity(run.model, run.tokenizer))
    assert run.kept["similarity"] != run.meta["similarity_before"]  # two trained layers moved the embeddings
    head_only = fine_tune(short_config.replace(freeze_layers=6), thorough=True)
    assert head_only.kept["similarity"] == pytest.approx(head_only.meta["similarity_before"], abs=1e-6)


def test_thorough_measuring_does_not_change_the_training(short_config):
    plain, thorough = fine_tune(short_config), fine_tune(short_config, thorough=True)
    assert plain.train_losses == thorough.train_losses
    assert [h["eval_loss"] for h in plain.history] == [h["eval_loss"] for h in thorough.history]


@pytest.mark.parametrize("device, capability, expected", [
    ("cpu", None, None), ("mps", None, None),
    ("cuda", (7, 5), "float16"),  # a Colab T4: no native bfloat16, so float16 with a gradient scaler
    ("cuda", (8, 0), "bfloat16"), ("cuda", (9, 0), "bfloat16")])
def test_mixed_precision_is_native_bfloat16_or_float16(device, capability, expected):
    import torch

    from lmtune_widgets.devices import pick_precision

    dtype = pick_precision(device, capability)
    assert (None if dtype is None else str(dtype).replace("torch.", "")) == expected
    assert isinstance(dtype, (torch.dtype, type(None)))


def test_float16_steps_that_overflow_are_skipped_and_the_schedule_waits(short_config, monkeypatch):
    """What a T4 (capability 7.5) runs: float16 autocast with a gradient scaler, made here on CPU as `prepare` makes
    them for float16. A step whose gradients overflow changes no weight, halves the scale, is counted, and the
    schedule waits for the next real step (as Trainer does through accelerate); the next step trains."""
    import torch

    from lmtune_widgets import devices, training

    dtype = devices.pick_precision("cuda", (7, 5))
    job = training.prepare(short_config.replace(device="cpu", warmup_ratio=0.0))  # linear decay from the peak
    job.autocast = devices.autocast_for(torch.device("cpu"), dtype)
    job.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, enabled=dtype == torch.float16)
    batch = list(range(short_config.per_device_train_batch_size))
    real_loss = training.batch_loss
    monkeypatch.setattr(training, "batch_loss", lambda job, batch: real_loss(job, batch) * math.inf)  # overflow
    weights, rate = [p.detach().clone() for p in job.trainable], job.optimizer.param_groups[0]["lr"]
    training.train_step(job, batch)
    assert all(torch.equal(p, w) for p, w in zip(job.trainable, weights))
    assert job.scaler.get_scale() == 2.0**15 and job.run.meta["skipped_steps"] == 1
    assert job.optimizer.param_groups[0]["lr"] == rate  # the schedule did not move
    monkeypatch.setattr(training, "batch_loss", real_loss)
    training.train_step(job, batch)
    assert not all(torch.equal(p, w) for p, w in zip(job.trainable, weights))
    assert job.run.meta["skipped_steps"] == 1 and job.optimizer.param_groups[0]["lr"] < rate  # decaying
    assert math.isfinite(job.run.train_losses[-1])


def test_label_noise_flips_only_training_labels(short_config):
    run = fine_tune(short_config.replace(label_noise=0.25))
    assert run.meta["flipped_labels"] == 16
    assert run.meta["num_eval"] == 64


# ------------------------------------------------------------------------------------------ bad input
def test_batch_larger_than_training_set_is_named(short_config):
    with pytest.raises(ValueError, match=r"per_device_train_batch_size=128 is out of range: allowed from 1 to 64"):
        fine_tune(short_config.replace(per_device_train_batch_size=128))


def test_too_many_frozen_layers_is_named(short_config):
    with pytest.raises(ValueError, match=r"freeze_layers=7 is out of range: allowed from 0 to 6"):
        fine_tune(short_config.replace(freeze_layers=7))


@pytest.mark.parametrize("flag,change,message", [
    ("HF_HUB_OFFLINE", {"model_name": "bert-base-uncased"}, "model_name='bert-base-uncased'.*model_name='minilm'"),
    ("HF_DATASETS_OFFLINE", {"dataset": "rotten_tomatoes"}, "dataset='rotten_tomatoes'.*bundled"),
], ids=["model", "dataset"])
def test_hub_offline_fails_fast_and_points_to_the_default(short_config, monkeypatch, flag, change, message):
    monkeypatch.setenv(flag, "1")
    t = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=message):
        fine_tune(short_config.replace(**change))
    assert time.perf_counter() - t < 10


def test_unreachable_hub_fails_fast_even_when_not_in_offline_mode(monkeypatch):
    import socket

    from lmtune_widgets import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise socket.timeout("timed out")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    with pytest.raises(HubUnavailableError, match="cannot be reached"):
        hub.ensure_hub_reachable("model_name='gpt2'")


# ------------------------------------------------------------------------------------------ files and predict
def test_save_load_round_trip(short_config, tmp_path):
    run = fine_tune(short_config)
    path = run.save(tmp_path / "run.json")
    loaded = Run.load(path)
    assert loaded.config == run.config and loaded.history == run.history
    assert loaded.learning_rates == run.learning_rates and loaded.status == run.status
    assert loaded.train_losses == run.train_losses and len(run.train_losses) == run.meta["total_steps"]
    assert loaded.label_names == ["negative", "positive"]
    assert diagnose(loaded).verdict == diagnose(run).verdict
    assert "pickle" not in path.read_text() and json.loads(path.read_text())["format"] == "lmtune-widgets/run"
    with pytest.raises(RuntimeError, match="no trained model in memory"):
        loaded.predict(["hello"])


def test_non_finite_values_survive_a_round_trip(short_config, tmp_path):
    run = fine_tune(short_config)
    run.history[-1]["eval_loss"] = math.nan
    loaded = Run.load(run.save(tmp_path / "nan.json"))
    assert math.isnan(loaded.history[-1]["eval_loss"])


@pytest.mark.parametrize("content,message", [
    ("{not json", "is not a run file: it is not valid JSON"),
    ('{"some": "thing"}', "is not a run file saved by lmtune-widgets"),
    ('{"format": "lmtune-widgets/run", "version": 99}', "version 99"),
    ('{"format": "lmtune-widgets/run", "version": 1, "status": "finished"}', "is a damaged run file"),
])
def test_corrupted_or_foreign_run_files_are_explained(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        Run.load(path)


def test_predict_returns_label_names(preset_run):
    run = preset_run("good")
    predictions = run.predict(["The parcel came two days early and perfectly packed, thank you!",
                               "Charged twice and nobody answers my emails. Furious."])
    assert predictions == ["positive", "negative"]
    assert run.predict([]) == [] and run.predict("great app") in (["positive"], ["negative"])


def test_accuracy_on_a_split_matches_the_runs_own_evaluation(preset_run):
    run = preset_run("good")
    last = run.history[-1]["eval_accuracy"]
    assert run.accuracy("validation", limit=run.config.max_eval_samples) == pytest.approx(last, abs=0.01)
    assert 0.75 <= run.accuracy("test") <= 1.0  # the split no choice was made on
    with pytest.raises(ValueError, match="split='dev' is not valid: choose one of train, validation, test"):
        run.accuracy("dev")


def test_topic_task_has_five_labels(short_config):
    run = fine_tune(short_config.replace(task="topic"))
    assert run.label_names == ["app_website", "billing", "customer_support", "delivery", "product_quality"]
    assert set(run.predict(["the app crashes at login"])) <= set(run.label_names)


# ------------------------------------------------------------------------------------------ memory
def test_twenty_runs_do_not_leak_memory():
    import gc

    import psutil

    process = psutil.Process()
    config = FineTuneConfig(max_train_samples=32, max_eval_samples=16, num_train_epochs=1, evals_per_epoch=1)
    runs = []
    for i in range(3):  # warm up: imports, allocator pools, tokenizer cache
        fine_tune(config.replace(seed=i))
    gc.collect()
    before = process.memory_info().rss
    for i in range(20):
        run = fine_tune(config.replace(seed=i, freeze_layers=4 + i % 3))
        runs.append(run)
        if len(runs) > 1:
            runs[-2].release()  # older runs keep their curves, not their weights
    gc.collect()
    grown = (process.memory_info().rss - before) / 2**20
    assert grown <= 150, f"memory grew by {grown:.0f} MB over 20 runs"
    assert all(r.history for r in runs)


def test_a_collapse_or_a_rising_training_loss_reads_as_diverged_a_tiny_rate_as_underfitting(short_config):
    """Chance accuracy after big steps, or a training loss that ends above its start, is divergence; not slowness."""
    from lmtune_widgets import Run

    def fake(accuracy_end, norm_end, train_end=0.69):
        history = [{"step": s, "epoch": s / 4, "train_loss": t, "eval_loss": 0.69, "eval_accuracy": a,
                    "learning_rate": 0.01, "weight_norm": n, "elapsed_s": 0.0}
                   for s, a, n, t in [(0, 0.46, 100.0, 0.69), (4, 0.5, (100 + norm_end) / 2, 0.6),
                                      (8, accuracy_end, norm_end, train_end)]]
        return Run(config=short_config, label_names=["negative", "positive"], status="finished", history=history,
                   meta={"chance_accuracy": 0.5, "first_train_loss": 0.69})

    assert diagnose(fake(0.5, 130.0)).verdict == "diverged"
    assert "collapsed" in diagnose(fake(0.5, 130.0)).reason
    assert diagnose(fake(0.5, 101.0)).verdict == "underfitting"  # 1%: what weight decay alone does
    unstable = diagnose(fake(0.62, 101.0, train_end=0.80))  # better than chance, but training made it worse
    assert unstable.verdict == "diverged" and "ended higher than it started (0.69 to 0.80)" in unstable.reason
    assert diagnose(fake(0.62, 101.0, train_end=0.74)).verdict == "underfitting"  # within 10%: just slow
    slow = diagnose(fake(0.62, 101.0, train_end=0.67))
    assert "Raise the learning rate" in slow.advice  # a stuck loss and still weights: the steps are too small
    thrashing = diagnose(fake(0.74, 120.0, train_end=0.67))  # a stuck loss while the weights moved 20%
    assert thrashing.verdict == "underfitting" and "too big" in thrashing.reason
    assert thrashing.advice.startswith(f"Lower the learning rate (try {short_config.learning_rate / 10:.0e})")


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    from lmtune_widgets.measures import spearman

    a, b = [1, 2, 2, 3, 5, 4, 0.5], [2, 1, 3, 3, 5, 5, 0]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_the_end_of_training_is_read_over_a_whole_evaluation_interval():
    """Batch 4 at seed 42 (recorded): the last point averages only the 4 steps after the evaluation at step 804,
    one noisy value that reads as 'barely learnt'. Over the last interval of steps, the run is the good fit it is
    (86% kept). The warmup advice knows whether the run warmed up already."""
    from lmtune_widgets import atlas

    run = next(r for r in atlas.load().runs(FineTuneConfig(per_device_train_batch_size=4)) if r.config.seed == 42)
    assert run.history[-1]["step"] - run.history[-2]["step"] < run.meta["eval_every"] / 10  # the short last window
    assert run.history[-1]["train_loss"] >= 0.8 * run.meta["first_train_loss"]  # which alone looks stuck
    assert diagnose(run).verdict == "good fit", diagnose(run)
    blown = FineTuneConfig(learning_rate=0.05, warmup_ratio=0.0)
    for config, words in ((FineTuneConfig(), "lengthen the warmup"), (blown, "add warmup")):
        fake = Run(config=config, label_names=["negative", "positive"], status="diverged",
                   history=[{"step": 1, "epoch": 0.1, "train_loss": math.nan, "eval_loss": math.nan,
                             "eval_accuracy": 0.5}], meta={"chance_accuracy": 0.5})
        assert words in diagnose(fake).advice
