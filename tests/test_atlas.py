"""Recorded runs: the grid, the store, matching, bands, the is-it-real rule, and proof by re-running."""
import json
import math
import re

import pytest

from lmtune_widgets import FineTuneConfig, Run, atlas
from lmtune_widgets.runs import compare_runs, place_in_spread

from conftest import SHORT

TINY = FineTuneConfig(**SHORT)  # a few seconds a run


# ------------------------------------------------------------------------------------------ the grid
def test_the_grid_covers_every_knob_with_enough_values_and_seeds():
    planned = atlas.grid()
    configs = [c for _, c in planned]
    assert len(configs) == len(set(configs))
    by_experiment = {}
    for section, config in planned:
        by_experiment.setdefault((section, atlas.config_key(config)), set()).add(config.seed)
    for (section, _), seeds in by_experiment.items():
        assert len(seeds) >= (5 if section in ("defaults", "presets") else 3), section
    defaults = FineTuneConfig()
    for knob, values in atlas.ONE_KNOB.items():
        recorded = {getattr(c, knob) for c in configs if c.replace(**{knob: getattr(defaults, knob)}, seed=42) == defaults}
        assert len(recorded) >= 5 and set(values) <= recorded, knob
    for name in atlas.LESSON_GRIDS:
        tasks = {c.task for s, c in planned if s == f"lessons: {name}"}
        assert tasks == {"sentiment", "topic"}, name


def test_the_llm_grid_sits_around_its_preset_and_costs_more_than_any_minilm_run():
    planned = [(s, c) for s, c in atlas.grid() if s.startswith("llm")]
    preset = FineTuneConfig.from_preset("llm_lora")
    assert {c.seed for s, c in planned if s == "llm: preset" and c.replace(seed=42) == preset} == set(atlas.SEEDS)
    assert {s for s, _ in planned} == {"llm: preset", *(f"llm: {name}" for name in atlas.LLM_GRIDS),
                                       *(f"llm practice: {name}" for name in atlas.LLM_PRACTICE_GRIDS)}
    for _, config in planned:  # the LLM's own data and alpha: only the knobs of its section differ from the preset
        assert config.model_name == "smollm2" and config.max_train_samples == preset.max_train_samples
        assert config.lora_alpha == preset.lora_alpha
    minilm = [c for s, c in atlas.grid() if not s.startswith("llm")]
    assert min(atlas.cost(c) for _, c in planned) > sorted(atlas.cost(c) for c in minilm)[1]  # verify's two cheapest are MiniLM's


def test_every_recorded_value_is_a_position_the_panel_can_reach():
    from lmtune_widgets import TuningPanel

    panels = {}
    for _, config in atlas.grid():
        if config.model_name not in panels:  # the LLM's runs on a panel of the LLM (30 blocks to freeze)
            panels[config.model_name] = TuningPanel(model_name=config.model_name)
        panel = panels[config.model_name]
        for name, control in panel.controls.items():
            value = getattr(config, name)
            if isinstance(value, bool):  # a checkbox
                continue
            if hasattr(control, "options"):  # plain values, or (label, value) pairs
                values = [o[1] if isinstance(o, tuple) else o for o in control.options]
                assert value in values, (name, value)
            elif name == "learning_rate":  # a FloatLogSlider: the value reads as the readout of one of its positions
                position = round((math.log10(value) - control.min) / control.step)
                readout = f"{10 ** (control.min + position * control.step):{control.readout_format}}"
                assert f"{value:{control.readout_format}}" == readout and 0 <= position * control.step <= control.max - control.min
            else:
                position = (value - control.min) / control.step
                assert abs(position - round(position)) < 1e-6 and control.min <= value <= control.max, (name, value)


def test_matching_tolerates_the_rounding_of_a_control():
    assert atlas.config_key(FineTuneConfig(learning_rate=10 ** -3.3)) == atlas.config_key(FineTuneConfig())
    assert atlas.config_key(FineTuneConfig(dropout=0.15000000000000002)) == atlas.config_key(FineTuneConfig(dropout=0.15))
    assert atlas.config_key(FineTuneConfig(learning_rate=10 ** -3.2)) != atlas.config_key(FineTuneConfig())
    assert atlas.config_key(FineTuneConfig(seed=1)) == atlas.config_key(FineTuneConfig(seed=2))
    assert atlas.config_key(FineTuneConfig(seed=1), seed=True) != atlas.config_key(FineTuneConfig(seed=2), seed=True)


