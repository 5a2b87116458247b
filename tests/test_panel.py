"""The tuning panel without a browser: controls, Run, Stop, errors, history, comparison, sharing."""
import gc
import threading
import time

import ipywidgets as widgets
import pytest

from lmtune_widgets import FineTuneConfig, TuningPanel, field_names
from lmtune_widgets.panel import StaticFigure, tooltip

# Small real runs: a few seconds each.
SMALL = dict(max_train_samples=32, max_eval_samples=32, num_train_epochs=1, freeze_layers=5, evals_per_epoch=2)
KNOBS = ["learning_rate", "per_device_train_batch_size", "num_train_epochs", "dropout", "weight_decay",
         "lr_scheduler_type", "warmup_ratio", "freeze_layers", "max_train_samples", "label_noise", "seed"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def panel():
    p = TuningPanel(**SMALL)
    yield p
    p.stop()
    p.wait(30)


def test_every_knob_has_a_control_with_a_tooltip(panel):
    assert set(KNOBS) <= set(panel.controls) <= set(field_names())
    for name, control in panel.controls.items():
        assert control.description and len(tooltip(control)) > 20, name
        if hasattr(control, "continuous_update"):
            assert control.continuous_update is False, name
    assert isinstance(panel.controls["learning_rate"], widgets.FloatLogSlider)
    assert panel.controls["learning_rate"].min == -7 and panel.controls["learning_rate"].max == -1
    assert set(panel.controls["per_device_train_batch_size"].options) >= {8, 16, 32, 64}
    assert panel.controls["freeze_layers"].max == 6
    assert isinstance(panel.widget, widgets.Widget)


def test_before_a_run_the_plan_is_shown(panel):
    assert "Trainable parameters" in panel.plan_html.value and "Estimated time" in panel.plan_html.value
    assert bytes(panel.schedule_image.value).startswith(PNG)
    panel.controls["num_train_epochs"].value = 10
    before = bytes(panel.schedule_image.value)
    panel.controls["lr_scheduler_type"].value = "cosine"
    assert panel.schedule_image.value != before
    frozen = panel.plan_html.value
    panel.controls["freeze_layers"].value = 0
    assert panel.plan_html.value != frozen and "(100%)" in panel.plan_html.value


def test_vary_enables_only_the_lesson_knobs():
    panel = TuningPanel(vary=("learning_rate", "dropout"), **SMALL)
    enabled = {name for name, control in panel.controls.items() if not control.disabled}
    assert enabled == {"learning_rate", "dropout"}
    assert panel.preset_dropdown.disabled
    with pytest.raises(ValueError, match="vary=\\['learning_rat'\\] names no control"):
        TuningPanel(vary=("learning_rat",))


def test_run_button_records_a_run_with_the_controls_config(panel):
    panel.controls["learning_rate"].value = 3e-4
    panel.controls["dropout"].value = 0.2
    panel.controls["seed"].value = 5
    first_picture = panel.curves_image.value
    panel.run_button.click()
    assert panel.running and panel.stop_button.disabled is False
    static = panel.wait(120)
    assert not panel.running and len(panel.runs) == 1
    run = panel.runs[0]
    assert run.config == panel.config
    assert run.config.learning_rate == pytest.approx(3e-4) and run.config.dropout == 0.2 and run.config.seed == 5
    assert bytes(panel.curves_image.value).startswith(PNG) and panel.curves_image.value != first_picture
    assert isinstance(static, StaticFigure) and static._repr_png_() == bytes(panel.curves_image.value)
    assert any(v in panel.verdict_html.value for v in ("GOOD FIT", "UNDERFITTING", "OVERFITTING", "DIVERGED"))
    assert "<td>1</td>" in panel.history_html.value and "learning rate=3e-04" in panel.history_html.value
    assert panel.progress_bar.value == panel.progress_bar.max == run.meta["total_steps"]
    assert panel.run_button.disabled is False and panel.stop_button.disabled is True


def test_a_second_click_during_a_run_starts_nothing():
    panel = TuningPanel(**{**SMALL, "num_train_epochs": 3})
    assert panel.run() is True
    thread = panel.controller.training.thread
    panel.run_button.click()
    assert panel.run() is False and panel.controller.training.thread is thread
    panel.wait(120)
    assert len(panel.runs) == 1


def test_stop_ends_a_long_run_quickly_and_keeps_it():
    panel = TuningPanel(**{**SMALL, "num_train_epochs": 20, "max_train_samples": 128})
    panel.run()
    deadline = time.time() + 60
    training = panel.controller.training
    while not (training.live_run and training.live_run.history) and time.time() < deadline:
        time.sleep(0.2)
    t = time.perf_counter()
    panel.stop_button.click()
    panel.wait(30)
    assert time.perf_counter() - t < 5
    assert panel.runs[-1].status == "stopped" and panel.runs[-1].history
    assert "(stopped)" in panel.verdict_html.value


def test_invalid_combination_is_flagged_before_run(panel):
    panel.controls["per_device_train_batch_size"].value = 64  # more than the 32 training samples
    assert not panel.plan.ok and panel.plan.config is None
    assert "per_device_train_batch_size=64 is out of range: allowed from 1 to 32" in panel.plan.error
    assert panel.plan.error in panel.check_html.value  # the view shows the plan's reason
    assert panel.run_button.disabled and panel.run() is False and not panel.runs
    panel.controls["per_device_train_batch_size"].value = 16
    assert panel.plan.ok and panel.plan.error is None
    assert panel.check_html.value == "" and not panel.run_button.disabled


def test_an_error_inside_a_callback_is_shown_and_the_run_kept(panel, monkeypatch):
    """A callback of the training thread that raises fails the run: shown in the panel, the run kept as 'failed'."""
    from lmtune_widgets import panel_runner

    def broken(*args, **kwargs):
        raise RuntimeError("the hand-over broke")

    monkeypatch.setattr(panel_runner.Handover, "on_evaluate", broken)
    panel.run()
    panel.wait(120)
    assert "The run failed: RuntimeError: the hand-over broke" in panel.log_html.value
    assert panel.errors and panel.runs and panel.runs[0].status == "failed"  # its own status, history kept
    assert panel.runs[0].history and "(failed)" in panel.history_html.value
    assert not panel.running and panel.run_button.disabled is False


def test_share_string_round_trips_between_panels(panel):
    panel.controls["learning_rate"].value = 2e-3
    panel.controls["lr_scheduler_type"].value = "cosine"
    panel.controls["label_noise"].value = 0.1
    other = TuningPanel(**SMALL)
    other.paste_text.value = panel.share_text.value
    other.apply_button.click()
    assert other.config == panel.config
    other.apply_share_string("{broken")
    assert "share string is not valid" in other.check_html.value


def test_preset_dropdown_sets_every_control():
    panel = TuningPanel()
    panel.preset_dropdown.value = "overfit"
    expected = FineTuneConfig.from_preset("overfit")
    assert panel.config == expected


def test_compare_overlays_past_runs(panel):
    for lr in (1e-4, 1e-3):
        panel.controls["learning_rate"].value = lr
        panel.run()
        panel.wait(120)
    assert [label for label, _ in panel.compare_select.options] == ["run 1", "run 2"]
    assert panel.compare_select.value == (0, 1)
    panel.compare_button.click()
    assert bytes(panel.compare_image.value).startswith(PNG)
    assert "too few seeds to judge" in panel.compare_verdict_html.value  # one seed of each
    assert panel.runs[0].model is None and panel.runs[1].model is not None  # only the latest keeps weights


def test_twenty_runs_keep_memory_flat():
    import psutil

    process = psutil.Process()
    panel = TuningPanel(**SMALL)
    for _ in range(2):
        panel.run()
        panel.wait(120)
    gc.collect()
    before = process.memory_info().rss
    for seed in range(20):
        panel.controls["seed"].value = seed
        panel.run()
        panel.wait(120)
    gc.collect()
    grown = (process.memory_info().rss - before) / 2**20
    assert len(panel.runs) == 22 and grown <= 200, f"grew {grown:.0f} MB"
    assert threading.active_count() < 10


def test_papermill_notebook_ends_with_a_static_figure(tmp_path):
    """Executed without a front end, `panel.run(); panel.wait()` leaves a PNG that GitHub/nbviewer can show."""
    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("LEARNING_RATE = 1e-4")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from lmtune_widgets import TuningPanel\n"
        f"panel = TuningPanel(learning_rate=LEARNING_RATE, **{SMALL!r})\n"
        "panel.run()\npanel.wait()")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), parameters={"LEARNING_RATE": 3e-4},
                               kernel_name="python3", progress_bar=False)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    last = out.cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in last), last
    assert any("3e-4" in c.source or "0.0003" in c.source for c in out.cells if "injected-parameters" in c.metadata.get("tags", []))


