"""The static pictures, on hand-made runs (no training): scales, shared axes, one panel per run."""
import io
import math

from lmtune_widgets import FineTuneConfig, Run
from lmtune_widgets.plotting import plot_run, plot_runs, plot_schedules, plot_step_losses


def fake_run(peak: float, steps: int = 8, steps_per_epoch: int = 4) -> Run:
    rates = [peak * (k / 2 if k < 2 else (steps - k) / (steps - 2)) for k in range(steps)]  # warmup, then decay
    rates[-1] = peak / 1000  # nearly 0 at the end, as linear decay is
    history = [{"step": s, "epoch": s / steps_per_epoch, "train_loss": 0.7 - 0.02 * s, "eval_loss": 0.7 - 0.01 * s,
                "eval_accuracy": 0.5 + 0.02 * s} for s in range(0, steps + 1, 2)]
    return Run(config=FineTuneConfig(learning_rate=peak), label_names=["negative", "positive"], status="finished",
               history=history, learning_rates=rates, train_losses=[0.7 - 0.03 * k for k in range(steps)],
               meta={"steps_per_epoch": steps_per_epoch, "total_steps": steps})


def test_learning_rate_axis_is_logarithmic_only_for_peaks_decades_apart():
    same_peak = plot_runs([fake_run(5e-4), fake_run(5e-4, steps=16)], labels=["a", "b"])
    decades = plot_runs([fake_run(1e-5), fake_run(1e-3)], labels=["a", "b"])
    assert same_peak.axes[2].get_yscale() == "linear"  # warmup from 0 alone does not make a sweep over decades
    assert decades.axes[2].get_yscale() == "log"


def test_the_three_panels_share_one_time_axis():
    fig = plot_run(fake_run(5e-4))
    loss, accuracy, rate = fig.axes[:3]
    assert loss.get_xlim() == accuracy.get_xlim() == rate.get_xlim()
    assert loss.get_xlim()[0] <= 0  # the step-0 point and the first step's rate start together


def test_step_losses_get_one_panel_per_run_named_with_its_steps():
    runs = [fake_run(5e-4, steps=64, steps_per_epoch=32), fake_run(5e-4, steps=4, steps_per_epoch=2)]
    runs[1].train_losses[1] = math.inf  # a blown-up step does not break the picture
    fig = plot_step_losses(runs, labels=["batch 4", "batch 64"], title="every step")
    assert [ax.get_title() for ax in fig.axes] == ["batch 4: 64 steps", "batch 64: 4 steps"]
    assert [len(ax.lines[0].get_xdata()) for ax in fig.axes] == [64, 4]
    assert fig.axes[0].get_ylim()[1] <= 3.0


def test_chance_is_drawn_once_or_once_per_task():
    same = plot_runs([fake_run(5e-4), fake_run(1e-4)], labels=["a", "b"])
    topic, sentiment = fake_run(5e-4), fake_run(5e-4)
    topic.meta["chance_accuracy"] = 0.2
    mixed = plot_runs([topic, sentiment], labels=["topic", "sentiment"])
    dotted = lambda fig: sorted(line.get_ydata()[0] for line in fig.axes[1].lines if line.get_linestyle() == ":")  # noqa: E731
    assert dotted(same) == [0.5] and dotted(mixed) == [0.2, 0.5]


def test_overlapping_schedules_stay_distinguishable():
    fig = plot_schedules({"constant": [1.0] * 4, "constant_with_warmup": [0.0, 1.0, 1.0, 1.0]})
    styles = [(line.get_color(), line.get_linestyle()) for line in fig.axes[0].lines]
    assert len(set(styles)) == 2 and len({style for _, style in styles}) == 2
    apart = plot_schedules({"constant": [1.0] * 4, "constant_with_warmup": [0.0, 1.0, 1.0, 1.0]}, side_by_side=True)
    assert [ax.get_title() for ax in apart.axes] == ["constant", "constant_with_warmup"]
    assert [len(ax.lines) for ax in apart.axes] == [1, 1] and apart.axes[0].get_ylim() == apart.axes[1].get_ylim()