# ------------------------------------------------------------------------------------------ recording and reading
@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    """Two tiny settings with three seeds each, recorded by two shards into a fresh folder."""
    folder = tmp_path_factory.mktemp("atlas")
    planned = [("tiny", TINY.replace(learning_rate=lr, seed=seed)) for lr in (1e-3, 1e-5) for seed in (42, 1, 2)]
    real_grid = atlas.grid
    atlas.grid = lambda: planned
    try:
        counts = [atlas.record(shard=(1, 2), folder=folder, quiet=True),
                  atlas.record(shard=(2, 2), folder=folder, quiet=True),
                  atlas.record(shard=(1, 1), folder=folder, quiet=True)]  # resumable: nothing left to record
    finally:
        atlas.grid = real_grid
    return folder, counts, planned


def test_shards_share_the_grid_and_a_second_pass_records_nothing(tiny_book):
    folder, counts, planned = tiny_book
    assert counts == [3, 3, 0]
    assert sorted(p.name for p in folder.iterdir()) == ["cpu-shard1of2.jsonl", "cpu-shard2of2.jsonl"]
    book = atlas.load(folder=folder)
    assert len(book) == 6 and set(book.configs()) == {c for _, c in planned}


def test_a_recorded_run_reads_back_as_the_run_it_was(tiny_book):
    from lmtune_widgets import fine_tune

    folder, _, _ = tiny_book
    book = atlas.load(folder=folder)
    recorded = book.runs(TINY.replace(learning_rate=1e-3))
    assert [r.config.seed for r in recorded] == [1, 2, 42]
    live = fine_tune(TINY.replace(learning_rate=1e-3, seed=42), thorough=True)
    assert atlas.difference(recorded[2], live) <= atlas.SAME_KIND_TOLERANCE
    assert recorded[2].learning_rates == pytest.approx(live.learning_rates)
    assert recorded[2].kept["errors_by_phenomenon"] == live.kept["errors_by_phenomenon"]
    assert recorded[2].meta["threads"] == 1 and recorded[2].meta["recorded"]
    assert "train_eval_loss" in recorded[2].history[-1] and "similarity" in recorded[2].kept


def test_the_band_spans_the_seeds(tiny_book):
    folder, _, _ = tiny_book
    book = atlas.load(folder=folder)
    config = TINY.replace(learning_rate=1e-3)
    band = book.band(config)
    runs = book.runs(config)
    assert [row["step"] for row in band] == [h["step"] for h in runs[0].history]
    for row, points in zip(band, zip(*(r.history for r in runs))):
        values = [p["eval_accuracy"] for p in points]
        assert row["seeds"] == 3
        assert row["eval_accuracy"]["min"] == min(values) <= row["eval_accuracy"]["mean"] <= max(values) == row["eval_accuracy"]["max"]


def test_lookup_says_plainly_when_it_is_not_the_same_run(tiny_book):
    folder, _, _ = tiny_book
    book = atlas.load(folder=folder)
    exact = book.lookup(TINY.replace(learning_rate=10 ** -3.0, seed=7))  # any seed: the setting is recorded
    assert exact.exact and len(exact.runs) == 3 and str(exact) == "recorded: these settings, 3 seeds"
    near = book.lookup(TINY.replace(learning_rate=8e-4))
    assert not near.exact and near.config.learning_rate == 1e-3
    assert str(near).startswith("not the same run: the nearest recorded settings have learning_rate 0.001 instead of 8e-04")
    assert book.runs(TINY.replace(learning_rate=8e-4)) == []
    other = book.lookup(TINY.replace(dataset="tickets.csv"))  # other data: no band of this data stands in for it
    assert not other.exact and other.runs == [] and other.config is None