def test_a_slider_position_is_the_rate_it_reads_so_the_defaults_are_the_recorded_run():
    """The browser sends 10**-3.3 = 0.000501187 for the position that reads 5.0e-04: the panel's config says 5e-4,
    the recorded defaults, exactly; a value set from code between positions is kept as it is."""
    from lmtune_widgets import atlas
    from lmtune_widgets.panel import slider_rate

    panel = TuningPanel()
    panel.controls["learning_rate"].value = 10 ** -3.3
    assert panel.config.learning_rate == 5e-4 and panel.config == FineTuneConfig()
    assert atlas.load().runs(panel.config)
    assert [slider_rate(10 ** (p / 10)) for p in (-45, -40, -29, -20)] == [3.2e-5, 1e-4, 1.3e-3, 1e-2]
    assert slider_rate(1.25e-4) == 1.25e-4


def test_a_hub_data_set_keeps_the_task_control_off_after_a_preset(monkeypatch):
    from lmtune_widgets.panel_plan import PanelState

    monkeypatch.setattr(PanelState, "sizes", lambda self, task=None: (256, 64, 2))  # no hub here: its sizes, stated
    panel = TuningPanel(dataset="rotten_tomatoes", **SMALL)
    assert panel.controls["task"].disabled  # a hub data set brings its own labels
    panel.preset_dropdown.value = "good"
    assert panel.controls["task"].disabled and panel.config.dataset == "rotten_tomatoes"


