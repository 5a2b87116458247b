"""The panel's runs go into the class study: filed on a thread of their own, never holding up training or the widgets.

Fast: SQLite files in tmp_path stand in for the class's database here (the same code path as PostgreSQL, which
tests/test_search.py tries for real), and most runs are recorded runs played back through the callbacks.
"""
import socket
import threading
import time

import optuna
import pytest
from test_panel_threads import replay

from lmtune_widgets import FineTuneConfig, TuningPanel, search

SMALL = dict(max_train_samples=32, max_eval_samples=32, num_train_epochs=1, freeze_layers=5, evals_per_epoch=2)


def trials(url: str, name: str = "class"):
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


@pytest.fixture
def recorded(monkeypatch):
    """Training replaced by a recorded run of the defaults, played back in about a second."""
    from lmtune_widgets import atlas, training

    runs = atlas.load().runs(FineTuneConfig())
    assert runs, "the defaults are not in the bundled atlas"
    monkeypatch.setattr(training, "fine_tune", replay(runs[0], seconds_per_point=0.05))
    return runs[0]


def test_a_real_panel_run_is_filed_with_the_learners_name(tmp_path):
    url = f"sqlite:///{tmp_path / 'class.db'}"
    panel = TuningPanel(storage=url, study_name="class", learner="ada", **SMALL)
    assert "study 'class'" in panel.study_html.value and "as ada" in panel.study_html.value  # said before any run
    panel.controls["learning_rate"].value = 3e-4
    panel.run_button.click()
    panel.wait(120)
    run = panel.runs[0]
    (trial,) = trials(url)
    assert trial.state.name == "COMPLETE" and trial.user_attrs["learner"] == "ada"
    assert trial.user_attrs["source"] == "panel" and trial.user_attrs["run_status"] == "finished"
    assert trial.value == pytest.approx(run.kept["validation_loss"])  # what a search's trial would score
    assert trial.params["learning_rate"] == pytest.approx(3e-4)
    assert trial.user_attrs["settings"] == run.config.to_share_string()
    assert "Filed in study 'class' as ada: run 1 as trial 0." in panel.study_html.value
    assert panel.errors == [] and panel.log_html.value == ""


def test_a_stopped_run_goes_in_as_pruned_and_a_failed_one_stays_out(tmp_path, recorded, monkeypatch):
    from lmtune_widgets import training
    from lmtune_widgets.runs import Run

    url = f"sqlite:///{tmp_path / 'class.db'}"
    panel = TuningPanel(storage=url, study_name="class", learner="bob")
    panel.run()
    panel.stop()  # the replay ends after its first step: one evaluation point, status "stopped"
    panel.wait(60)
    assert panel.runs[0].status == "stopped"
    (trial,) = trials(url)
    assert trial.state.name == "PRUNED" and trial.user_attrs["learner"] == "bob" and trial.intermediate_values

    def failing(config, callbacks=(), stop_event=None):  # as fine_tune fails: the error carries the run
        error = RuntimeError("the run broke")
        error.run = Run(config=config, label_names=list(recorded.label_names), status="failed",
                        history=[dict(recorded.history[0])], meta=dict(recorded.meta))
        raise error

    monkeypatch.setattr(training, "fine_tune", failing)
    panel.run()
    panel.wait(60)
    assert panel.runs[1].status == "failed" and "the run broke" in panel.log_html.value
    assert len(trials(url)) == 1  # a failed run is not a result: not filed
    assert "run 1 as trial 0" in panel.study_html.value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_database_is_one_line_and_training_goes_on(tmp_path, recorded):
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{closed_port()}/postgres"  # nobody listens there
    panel = TuningPanel(storage=url, study_name="class", learner="ada")
    assert "secret" not in panel.study_html.value and "postgres:***@" in panel.study_html.value
    for _ in range(2):  # the panel keeps training: a second run after the first could not be filed
        assert panel.run()
        panel.wait(60)
    assert [run.status for run in panel.runs] == ["finished", "finished"]
    assert "FIT" in panel.verdict_html.value and "<td>2</td>" in panel.history_html.value
    line = panel.study_html.value
    assert line.count("<div>") == 1 and "Not filed in study 'class' yet: the study database " in line
    assert "is not answering" in line and "runs 1, 2 will be filed after your next run" in line
    assert "secret" not in line and panel.errors == [] and panel.log_html.value == ""


def test_runs_that_waited_for_the_database_are_filed_once_it_answers(tmp_path, recorded):
    folder = tmp_path / "not yet"  # SQLite cannot open a file in a missing folder: the database is "away"
    url = f"sqlite:///{folder / 'class.db'}"
    panel = TuningPanel(storage=url, study_name="class", learner="ada")
    panel.run()
    panel.wait(60)
    assert "run 1 will be filed after your next run" in panel.study_html.value
    folder.mkdir()  # back
    panel.run()
    panel.wait(60)
    assert "Filed in study 'class' as ada: run 1 as trial 0, run 2 as trial 1." in panel.study_html.value
    assert [t.user_attrs["learner"] for t in trials(url)] == ["ada", "ada"]  # each once, in order


def test_filing_happens_off_the_widget_path(tmp_path, recorded, monkeypatch):
    """A database that takes its time holds up neither the end of the run nor the controls: the filing runs on
    its own thread, outside the panel's lock, and only its outcome is shown, by the panel, under the lock."""
    url = f"sqlite:///{tmp_path / 'class.db'}"
    release, calls = threading.Event(), []
    real = search.add_run_to_study

    def slow(run, *args, **kwargs):
        calls.append((threading.current_thread().name, panel.controller.lock._is_owned()))
        assert release.wait(30), "never released"
        return real(run, *args, **kwargs)

    monkeypatch.setattr(search, "add_run_to_study", slow)
    panel = TuningPanel(storage=url, study_name="class", learner="ada")
    panel.run()
    panel.controller.training.join(60)
    deadline = time.time() + 30
    while panel.running and time.time() < deadline:  # the pump shows the end while the filing still waits
        time.sleep(0.05)
    assert not panel.running and "FIT" in panel.verdict_html.value and calls
    before = panel.plan_html.value
    panel.controls["freeze_layers"].value = 0  # the controls answer while the database is slow
    assert panel.plan_html.value != before
    assert "Filed" not in panel.study_html.value
    release.set()
    panel.wait(30)
    assert "run 1 as trial 0" in panel.study_html.value
    assert calls == [("lmtune-study", False)]  # its own thread, not holding the panel's lock
