"""The panel's threads: the training thread only hands results over; widgets, pictures and plans change in one
place under one lock; the learner's matplotlib style is never touched, and never reaches the panel's pictures."""
import io
import threading
import time

import matplotlib
import matplotlib.style
import numpy as np
import pytest
import traitlets

from lmtune_widgets import FineTuneConfig, TuningPanel


def replay(recorded, seconds_per_point: float = 0.25):
    """A stand-in for `training.fine_tune` that plays a recorded run back through the callbacks on the training
    thread, as a real run calls them (history and rates appended as it goes), in about two seconds of little CPU."""
    from lmtune_widgets.runs import Run

    def fine_tune(config, callbacks=(), stop_event=None):
        run = Run(config=config, label_names=list(recorded.label_names), meta=dict(recorded.meta))
        points = {point["step"]: point for point in recorded.history}
        for callback in callbacks:
            callback.on_train_begin(run)
        run.history.append(dict(points[0]))
        for callback in callbacks:
            callback.on_evaluate(run, run.history[-1])
        run.status = "finished"
        for step, (rate, loss) in enumerate(zip(recorded.learning_rates, recorded.train_losses), 1):
            run.learning_rates.append(rate)
            run.train_losses.append(loss)
            for callback in callbacks:
                callback.on_step_end(run, step, loss)
            if step in points:
                time.sleep(seconds_per_point)
                run.history.append(dict(points[step]))
                for callback in callbacks:
                    callback.on_evaluate(run, run.history[-1])
            if stop_event is not None and stop_event.is_set():
                run.status = "stopped"
                break
        run.kept = dict(recorded.kept)
        for callback in callbacks:
            callback.on_train_end(run)
        return run

    return fine_tune


@pytest.fixture
def recorded_defaults():
    from lmtune_widgets import atlas

    runs = atlas.load().runs(FineTuneConfig())
    assert len(runs) >= 3, "the defaults are not in the bundled atlas"
    return runs


@pytest.fixture
def ggplot():
    """The learner's own global style, as a notebook that plotted with Optuna or `style.use` would leave it."""
    saved = dict(matplotlib.rcParams)
    matplotlib.style.use("ggplot")
    yield dict(matplotlib.rcParams)
    matplotlib.rcParams.update(saved)


def _pixels(png: bytes):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_slider_changes_during_a_run_leave_the_style_alone_and_keep_the_panel_consistent(ggplot, monkeypatch,
                                                                                           recorded_defaults):
    """A run (the defaults, on their recorded band) while the main thread moves sliders as fast as a learner can."""
    from lmtune_widgets import models, panel_plan, training

    planners, changers = [], set()
    real_plan = models.plan_parameters

    def watched_plan(*args, **kwargs):
        planners.append((threading.current_thread().name, panel_plan.PLANNING_LOCK.locked()))
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(models, "plan_parameters", watched_plan)
    monkeypatch.setattr(training, "fine_tune", replay(recorded_defaults[0]))
    panel = TuningPanel()
    assert len(panel.recorded) == len(recorded_defaults)
    shown = [panel.progress_bar, panel.progress_label, panel.curves_image, panel.verdict_html, panel.log_html,
             panel.history_html, panel.plan_html, panel.schedule_image, panel.check_html, panel.share_text,
             panel.recorded_html, panel.run_button, panel.stop_button, panel.compare_select]
    for widget in shown:
        widget.observe(lambda change: changers.add(threading.current_thread().name), names=traitlets.All)

    drifted, sampling = [], True

    def sample():  # any moment at which matplotlib's global settings are not the learner's
        while sampling:
            if dict(matplotlib.rcParams) != ggplot:
                drifted.append(time.perf_counter())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert panel.run()
        pictures, moves = {bytes(panel.curves_image.value)}, 0
        deadline = time.time() + 120
        while panel.controller.training.alive and time.time() < deadline:
            for rate, frozen in ((3e-4, 4), (1e-3, 6), (5e-4, 5)):  # hammer: lr, schedule and planning each time
                panel.controls["learning_rate"].value = rate
                panel.controls["freeze_layers"].value = frozen
                moves += 1
            pictures.add(bytes(panel.curves_image.value))
        panel.wait(120)
    finally:
        sampling = False
        sampler.join()
    assert moves >= 6 and len(pictures) >= 3, (moves, len(pictures))  # the curves grew while the sliders moved
    assert not drifted, f"matplotlib's global settings changed {len(drifted)} times during the run"
    assert dict(matplotlib.rcParams) == ggplot  # the learner's style is still theirs
    assert "lmtune-run" not in changers, "the training thread changed a widget"
    assert planners and all(name != "lmtune-run" and locked for name, locked in planners)
    assert panel.errors == [] and panel.log_html.value == ""
    assert len(panel.runs) == 1 and panel.runs[0].status == "finished" and not panel.running
    assert "Against the recorded runs:" in panel.verdict_html.value  # drawn and judged on the band
    # what is shown is the plan of the controls as they are now, not of a moment during the run
    assert panel.plan.config == panel.config
    expected = panel.state.plan(panel.config.changes(panel.state.base))
    assert expected.config == panel.config and f"{expected.trainable / 1e6:.2f} M of" in panel.plan_html.value
    assert panel.run_button.disabled is False and panel.stop_button.disabled is True


