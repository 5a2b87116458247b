"""What the lessons stand on: the exercise check, reusing runs within a kernel, the finder, the search."""
import math

import pytest


def test_a_prediction_outside_the_verdicts_is_named(preset_run):
    from lmtune_widgets import lessons

    with pytest.raises(ValueError, match="prediction='wobbly'.*underfitting, good fit, overfitting, diverged"):
        lessons.check_prediction("wobbly", preset_run("good"))
    assert lessons.check_prediction("good fit", preset_run("good")).startswith("Right")
    assert lessons.check_prediction("overfitting", preset_run("good")).startswith("Not quite")


def test_the_same_settings_are_trained_once_per_kernel(short_config, capsys, monkeypatch):
    from lmtune_widgets import lessons, training

    monkeypatch.setattr(lessons, "_DONE", {})
    calls = []
    real = training.fine_tune
    monkeypatch.setattr(training, "fine_tune", lambda config, **kw: calls.append(config) or real(config, **kw))
    first = lessons.run_once(short_config, "first")
    again = lessons.sweep(short_config, "seed", [short_config.seed, 7])
    assert again[0] is first and again[1] is not first
    assert calls == [short_config, short_config.replace(seed=7)]
    assert "reused (these settings ran before)" in capsys.readouterr().out
    assert first.model is not None and again[1].model is None  # run_once keeps weights, a sweep does not


def test_a_stopped_run_is_not_reused(short_config, monkeypatch):
    from lmtune_widgets import lessons, training

    monkeypatch.setattr(lessons, "_DONE", {})
    real = training.fine_tune

    def stop_at_once(config, **kw):
        import threading

        stop = threading.Event()
        stop.set()
        return real(config, stop_event=stop, **kw)

    monkeypatch.setattr(training, "fine_tune", stop_at_once)
    assert lessons.run_once(short_config).status == "stopped"
    assert lessons._DONE == {}


def test_lr_find_raises_the_rate_exponentially_and_suggests_a_tenth_of_the_lowest():
    from lmtune_widgets import FineTuneConfig, lr_find

    config = FineTuneConfig(max_train_samples=160, per_device_train_batch_size=8, freeze_layers=5)
    found = lr_find(config, start_lr=1e-6, end_lr=1.0)
    rates = found.learning_rates
    assert 6 <= len(rates) <= 20 and len(found.losses) == len(rates) == len(found.smoothed)
    assert rates[0] == pytest.approx(1e-6)
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] == pytest.approx(1e6 ** (1 / 19))
    assert found.minimum in rates[2:] and found.suggestion == pytest.approx(found.minimum / 10)
    lowest = found.smoothed.index(min(found.smoothed[2:]), 2)
    assert rates[lowest] == found.minimum
    with pytest.raises(ValueError, match="start_lr=1.0 and end_lr=0.1"):
        lr_find(config, start_lr=1.0, end_lr=0.1)


def test_search_stores_a_fresh_study_in_sqlite(tmp_path, short_config):
    import optuna

    from lmtune_widgets.search import search

    storage = f"sqlite:///{tmp_path / 'studies' / 'study.db'}"
    for trials in (2, 1):  # the second call starts afresh in the same file
        study = search(short_config, n_trials=trials, storage=storage)
        assert len(study.trials) == trials
    assert (tmp_path / "studies" / "study.db").exists()
    stored = optuna.load_study(study_name="lmtune", storage=storage)
    assert len(stored.trials) == 1
    finished = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert finished and all(math.isfinite(t.value) for t in finished)
    assert set(stored.best_params) == {"learning_rate", "per_device_train_batch_size", "dropout", "weight_decay",
                                       "warmup_ratio"}


def test_recorded_sweeps_judge_each_value_against_the_reference_by_the_rule(capsys, monkeypatch):
    from lmtune_widgets import FineTuneConfig, atlas, lessons
    from lmtune_widgets.runs import compare_runs

    shown = []
    monkeypatch.setattr(lessons, "show", shown.append)
    groups = lessons.recorded_sweep("learning_rate", [1e-5, 5e-4, 1e-3], curves=[1e-5, 5e-4])
    out = capsys.readouterr().out.splitlines()
    assert len(shown) == 2 and all(len(g) >= 3 for g in groups.values())
    for line, value in zip(out, groups):
        expected = "reference" if value == 5e-4 else compare_runs(groups[value], groups[5e-4]).short
        assert line.rstrip().endswith(expected), line
    assert "differ, lower" in out[0]  # 1e-5 underfits
    rows = lessons.recorded_rows(groups, "learning_rate")
    assert [r["learning_rate"] for r in rows] == [1e-5, 5e-4, 1e-3] and rows[1]["seeds"] == 5
    with pytest.raises(ValueError, match="not recorded: .*learning_rate"):
        atlas.recorded(FineTuneConfig(learning_rate=7e-4))


def test_the_leaderboard_ranks_recorded_settings_by_their_worst_seed(capsys):
    from lmtune_widgets import lessons

    rows = lessons.leaderboard(top=3)
    lows = [r["low"] for r in rows]
    assert lows == sorted(lows, reverse=True) and len(rows) >= 20
    assert {r["against the defaults"] for r in rows} <= {"-", "higher", "can't tell", "equivalent", "lower"}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("the defaults: ") and "(the reference)" in lines[0]