def test_a_run_that_ended_early_says_so_and_keeps_its_planned_length():
    """A diverged run stops after a few points and its losses leave the capped axis: without a word, the picture
    shows a line that runs off the top and stops. The loss panel says both, and the time axis keeps the plan."""
    from lmtune_widgets.plotting import loss_note, plot_bands

    finished, blown = fake_run(5e-4), fake_run(5e-2, steps=2, steps_per_epoch=8)
    blown.status = "diverged"
    blown.history[-1].update(train_loss=9.5, eval_loss=7.25)
    blown.config = FineTuneConfig(learning_rate=5e-2, num_train_epochs=2)
    assert loss_note([finished]) == ""
    note = loss_note([blown])
    assert "losses up to 9.5" in note and "diverged" in note and "epoch 0.25 of 2" in note
    assert "1 of 2 runs diverged" in loss_note([finished, blown])
    fig = plot_run(blown)
    assert any(note == text.get_text() for text in fig.axes[0].texts)
    assert fig.axes[0].get_xlim()[1] >= 2  # the two planned epochs, not the quarter it lasted
    assert not plot_run(finished).axes[0].texts
    assert plot_bands([[blown]], ["diverge"]).axes[0].texts[0].get_text() == note


def test_the_curves_never_write_matplotlibs_global_settings_and_ignore_them(monkeypatch):
    """The three panels are drawn by the panel from its own thread, so `draw_run` and `draw_bands` may not even
    borrow the global settings for a moment (a style context would: other threads would draw in it). Under another
    style they still draw in matplotlib's default look, given to each artist."""
    import matplotlib

    from lmtune_widgets.plotting import curves_figure, draw_bands, draw_run

    writes = []
    real = matplotlib.RcParams.__setitem__
    monkeypatch.setattr(matplotlib.RcParams, "__setitem__", lambda self, key, value: writes.append(key)
                        or real(self, key, value))
    runs = [fake_run(5e-4), fake_run(1e-3)]
    with matplotlib.rc_context({"lines.linewidth": 7.0, "axes.facecolor": "black", "font.size": 20}):
        writes.clear()
        fig, panels = curves_figure()
        draw_bands(panels, [runs], ["two seeds"], title="bands", live=fake_run(2e-3))
        draw_run(panels, runs[0], title="one run")
        fig.canvas.print_png(io.BytesIO())
        assert writes == []
    assert panels.loss.get_facecolor() == matplotlib.colors.to_rgba("white")
    assert {line.get_linewidth() for line in panels.rate.lines} == {1.5}  # the default, not the context's 7
    assert panels.loss.title.get_fontsize() == 12.0 and fig.get_suptitle() == "one run"


def test_a_recorded_grid_draws_each_line_in_its_settings_colour_and_stars_its_best():
    from lmtune_widgets import FineTuneConfig, atlas
    from lmtune_widgets.plotting import colours_for, plot_grid

    base = FineTuneConfig(**atlas.FREEZING)
    grid = atlas.recorded_grid("freeze_layers", [0, 4], "learning_rate", [1e-4, 2e-3, 7e-4], base=base)
    assert grid.missing == [(0, 7e-4), (4, 7e-4)] and set(grid.cells[0]) == {1e-4, 2e-3}
    fig = plot_grid(grid, names={0: "everything trains"})
    ax = fig.axes[0]
    labelled = {line.get_label(): line.get_color() for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert labelled == dict(zip(["everything trains", "freeze_layers 4"],
                                colours_for(base.replace(freeze_layers=n) for n in (0, 4))))
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    best = grid.best()
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in stars] == [(best[n], grid.mean(n, best[n])) for n in (0, 4)]