def test_compared_runs_are_judged_by_the_rule_in_its_three_words():
    from lmtune_widgets.panel_plan import judge
    from lmtune_widgets.runs import Run

    def seeds(accuracies, **changes):
        return [Run(config=FineTuneConfig(seed=s, **changes), label_names=["negative", "positive"], status="finished",
                    kept={"validation_accuracy": a}) for s, a in enumerate(accuracies)]

    apart = judge(seeds([0.90, 0.91, 0.92]) + seeds([0.80, 0.81, 0.82], dropout=0.5))
    assert apart.startswith("defaults against dropout=0.5: differ, higher (+10.0 points"), apart
    overlap = judge(seeds([0.85, 0.87, 0.86]) + seeds([0.86, 0.875, 0.855], dropout=0.5))
    assert "can't tell with 3 seeds" in overlap
    assert "too few seeds to judge" in judge(seeds([0.9, 0.8]) + seeds([0.7, 0.6], dropout=0.5))
    assert judge(seeds([0.9, 0.8])).startswith("one setting")
    assert judge(seeds([0.9]) + seeds([0.8], dropout=0.5) + seeds([0.7], dropout=0.3)).startswith("3 settings")


# ------------------------------------------------------------------------------------------------ your own data
def _example_copy(tmp_path):
    import shutil
    from pathlib import Path

    from lmtune_widgets.data import bundled_data_path  # data/ in a checkout, inside the package when installed

    return Path(shutil.copy(bundled_data_path("support_tickets_example.csv"),
                            tmp_path / "tickets.csv"))


def test_a_data_file_is_summed_up_before_any_run_and_kept_by_presets_and_share_strings(panel, tmp_path):
    path = _example_copy(tmp_path)
    assert "negative" in panel.data_html.value and "train" in panel.data_html.value  # the bundled data, summed up
    panel.data_path_text.value = str(path)
    panel.data_button.click()
    assert "tickets.csv: no text column found among its columns" in panel.data_html.value
    assert panel.config.dataset is None  # a file that cannot be used changes nothing
    panel.text_column_text.value, panel.label_column_text.value = "ticket", "queue"
    panel.data_button.click()
    assert panel.config.dataset == str(path) and panel.config.text_column == "ticket"
    shown = panel.data_html.value
    assert "file:tickets.csv@" in shown and all(word in shown for word in ("account", "billing", "shipping", "126"))
    assert "median length: 13 words" in shown and "longer than max_length=" in shown and not panel.runs
    assert panel.controls["task"].disabled and panel.controls["max_train_samples"].max == 126
    assert '"dataset":' in panel.share_text.value and '"text_column":"ticket"' in panel.share_text.value
    panel.preset_dropdown.value = "overfit"  # a preset keeps the data
    assert panel.config.dataset == str(path) and panel.config.label_column == "queue"
    other = TuningPanel(**SMALL)
    other.paste_text.value = panel.share_text.value
    other.apply_button.click()
    assert other.config == panel.config and "account" in other.data_html.value
    assert other.use_data("") and other.config.dataset is None and not other.controls["task"].disabled


def test_an_upload_is_kept_in_the_kits_folder_on_ipywidgets_7_and_8(panel, tmp_path, monkeypatch):
    import datetime
    import hashlib

    from lmtune_widgets import data_files
    from lmtune_widgets.panel import uploaded_files

    monkeypatch.setattr(data_files, "UPLOAD_DIR", tmp_path / "uploads")
    content = _example_copy(tmp_path).read_bytes()
    version_8 = ({"name": "my tickets.csv", "type": "text/csv", "size": len(content), "content": memoryview(content),
                  "last_modified": datetime.datetime(2026, 1, 5, tzinfo=datetime.timezone.utc)},)
    version_7 = {"my tickets.csv": {"content": content, "metadata": {"name": "my tickets.csv", "size": len(content)}}}
    assert uploaded_files(version_8) == uploaded_files(version_7) == [("my tickets.csv", content)]
    panel.text_column_text.value, panel.label_column_text.value = "ticket", "queue"
    if widgets.__version__.startswith("7"):
        panel._on_upload({"new": version_7})
    else:
        panel.data_upload.value = version_8  # what the browser sends
    stored = tmp_path / "uploads" / hashlib.sha256(content).hexdigest()[:16] / "my tickets.csv"
    assert stored.read_bytes() == content and panel.config.dataset == str(stored)
    assert "file:my tickets.csv@" in panel.data_html.value
    panel._on_upload({"new": {"sheet.xlsx": {"content": b"PK\x03\x04", "metadata": {}}}})
    assert "sheet.xlsx: unknown kind of file" in panel.data_html.value and panel.config.dataset == str(stored)