def test_a_recorder_killed_mid_line_loses_only_that_line(tiny_book, tmp_path):
    folder, _, _ = tiny_book
    lines = (folder / "cpu-shard1of2.jsonl").read_text().splitlines()
    (tmp_path / "cpu-cut.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:100])
    assert len(atlas.load(folder=tmp_path)) == len(lines)
    (tmp_path / "middle").mkdir()
    (tmp_path / "middle" / "cpu-cut.jsonl").write_text(lines[0][:100] + "\n" + lines[1])
    with pytest.raises(ValueError, match="cpu-cut.jsonl:1 is not a recorded run"):
        atlas.load(folder=tmp_path / "middle")


def test_verify_catches_a_record_that_was_changed(tiny_book, tmp_path):
    import io

    folder, _, _ = tiny_book
    record = json.loads((folder / "cpu-shard1of2.jsonl").read_text().splitlines()[0])
    record["train_losses"][3] += 1e-4
    (tmp_path / "cpu-tampered.jsonl").write_text(json.dumps(record) + "\n")
    out = io.StringIO()
    assert atlas.verify(sample=1, book=atlas.load(folder=tmp_path), out=out) is False
    worst = float(re.search(r"largest difference (\S+)", out.getvalue()).group(1))
    assert "MISMATCH" in out.getvalue() and 5e-5 < worst < 2e-4, out.getvalue()


def test_the_two_cheapest_bundled_recorded_runs_reproduce():
    """The proof the brief asks of `make test`: recorded curves are real fine-tunes, re-run here number for number."""
    import io

    book = atlas.load()
    assert len(book) >= 2, "the bundled atlas holds no recorded runs"
    out = io.StringIO()
    ok = atlas.verify(sample=2, cheapest=True, book=book, out=out)
    print(out.getvalue())
    assert ok and out.getvalue().count("match:") == 2, out.getvalue()


def test_the_bundled_atlas_holds_every_planned_run_on_one_thread_of_a_cpu():
    """The grid is recorded whole: a run added to `atlas.grid()` fails here until `make atlas` records it."""
    from collections import Counter

    book = atlas.load()
    missing = Counter(section for section, config in atlas.grid() if config not in book)
    assert set(missing) <= atlas.RECORDING, f"planned but not recorded: {dict(missing)}"
    records = [json.loads(line) for path in atlas.atlas_dir().glob("*.jsonl") for line in path.open()]
    assert {(r["meta"]["device"], r["meta"]["threads"], r["meta"]["precision"]) for r in records} == {("cpu", 1, "float32")}
    assert sum(path.stat().st_size for path in atlas.atlas_dir().glob("*.jsonl")) < 20e6

# ------------------------------------------------------------------------------------------ is the difference real?
def _runs(*accuracies):
    return [Run(config=TINY.replace(seed=i), label_names=["negative", "positive"], status="finished",
                kept={"validation_accuracy": a}) for i, a in enumerate(accuracies)]


def test_a_difference_is_real_only_when_the_seed_ranges_do_not_overlap():
    assert compare_runs(_runs(0.90, 0.91, 0.93), _runs(0.85, 0.86, 0.89)).verdict == "higher"
    assert compare_runs(_runs(0.85, 0.86, 0.89), _runs(0.90, 0.91, 0.93)).verdict == "lower"
    overlap = compare_runs(_runs(0.88, 0.91, 0.93), _runs(0.85, 0.86, 0.89))
    assert overlap.verdict == "can't tell" and not overlap.real and overlap.word == "can't tell"
    assert "can't tell with 3 seeds" in str(overlap) and "85.0% to 89.0% over 3" in str(overlap)
    assert compare_runs(_runs(0.95, 0.96), _runs(0.5, 0.51, 0.52)).verdict == "too few seeds"


def _seeded(accuracies, seeds):
    return [Run(config=TINY.replace(seed=s), label_names=["negative", "positive"], status="finished",
                kept={"validation_accuracy": a}) for s, a in zip(seeds, accuracies)]


def test_overlapping_ranges_are_equivalent_only_when_the_interval_of_the_difference_is_inside_the_margin():
    from scipy import stats

    a = [0.861, 0.858, 0.866, 0.855, 0.862, 0.859, 0.864, 0.857, 0.860, 0.863]
    b = [0.860, 0.862, 0.859, 0.861, 0.857, 0.865, 0.858, 0.862, 0.856, 0.861]
    # different seeds on each side: Welch's interval, the same one scipy gives
    same = compare_runs(_seeded(a, range(10)), _seeded(b, range(10, 20)))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=0.9)
    assert same.interval == pytest.approx((ci.low, ci.high)) and not same.paired
    assert same.verdict == "equivalent" and same.word == "equivalent" and not same.real
    assert "equivalent within ±1 point" in str(same) and "90% interval" in str(same)
    assert same.short.startswith("equivalent within ±1 point (+0.0 points, 90% interval -0.")
    # 3 seeds each, with a seed spread of 2 points (as MiniLM's): the interval is wider than the margin
    few = compare_runs(_seeded([0.85, 0.87, 0.86], range(3)), _seeded([0.86, 0.875, 0.855], range(10, 13)))
    assert few.verdict == "can't tell" and few.interval[1] - few.interval[0] > 0.02
    assert few.short.startswith("can't tell with 3 seeds (")
    # a tighter margin than the interval: can't tell; a measure with no margin is never called equivalent
    assert compare_runs(_seeded(a, range(10)), _seeded(b, range(10, 20)), margin=0.001).verdict == "can't tell"
    assert compare_runs(_seeded(a, range(10)), _seeded(b, range(10, 20)), what="kept validation loss",
                        measure=lambda r: r.kept["validation_accuracy"]).verdict == "can't tell"


