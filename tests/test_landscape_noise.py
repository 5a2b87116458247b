"""A study's numbers against seed noise (`study_noise`) and the pictures that draw them (`landscape`).

Studies are in memory, built from recorded runs: each trial's value is a recorded run's kept validation loss,
or one placed at a known distance from a recorded setting, against that setting's known seed spread. Set
LMTUNE_PICTURES=<folder> to keep the PNGs drawn here, to look at them.
"""
import inspect
import os
import random
from pathlib import Path

import optuna
import pytest

DEFAULTS = {"learning_rate": 5e-4, "per_device_train_batch_size": 16}


@pytest.fixture(autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def pictures(tmp_path) -> Path:
    folder = Path(os.environ.get("LMTUNE_PICTURES", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def recorded_study(n: int, seed: int = 0, name: str = "recorded"):
    """A study of n recorded runs drawn at random (each a real seed of a setting searched on the defaults' data)."""
    from lmtune_widgets.study_noise import _distributions_of, recorded_trials

    rows = recorded_trials()
    distributions = _distributions_of(rows)
    study = optuna.create_study(study_name=name)
    for i, (params, value) in enumerate(random.Random(seed).sample(rows, n)):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value,
                                                  user_attrs={"learner": f"learner {i % 4}"}))
    return study


def study_of(trials, name="placed"):
    """A study of (learner, params, value) trials, finished in this order."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    distributions = {"learning_rate": FloatDistribution(1e-5, 5e-3, log=True),
                     "per_device_train_batch_size": CategoricalDistribution([8, 16, 32, 128])}
    study = optuna.create_study(study_name=name)
    for learner, params, value in trials:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value,
                                                  user_attrs={"learner": learner}))
    return study


def defaults_spread():
    """The recorded seeds of the defaults: their mean and range of kept validation loss."""
    from lmtune_widgets import FineTuneConfig, atlas

    values = [r.kept["validation_loss"] for r in atlas.load().runs(FineTuneConfig())]
    assert len(values) >= 3
    return sum(values) / len(values), max(values) - min(values)


def test_two_finished_trials_give_one_plain_line_and_no_bars(tmp_path):
    from lmtune_widgets.landscape import importance_figure, study_landscape
    from lmtune_widgets.plotting import to_png
    from lmtune_widgets.study_noise import importance_intervals

    study = recorded_study(2, name="two trials")
    found = importance_intervals(study)
    assert not found.enough and found.ranges == {} and found.samples == {}
    assert found.line == "2 finished trials: too few to say which settings matter"
    for fig in (importance_figure(study), study_landscape(study)):
        ax = fig.axes[0] if len(fig.axes) == 1 else fig.axes[2]
        assert not ax.lines and not ax.patches and not ax.collections  # no bar, no range, no dot
        assert any(text.get_text() == found.line for text in ax.texts)
    (pictures(tmp_path) / "importance_two_trials.png").write_bytes(to_png(importance_figure(study), tight=True))


def test_importances_are_drawn_only_from_min_finished_trials_on():
    from lmtune_widgets.study_noise import MIN_FINISHED, importance_intervals

    assert not importance_intervals(recorded_study(MIN_FINISHED - 1), resamples=3).enough
    assert importance_intervals(recorded_study(MIN_FINISHED), resamples=3).enough


def test_the_threshold_is_where_studies_of_recorded_runs_agree_on_the_top_setting():
    """MIN_FINISHED's measurement, at a smaller size: studies of 3 recorded runs name the setting that matters most
    among all of them no better than a coin, studies of MIN_FINISHED at least three times in four."""
    from lmtune_widgets.study_noise import MIN_FINISHED, importance_agreement, recorded_trials

    rows = recorded_trials()
    assert len(rows) >= 100
    agreement = importance_agreement(rows, [3, MIN_FINISHED], studies=20)
    assert agreement[3] <= 0.5 and agreement[MIN_FINISHED] >= 0.75, agreement


def test_importance_ranges_come_from_several_evaluations_with_their_spread(tmp_path):
    import numpy as np

    from lmtune_widgets.landscape import importance_figure
    from lmtune_widgets.plotting import to_png
    from lmtune_widgets.study_noise import RESAMPLES, importance_intervals

    study = recorded_study(40, seed=3)
    found = importance_intervals(study)
    assert found.enough and found.finished == 40 and found.evaluations == RESAMPLES
    assert set(found.ranges) == {"learning_rate", "per_device_train_batch_size", "dropout", "weight_decay",
                                 "warmup_ratio"}
    for name, (low, median, high) in found.ranges.items():
        values = found.samples[name]
        assert len(values) == RESAMPLES
        assert low <= median <= high and median == pytest.approx(np.median(values))
        assert low == pytest.approx(np.percentile(values, 5)) and high == pytest.approx(np.percentile(values, 95))
    top = next(iter(found.ranges))
    assert found.ranges[top][2] - found.ranges[top][0] > 0.05  # the resamples disagree: there is spread to draw
    medians = [m for _, m, _ in found.ranges.values()]
    assert medians == sorted(medians, reverse=True)
    assert importance_intervals(study).ranges == found.ranges  # seeded: the same study draws the same picture

    fig = importance_figure(study, found)
    ax = fig.axes[0]
    ranges = [line for line in ax.lines if len(line.get_xdata()) == 2]
    assert len(ranges) == 5 and not ax.patches  # a range per setting, no bar
    drawn = {tuple(line.get_xdata()) for line in ranges}
    assert drawn == {(low, high) for low, _, high in found.ranges.values()}
    (pictures(tmp_path) / "importance_40_trials.png").write_bytes(to_png(fig, tight=True))


def test_the_nearby_recorded_setting_is_the_nearest_rate_then_the_nearest_batch():
    from lmtune_widgets.study_noise import nearby_setting

    near = nearby_setting({"learning_rate": 3e-4, "per_device_train_batch_size": 32})
    assert (near.config.learning_rate, near.config.per_device_train_batch_size) == (2e-4, 32)
    near = nearby_setting({"learning_rate": 1.5e-4})  # batch not searched: the default's
    assert (near.config.learning_rate, near.config.per_device_train_batch_size) == (2e-4, 16)
    near = nearby_setting({})
    assert near.config.changes() == {} and len(near.values) == 5  # the defaults, 5 seeds
    assert nearby_setting({"learning_rate": 0.03}).config.learning_rate == 5e-3  # outside the grid: its end


def test_trials_differ_only_by_more_than_the_recorded_seed_spread():
    from lmtune_widgets.atlas import Book
    from lmtune_widgets.study_noise import compare_trials

    mean, spread = defaults_spread()
    wide = compare_trials(mean + 1.5 * spread, DEFAULTS, mean, DEFAULTS)
    assert (wide.verdict, wide.word) == ("higher", "differ")
    narrow = compare_trials(mean + 0.5 * spread, DEFAULTS, mean, DEFAULTS)
    assert (narrow.verdict, narrow.word) == ("can't tell", "can't tell")
    assert narrow.difference == pytest.approx(0.5 * spread)  # the means are the trials' own values
    assert compare_trials(mean, DEFAULTS, mean + 1.5 * spread, DEFAULTS).verdict == "lower"
    # the same gap near a setting whose seeds hardly spread (2e-4: within a few thousandths) is a difference
    assert compare_trials(0.36, {"learning_rate": 2e-4}, 0.35, {"learning_rate": 2e-4}).word == "differ"
    assert compare_trials(0.36, DEFAULTS, 0.35, DEFAULTS).word == "can't tell"
    # nothing recorded: the rule has one value each
    assert compare_trials(0.9, DEFAULTS, 0.3, DEFAULTS, book=Book([])).verdict == "too few seeds"


def test_the_class_picture_says_differ_and_cant_tell_against_recorded_seeds(tmp_path):
    from lmtune_widgets.landscape import class_landscape, study_landscape
    from lmtune_widgets.plotting import to_png

    mean, spread = defaults_spread()
    study = study_of([("bob", DEFAULTS, mean + 2.0 * spread),  # first to finish
                      ("cy", DEFAULTS, mean + 0.6 * spread),  # improves on bob's by 1.4 spreads: differ
                      ("ada", DEFAULTS, mean),  # improves on cy's by 0.6 spreads: can't tell
                      ("ada", {"learning_rate": 1e-5, "per_device_train_batch_size": 16}, 0.69)],
                     name="placed class")
    fig = study_landscape(study)
    assert len(fig.axes) == 4 and "4 trials by 3 learner(s)" in fig._suptitle.get_text()

    best_ax = fig.axes[1]
    marked = {c.get_label(): [tuple(p) for p in c.get_offsets()] for c in best_ax.collections
              if c.get_label().startswith("improvement")}
    assert marked == {"improvement larger than seed noise (differ)": [(2, pytest.approx(mean + 0.6 * spread))],
                      "improvement within seed noise (can't tell)": [(3, pytest.approx(mean))]}
    legend = [t.get_text() for t in best_ax.get_legend().get_texts()]
    assert set(marked) <= set(legend)

    table = fig.axes[3].tables[0]
    rows = {table[r, 1].get_text().get_text(): table[r, 3].get_text().get_text() for r in range(1, 4)}
    assert rows["ada"] == "best"
    assert rows["cy"] == f"+{0.6 * spread:.3f} can't tell"
    assert rows["bob"] == f"+{2.0 * spread:.3f} differ"
    (pictures(tmp_path) / "class_placed.png").write_bytes(to_png(fig))
    assert (pictures(tmp_path) / "class_placed.png").stat().st_size > 10_000

    assert list(inspect.signature(class_landscape).parameters)[:4] == ["storage", "study_name", "top", "references"]


def test_the_class_picture_of_a_recorded_study_draws_ranges_and_verdicts(tmp_path):
    from lmtune_widgets.landscape import study_landscape
    from lmtune_widgets.plotting import to_png

    fig = study_landscape(recorded_study(40, seed=3, name="recorded class"))
    importance_ax, table = fig.axes[2], fig.axes[3].tables[0]
    assert len([line for line in importance_ax.lines if len(line.get_xdata()) == 2]) == 5
    verdicts = [table[r, 3].get_text().get_text() for r in range(2, 5)]
    assert all(v.endswith(("differ", "can't tell")) for v in verdicts), verdicts
    (pictures(tmp_path) / "class_recorded_40.png").write_bytes(to_png(fig))


def test_searched_settings_are_the_search_spaces():
    from lmtune_widgets.search import default_space
    from lmtune_widgets.study_noise import SEARCHED

    fixed = optuna.trial.FixedTrial({"learning_rate": 1e-4, "per_device_train_batch_size": 16, "dropout": 0.1,
                                     "weight_decay": 0.0, "warmup_ratio": 0.1})
    assert tuple(default_space(fixed)) == SEARCHED