def test_a_picture_that_fails_to_draw_is_shown_and_training_goes_on(monkeypatch, recorded_defaults):
    """Drawing happens outside the training thread: a broken picture is reported, and the run still finishes."""
    from lmtune_widgets import training
    from lmtune_widgets.panel_figures import CurvesFigure

    def broken(*args, **kwargs):
        raise RuntimeError("the plot broke")

    monkeypatch.setattr(training, "fine_tune", replay(recorded_defaults[0], seconds_per_point=0.05))
    panel = TuningPanel()
    monkeypatch.setattr(CurvesFigure, "show_bands", broken)
    panel.run()
    panel.wait(60)
    assert "RuntimeError: the plot broke" in panel.log_html.value and panel.errors
    assert panel.runs and panel.runs[0].status == "finished" and "<td>1</td>" in panel.history_html.value
    assert not panel.running and panel.run_button.disabled is False


def test_the_panels_curves_are_drawn_by_plotting_into_the_same_axes_each_time(ggplot, monkeypatch):
    """CurvesFigure keeps one figure and draws each picture into it with plotting's own functions (the ones
    `plot_run` and `plot_bands` use), so the panel and the lessons cannot draw curves two ways. What is left to
    check is the in-place part: each picture takes away everything of the last one, so the panel shows exactly
    what a new figure would (same pixels), whatever came before: a log-scale rate, a diverged run's note, nothing."""
    from lmtune_widgets import atlas, panel_figures, plotting
    from lmtune_widgets.panel_figures import CurvesFigure, ScheduleFigure
    from lmtune_widgets.plotting import plot_bands, plot_run, plot_schedules, to_png
    from lmtune_widgets.runs import Run

    calls = []
    for name in ("draw_run", "draw_bands", "draw_empty"):
        real = getattr(plotting, name)
        assert getattr(panel_figures, name) is real  # the panel imports plotting's function, not a copy
        monkeypatch.setattr(panel_figures, name, lambda *a, _real=real, _name=name, **k: calls.append(_name)
                            or _real(*a, **k))
    book = atlas.load()
    runs = book.runs(FineTuneConfig())
    assert len(runs) >= 3, "the defaults are not in the bundled atlas"
    run, low = runs[0], book.runs(FineTuneConfig(learning_rate=1e-5))[0]
    diverged = book.runs(FineTuneConfig.from_preset("diverge"))
    assert diverged and all(r.status == "diverged" for r in diverged)
    curves = CurvesFigure()
    cases = [  # each drawn into the same figure, one after another
        (lambda: curves.show_bands(runs, live=low, title="t"),  # rates decades apart: a log scale
         lambda: plot_bands([runs], ["recorded"], live=low, title="t")),
        (lambda: curves.show_run(diverged[0]), lambda: plot_run(diverged[0])),  # the note, the planned length
        (lambda: curves.show_empty("Press Run"), lambda: plot_run(Run(run.config, [], status="running"),
                                                                 title="Press Run")),
        (lambda: curves.show_run(run, title="epoch 1.00"), lambda: plot_run(run, title="epoch 1.00")),
    ]
    for show, plot in cases:
        show()
        assert np.array_equal(_pixels(curves.png()), _pixels(to_png(plot())))
    assert calls == ["draw_empty", "draw_bands", "draw_run", "draw_empty", "draw_run"]
    schedule = ScheduleFigure()  # one line, redrawn with set_data; its look is plot_schedules' for one schedule
    schedule.show(run.learning_rates, "Planned learning rate")
    reference = plot_schedules({"linear": run.learning_rates}, title="Planned learning rate", width=4.4, height=2.4)
    reference.subplots_adjust(left=0.21)  # the panel's changes: room for the axis label, a title that fits
    reference.axes[0].title.set_fontsize(10)
    assert np.array_equal(_pixels(schedule.png()), _pixels(to_png(reference)))
    assert dict(matplotlib.rcParams) == ggplot


def test_the_curves_keep_growing_while_another_cell_holds_the_kernel(monkeypatch, recorded_defaults):
    """In a notebook the panel lives in the kernel's event loop, and a cell that runs holds that loop. The run's
    pictures must still arrive meanwhile: the panel shows them from its own pump thread, not the loop."""
    import asyncio

    from lmtune_widgets import training

    monkeypatch.setattr(training, "fine_tune", replay(recorded_defaults[0], seconds_per_point=0.1))
    seen = []

    async def notebook():
        panel = TuningPanel()  # made inside a running event loop, as in a kernel
        empty = panel.curves_image.value
        assert panel.run()
        deadline = time.time() + 20
        while panel.running and time.time() < deadline:  # "another cell": the loop is blocked all along
            seen.append((panel.progress_bar.value, panel.curves_image.value != empty))
            time.sleep(0.05)
        return panel

    panel = asyncio.run(notebook())
    assert not panel.running and panel.runs and panel.runs[0].status == "finished"
    assert len({progress for progress, _ in seen}) >= 5  # the progress moved while the loop was held
    assert any(changed for _, changed in seen)


def test_run_trains_the_config_of_the_plan_it_shows(monkeypatch, recorded_defaults):
    """Run plans once and hands that plan's config to training: the config is not built from the controls again."""
    from lmtune_widgets import panel_plan, training

    trained, plans = [], []
    play = replay(recorded_defaults[0], seconds_per_point=0.01)
    monkeypatch.setattr(training, "fine_tune",
                        lambda config, **kwargs: trained.append(config) or play(config, **kwargs))
    panel = TuningPanel()
    panel.controls["dropout"].value = 0.2
    real_plan = panel_plan.PanelState.plan
    monkeypatch.setattr(panel_plan.PanelState, "plan", lambda self, values: plans.append(real_plan(self, values))
                        or plans[-1])
    assert panel.run()
    panel.wait(60)
    assert len(plans) >= 1 and trained == [plans[0].config] and trained[0] is plans[0].config
    assert trained[0].dropout == 0.2 and panel.runs[0].config is trained[0]