def _legend_colours(ax) -> dict[str, str]:
    from matplotlib.colors import to_hex

    return {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_a_setting_has_one_colour_in_every_kind_of_picture_and_two_settings_never_share_one(monkeypatch):
    """Lesson 02 drew batch 4 red in its bands and blue in its step losses, lesson 09 its preset blue alone in a band
    and green in every grid: pictures that picked colours by position. Overlaid runs, bands, step losses, weight
    norms and planned schedules all colour a setting by `colours_for`, so it keeps one colour, the defaults the
    first, whatever the order or kind of picture."""
    from lmtune_widgets import plotting
    from lmtune_widgets.plotting import COLOURS, plot_bands, plot_weight_norms

    monkeypatch.setattr(plotting, "_COLOUR_OF", {})
    monkeypatch.setattr(plotting, "_LINE_OF", {}, raising=False)
    small, defaults, big = fake_run(1e-4), fake_run(5e-4), fake_run(2e-3)  # 5e-4: the defaults
    for run in (small, defaults, big):
        run.history = [{**row, "weight_norm": 10 + row["step"]} for row in run.history]
    overlaid = _legend_colours(plot_runs([small, defaults, big], labels=["small", "defaults", "big"]).axes[1])
    assert overlaid["defaults"] == COLOURS[0] and len(set(overlaid.values())) == 3
    bands = _legend_colours(plot_bands([[big], [small]], ["big", "small"]).axes[1])
    steps = plot_step_losses([defaults, big, small], labels=["defaults", "big", "small"])
    norms = _legend_colours(plot_weight_norms([big, defaults], ["big", "defaults"]).axes[0])
    schedules = _legend_colours(plot_schedules({"small": [1.0], "defaults": [1.0]},
                                               configs=[small.config, defaults.config]).axes[0])
    assert bands == {"big (1 seed)": overlaid["big"], "small (1 seed)": overlaid["small"]}
    assert [ax.lines[0].get_color() for ax in steps.axes] == [overlaid[k] for k in ("defaults", "big", "small")]
    assert norms == {k: overlaid[k] for k in ("big", "defaults")}
    assert schedules == {k: overlaid[k] for k in ("small", "defaults")}


def test_a_grid_line_and_one_point_of_it_elsewhere_share_a_colour_and_so_do_two_spellings_of_one_setting(monkeypatch):
    """Lesson 07 drew its mean-of-the-tokens head as a grid line, then one rate of it (2e-3) as a band in another
    colour; lesson 06's "neither" cell (constant_with_warmup, no warmup) is the constant schedule, which ignores
    warmup. A grid line's colour goes to its settings at any value of the grid's x field, and equal runs spelt
    differently are one setting."""
    from lmtune_widgets import FineTuneConfig, atlas, planned_learning_rates, plotting
    from lmtune_widgets.plotting import colours_for, plot_bands, plot_grid

    monkeypatch.setattr(plotting, "_COLOUR_OF", {})
    monkeypatch.setattr(plotting, "_LINE_OF", {}, raising=False)
    base = FineTuneConfig(**atlas.FREEZING)
    grid = atlas.recorded_grid("freeze_layers", [0, 4], "learning_rate", [1e-4, 2e-3], base=base)
    lines = _legend_colours(plot_grid(grid, names={0: "nothing frozen", 4: "4 frozen"}).axes[0])
    point = grid.cells[4][2e-3]
    assert point[0].config.learning_rate != base.learning_rate  # not the line's own key: one point of the line
    bands = _legend_colours(plot_bands([point, grid.cells[0][1e-4]], ["4 frozen, 2e-3", "nothing frozen, 1e-4"]).axes[1])
    assert list(bands.values()) == [lines["4 frozen"], lines["nothing frozen"]] and len(set(lines.values())) == 2

    constant = FineTuneConfig(lr_scheduler_type="constant", max_train_samples=64)
    neither = constant.replace(lr_scheduler_type="constant_with_warmup", warmup_ratio=0.0)
    assert planned_learning_rates(constant) == planned_learning_rates(neither)  # the same run, spelt twice
    warmed = constant.replace(lr_scheduler_type="constant_with_warmup")
    first, again, other = colours_for([constant, warmed]), colours_for([neither]), colours_for([warmed, neither])
    assert again == first[:1] and other == [first[1], first[0]] and first[0] != first[1]