def test_runs_with_the_same_seeds_are_compared_seed_by_seed():
    from scipy import stats

    a = [0.80, 0.85, 0.90, 0.83]
    b = [0.805, 0.853, 0.902, 0.834]  # each seed a little higher: paired, the difference is clear and small
    paired = compare_runs(_seeded(b, range(4)), _seeded(a, range(4)))
    ci = stats.ttest_rel(b, a).confidence_interval(confidence_level=0.9)
    assert paired.paired and paired.interval == pytest.approx((ci.low, ci.high))
    assert paired.verdict == "equivalent" and 0 < paired.interval[0] < paired.interval[1] < 0.01
    unpaired = compare_runs(_seeded(b, range(4)), _seeded(a, range(4, 8)))
    assert not unpaired.paired and unpaired.verdict == "can't tell"
    # one side with more seeds: paired over the seeds both have, the ranges over all
    more = compare_runs(_seeded(b, range(4)), _seeded(a + [0.95, 0.70], range(6)))
    assert more.paired == 4 and more.interval == pytest.approx(paired.interval) and more.second == (0.70, 0.95)
    assert "seed by seed on the 4 shared seeds, difference +0.4 points" in str(more)


def test_a_live_run_is_placed_against_the_recorded_spread():
    recorded = _runs(0.85, 0.86, 0.89)
    assert place_in_spread(_runs(0.87)[0], recorded).startswith("kept accuracy 87.0%: inside the recorded spread")
    assert "above the recorded spread (85.0% to 89.0% over 3 seeds)" in place_in_spread(_runs(0.95)[0], recorded)
    assert "below" in place_in_spread(_runs(0.5)[0], recorded)


# ------------------------------------------------------------------------------------------ the panel answers at once
def test_the_panel_draws_the_recorded_band_without_training_then_places_a_live_run(tiny_book, monkeypatch):
    from lmtune_widgets import TuningPanel, training

    folder, _, _ = tiny_book
    monkeypatch.setattr(atlas, "atlas_dir", lambda: folder)
    trained = []
    real = training.fine_tune
    monkeypatch.setattr(training, "fine_tune", lambda *a, **k: trained.append(1) or real(*a, **k))
    panel = TuningPanel(**{**SHORT, "learning_rate": 1e-4})
    assert panel.recorded == [] and "not recorded" in panel.recorded_html.value
    before = panel.curves_image.value
    panel.controls["learning_rate"].value = 10 ** -3.0  # the slider's position for 1e-3
    assert len(panel.recorded) == 3 and not trained
    assert "Recorded:" in panel.recorded_html.value and panel.curves_image.value != before
    panel.run()
    panel.wait(120)
    assert trained and "Against the recorded runs:" in panel.verdict_html.value
    assert "the recorded spread" in panel.verdict_html.value


def test_seed_bands_are_drawn_one_shade_per_setting(tiny_book):
    from lmtune_widgets.plotting import plot_bands

    book = atlas.load(folder=tiny_book[0])
    groups = [book.runs(TINY.replace(learning_rate=lr)) for lr in (1e-3, 1e-5)]
    fig = plot_bands(groups, ["1e-3", "1e-5"], live=groups[0][0])
    loss_ax, acc_ax, _ = fig.axes
    assert len(loss_ax.collections) == len(acc_ax.collections) == 2  # a shaded band per setting
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["1e-3 (3 seeds)", "1e-5 (3 seeds)", "your run"]


def test_plot_runs_draws_runs_that_differ_only_by_seed_as_one_band(tiny_book):
    from lmtune_widgets.plotting import plot_runs

    book = atlas.load(folder=tiny_book[0])
    runs = book.runs(TINY.replace(learning_rate=1e-3)) + book.runs(TINY.replace(learning_rate=1e-5))[:1]
    fig = plot_runs(runs, labels=["lr 1e-3", "", "", "lr 1e-5"])
    acc_ax = fig.axes[1]
    assert len(acc_ax.collections) == 2
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["lr 1e-3 (3 seeds)", "lr 1e-5 (1 seed)"]


def test_nothing_is_equivalent_on_a_validation_split_where_one_message_outweighs_the_margin():
    def counted(counts, seeds, size):  # kept accuracies on `size` validation messages
        return [Run(config=TINY.replace(seed=s), label_names=["a", "b", "c"], status="finished",
                    kept={"validation_accuracy": c / size}, meta={"num_validation": size}) for s, c in zip(seeds, counts)]

    # every seed keeps the same count on 27 tickets: a zero-wide interval, yet one ticket is 3.7 points
    coarse = compare_runs(counted([26, 26, 26], range(3), 27), counted([26, 26, 26, 25], range(4), 27))
    assert coarse.interval == pytest.approx((0.0, 0.0)) and coarse.verdict == "can't tell"
    assert "one validation message is 3.7 points: too coarse to show sameness within ±1 point" in str(coarse)
    # the same counts scaled to 351 messages (one message 0.28 points): equivalent
    fine = compare_runs(counted([338, 338, 338], range(3), 351), counted([338, 338, 338, 325], range(4), 351))
    assert fine.verdict == "equivalent"