def test_a_recorded_grid_draws_a_line_per_value_stars_each_best_and_names_what_is_missing(capsys, monkeypatch):
    from lmtune_widgets import FineTuneConfig, atlas, lessons
    from lmtune_widgets.evidence_measures import tuned
    from lmtune_widgets.plotting import short_number

    shown = []
    monkeypatch.setattr(lessons, "show", shown.append)
    base = FineTuneConfig(**atlas.FREEZING)
    grid = lessons.recorded_grid("freeze_layers", [0, 4], "learning_rate", [1e-4, 2e-3, 7e-4], base=base)
    out = capsys.readouterr().out
    assert len(shown) == 1 and set(grid) == {0, 4}
    assert set(grid[0]) == {1e-4, 2e-3} and all(len(found) >= 3 for found in grid[0].values())
    assert "not recorded (left out): freeze_layers 0, learning_rate 7e-04; freeze_layers 4, learning_rate 7e-04" in out
    for n in (0, 4):  # the starred best is the rate with the best mean, as `tuned` picks it
        best, _ = tuned(atlas.load(), [1e-4, 2e-3], **atlas.FREEZING, freeze_layers=n)
        assert f"freeze_layers {n}: best at learning_rate {short_number(best)}" in out
    assert "freeze_layers 0: best at learning_rate 1e-04" in out  # everything training wants the smaller step


def test_a_setting_keeps_its_colour_in_every_picture_of_a_lesson(monkeypatch):
    """The defaults are always the first colour; any other setting keeps the colour it was first drawn in, even in
    a picture where it comes in another order, and two settings never share a colour in one picture."""
    from lmtune_widgets import FineTuneConfig, plotting
    from lmtune_widgets.plotting import COLOURS, colours_for

    monkeypatch.setattr(plotting, "_COLOUR_OF", {})
    big, small = FineTuneConfig(learning_rate=2e-3), FineTuneConfig(learning_rate=1e-4)
    first = colours_for([small, FineTuneConfig(), big])
    assert first[1] == COLOURS[0] and len(set(first)) == 3
    assert colours_for([big, FineTuneConfig(seed=7), small]) == [first[2], COLOURS[0], first[0]]
    many = colours_for([FineTuneConfig(learning_rate=1e-5 * k) for k in range(1, 12)])
    assert len(set(many[:len(COLOURS)])) == len(COLOURS)  # distinct while there are colours left


def test_a_grid_on_another_task_keeps_the_colours_of_its_lines_and_names_chance_when_it_is_off_the_scale(monkeypatch):
    """Lesson 04 draws the dropout x noise grid on both tasks: a noise level keeps its colour, and topics' chance
    (20%), far below accuracies of 68 to 90%, is named in a note instead of squashing the lines to the bottom."""
    from lmtune_widgets import FineTuneConfig, atlas, lessons, plotting

    shown = []
    monkeypatch.setattr(lessons, "show", shown.append)
    monkeypatch.setattr(plotting, "_COLOUR_OF", {})
    base = FineTuneConfig(**atlas.NOISY)
    levels = list(atlas.NOISE_LEVELS)

    def colours_and_notes(figure):
        ax = figure.axes[0]
        lines = {line.get_label(): line.get_color() for line in ax.get_lines() if not line.get_label().startswith("_")}
        return lines, [t.get_text() for t in ax.texts], [line for line in ax.get_lines() if line.get_linestyle() == ":"]

    lessons.recorded_grid("label_noise", levels, "dropout", atlas.DROPOUTS, base=base)
    lessons.recorded_grid("label_noise", levels, "dropout", atlas.DROPOUTS, base=base.replace(task="topic"),
                          colours_like=base)
    lessons.recorded_grid("label_noise", levels, "dropout", atlas.DROPOUTS, base=base.replace(task="topic"))
    (sentiment, no_note, chance), (topic, note, no_chance), (fresh, _, _) = map(colours_and_notes, shown)
    assert sentiment == topic and len(set(sentiment.values())) == 4
    assert fresh != sentiment  # without colours_like, the topic lines are new settings with colours of their own
    assert len(chance) == 1 and not no_note  # sentiment's 50% sits near its lowest accuracies (about 60%): drawn
    assert note == ["chance (20%) is below the scale"] and not no_chance


def test_the_moved_names_still_work_for_this_release_and_say_where_they_went():
    """lessons.recorded, colours_for, plot_tradeoff and plot_errors moved to atlas and plotting: the old names give
    the same answer, with a DeprecationWarning naming the new place (the lessons call the new places)."""
    from lmtune_widgets import FineTuneConfig, atlas, lessons, plotting

    with pytest.warns(DeprecationWarning, match="lessons.recorded moved to atlas.recorded"):
        found = lessons.recorded(learning_rate=1e-3)
    assert found == atlas.recorded(FineTuneConfig(learning_rate=1e-3))
    with pytest.warns(DeprecationWarning, match="plotting.colours_for"):
        assert lessons.colours_for([FineTuneConfig()]) == plotting.colours_for([FineTuneConfig()])
    with pytest.warns(DeprecationWarning, match="plotting.plot_tradeoff"):
        assert lessons.plot_tradeoff({1e-3: found}, "learning rate").axes[0].get_legend().get_title().get_text() == \
            "learning rate"
    with pytest.warns(DeprecationWarning, match="plotting.plot_errors"):
        assert [ax.get_title() for ax in lessons.plot_errors({"lr 1e-3": found}).axes] == ["lr 1e-3, 3 seeds"]
