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

SMALL = dict(max_train_samples=32, max_eval_samples=32, num_train_epochs=1, freeze_layers=5, evals_per_epoch=4,
             per_device_train_batch_size=8)  # 4 steps, an evaluation after each: a few seconds


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


def test_slider_changes_during_a_run_leave_the_style_alone_and_keep_the_panel_consistent(ggplot, monkeypatch):
    from lmtune_widgets import models, panel_plan

    planners, changers = [], set()
    real_plan = models.plan_parameters

    def watched_plan(*args, **kwargs):
        planners.append((threading.current_thread().name, panel_plan.PLANNING_LOCK.locked()))
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(models, "plan_parameters", watched_plan)
    panel = TuningPanel(**SMALL)
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
        while panel._thread.is_alive() and time.time() < deadline:
            for rate, frozen in ((3e-4, 4), (1e-3, 6), (5e-4, 5)):  # hammer: lr, schedule and planning each time
                panel.controls["learning_rate"].value = rate
                panel.controls["freeze_layers"].value = frozen
                moves += 1
                time.sleep(0.02)  # a quick learner, not a busy loop that starves the run of the CPU
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
    # what is shown is the plan of the controls as they are now, not of a moment during the run
    expected = panel.state.plan(panel._values())
    assert f"{expected.trainable / 1e6:.2f} M of" in panel.plan_html.value
    assert panel.run_button.disabled is False and panel.stop_button.disabled is True


def test_the_pictures_ignore_the_learners_style_and_match_plotting(ggplot):
    """Drawn in place while ggplot is the global style, the pictures are pixel for pixel what `plotting` draws in
    matplotlib's default style: the same content as before the in-place redraw, and no style leaks in."""
    from lmtune_widgets import atlas
    from lmtune_widgets.panel_figures import CurvesFigure, ScheduleFigure
    from lmtune_widgets.plotting import plot_bands, plot_run, plot_schedules, to_png
    from lmtune_widgets.runs import Run

    runs = atlas.load().runs(FineTuneConfig())
    assert len(runs) >= 3, "the defaults are not in the bundled atlas"
    run = runs[0]
    curves = CurvesFigure()
    cases = [  # each drawn into the same figure, one after another
        (lambda: curves.show_bands(runs, title="Recorded runs of these settings"),
         lambda: plot_bands([runs], ["recorded"], title="Recorded runs of these settings")),
        (lambda: curves.show_run(run, title="epoch 1.00: validation accuracy 90.0%"),
         lambda: plot_run(run, title="epoch 1.00: validation accuracy 90.0%")),
        (lambda: curves.show_bands(runs, live=run, title="t"), lambda: plot_bands([runs], ["recorded"], live=run,
                                                                                  title="t")),
        (lambda: curves.show_empty("Press Run"), lambda: plot_run(Run(run.config, [], status="running"),
                                                                 title="Press Run")),
        (lambda: curves.show_run(run), lambda: plot_run(run)),
    ]
    for show, plot in cases:
        show()
        assert np.array_equal(_pixels(curves.png()), _pixels(to_png(plot())))
    schedule = ScheduleFigure()
    schedule.show(run.learning_rates, "Planned learning rate")
    assert np.array_equal(_pixels(schedule.png()), _pixels(to_png(plot_schedules(
        {"linear": run.learning_rates}, title="Planned learning rate", width=4.4, height=2.4))))
    assert dict(matplotlib.rcParams) == ggplot
