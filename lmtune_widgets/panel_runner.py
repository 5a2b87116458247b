"""The panel's controller: Run and Stop, the threads behind them, and handing what they report to the view.

    controller = PanelController(view, state)    # view: a PanelView (TuningPanel); state: a panel_plan.PanelState
    controller.start(plan.config)                # under controller.lock: the config of the plan the view shows
    controller.stop(); controller.wait()

Three threads, one job each; none touches a widget, a figure or the panel's state:
- `TrainingThread` trains. At each event it puts a copy of what changed in its `Outbox` (a run's curves are copied,
  since training goes on appending to them), which wakes the controller:

    training = TrainingThread(notify=lambda: ...)  # notify: called (on the training thread) after each hand-over
    training.start(config)
    for event in training.take():                  # what was handed over since last time, never blocking
        ...                                        # ("begin", run) ("step", step, total, loss, seconds)
                                                   # ("evaluate", run) ("end", run or None, error or None)

- `StudyFiler` files ended runs into an Optuna study (a database across a network can take seconds, or not answer
  at all), and hands back one line per outcome:

    filer = StudyFiler(storage, "workshop", "ada", notify=lambda: ...)
    filer.file(number, run)                        # returns at once
    for event in filer.take():                     # ("filed", [(number, trial), ...]) ("waiting", [number, ...], why)
        ...                                        # ("not filed", number, why)

- `PanelController`'s pump, woken at each hand-over, takes the events and hands them to the view, all under one
  lock (`PanelController.lock`, which the view's own methods take too). A thread of its own, not the kernel's event
  loop: the curves keep growing while the learner runs another cell. `wait()` shows the end of a run itself.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from . import training
from .config import FineTuneConfig
from .panel_plan import PanelState
from .runs import Run
from .training import Callback


def snapshot(run: Run) -> Run:
    """A copy of a run's curves as they are now (no weights): safe to read while training goes on."""
    return dataclasses.replace(run, history=[dict(point) for point in run.history],
                               learning_rates=list(run.learning_rates), train_losses=list(run.train_losses),
                               meta=dict(run.meta), kept=dict(run.kept), model=None, tokenizer=None)


class Outbox:
    """Events one thread hands over and another takes: a queue, and a call after each event that wakes the taker.
    The thread that hands over never waits for the taker, and never touches what the taker shows."""

    def __init__(self, notify: Callable[[], None]):
        self.notify = notify
        self._events: queue.Queue = queue.Queue()

    def put(self, *event) -> None:
        self._events.put(event)
        try:
            self.notify()
        except RuntimeError:  # the notebook's event loop is closed: the events wait for the next take()
            pass

    def take(self) -> list[tuple]:
        """Everything handed over and not yet taken, oldest first, without blocking."""
        taken = []
        while True:
            try:
                taken.append(self._events.get_nowait())
            except queue.Empty:
                return taken

class TrainingThread:
    """Owns the training thread, its stop flag and the outbox it hands results over in: see the module docstring."""

    def __init__(self, notify: Callable[[], None] = lambda: None):
        self.outbox = Outbox(notify)
        self.thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.live_run: Run | None = None  # the run being trained (set by the thread; read, never changed, elsewhere)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, config: FineTuneConfig) -> None:
        self.stop_event = threading.Event()
        self.live_run = None
        self.thread = threading.Thread(target=self._train, args=(config,), daemon=True, name="lmtune-run")
        self.thread.start()

    def stop(self) -> None:
        """Ask the run to end after its current step (it keeps its history)."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def take(self) -> list[tuple]:
        """Every event handed over and not yet taken, oldest first (never blocks)."""
        return self.outbox.take()

    # ------------------------------------------------------------------ on the training thread
    def _train(self, config: FineTuneConfig) -> None:
        run, failure = None, None
        try:
            run = training.fine_tune(config, callbacks=[Handover(self)], stop_event=self.stop_event)
        except Exception as error:  # handed over to be shown, never lost
            run, failure = getattr(error, "run", None), error
        finally:
            self.outbox.put("end", run, failure)


class Handover(Callback):
    """The callback the training thread runs: copies what happened into the thread's outbox."""

    def __init__(self, training: TrainingThread):
        self.training = training
        self.t0 = time.perf_counter()

    def on_train_begin(self, run):
        self.training.live_run = run
        self.t0 = time.perf_counter()
        self.training.outbox.put("begin", snapshot(run))

    def on_step_end(self, run, step, loss):
        self.training.outbox.put("step", step, run.meta["total_steps"], loss, time.perf_counter() - self.t0)

    def on_evaluate(self, run, point):
        self.training.outbox.put("evaluate", snapshot(run))


class StudyFiler:
    """Files the panel's ended runs into an Optuna study (`search.add_run_to_study`) on its own thread.

    Training and the widgets never wait for the database. A run that cannot be filed because the database does not
    answer waits, in order, and is filed before the next one (nothing is lost while the network is down); any other
    refusal (a run that ended before its first evaluation, a broken URL) is handed back once and not retried.
    """

    def __init__(self, storage: str, study_name: str, learner: str, notify: Callable[[], None] = lambda: None):
        self.storage, self.study_name, self.learner = storage, study_name, learner
        self.outbox = Outbox(notify)
        self._todo: queue.Queue = queue.Queue()
        self._waiting: list[tuple[int, Run]] = []  # runs the database did not take yet (only the filer thread uses it)
        self._busy = threading.Condition()
        self._pending = 0  # runs handed in whose outcome is not handed back yet
        self.thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._busy:
            return self._pending > 0

    def file(self, number: int, run: Run) -> None:
        """File run `number` (as the panel numbers it); returns at once. Its outcome comes back through `take()`."""
        with self._busy:
            self._pending += 1
            self._todo.put((number, snapshot(run)))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, daemon=True, name="lmtune-study")
                self.thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run handed in has an outcome; False if `timeout` came first."""
        with self._busy:
            return self._busy.wait_for(lambda: self._pending == 0, timeout)

    def take(self) -> list[tuple]:
        """Every outcome handed back and not yet taken, oldest first (never blocks)."""
        return self.outbox.take()

    # ------------------------------------------------------------------ on the filer's thread
    def _work(self) -> None:
        while True:
            try:
                item = self._todo.get(timeout=1.0)
            except queue.Empty:
                with self._busy:
                    if self._todo.empty():  # nothing came in meanwhile: the next file() starts a new thread
                        self.thread = None
                        return
                continue
            self._waiting.append(item)
            self._file_waiting()
            with self._busy:
                self._pending -= 1  # after the outcome is handed back: whoever waits then finds it
                self._busy.notify_all()

    def _file_waiting(self) -> None:
        import optuna

        from . import search

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # as `search` does: the panel says what happened
        filed = []  # (run number, trial number) filed in this go, handed back as one event
        while self._waiting:
            number, run = self._waiting[0]
            try:
                trial = search.add_run_to_study(run, self.storage, self.study_name, self.learner)
            except search.StudyUnavailable as error:  # the database is away: keep the runs, try again next time
                why = str(error).split(". Start the database again")[0]
                self._hand_over_filed(filed)
                self.outbox.put("waiting", [n for n, _ in self._waiting], why)
                return
            except Exception as error:  # shown once; retrying would not help
                self._waiting.pop(0)
                filed = self._hand_over_filed(filed)
                self.outbox.put("not filed", number, f"{type(error).__name__}: {error}".splitlines()[0])
            else:
                self._waiting.pop(0)
                filed.append((number, trial.number))
        self._hand_over_filed(filed)

    def _hand_over_filed(self, filed: list) -> list:
        if filed:
            self.outbox.put("filed", filed)
        return []


def login_name() -> str:
    """Who files runs into the class study when the panel is not told (`learner=`): the search's answer, imported
    only when a study is used (optuna loads with it)."""
    from .search import login_name as search_login_name

    return search_login_name()


class PanelView(Protocol):
    """What the controller hands over to (`TuningPanel`): called under the controller's lock, never on the
    training or filing thread."""

    def show_started(self) -> None: ...
    def show_begin(self, total_steps: int) -> None: ...
    def show_progress(self, step: int, total: int, loss: float, elapsed: float) -> None: ...
    def show_evaluation(self, run: Run) -> None: ...
    def show_ended(self, run: Run) -> None: ...
    def show_running(self, running: bool) -> None: ...
    def show_error(self, error: BaseException, what: str = "The run failed") -> None: ...
    def show_filed(self, event: tuple) -> None: ...


class PanelController:
    """Run and Stop: starts the training thread with a config, ends it on request, and hands what the training and
    filing threads report to the view (see the module docstring). An ended run joins the state's history and, with
    a class study, is filed into it."""

    def __init__(self, view: PanelView, state: PanelState, storage: str | None = None, study_name: str = "lmtune",
                 learner: str | None = None):
        self.view, self.state = view, state
        self.lock = threading.RLock()  # held by every method that changes a widget, a picture or the plan
        self._woken = threading.Event()
        self.training = TrainingThread(notify=self._woken.set)
        self.filer = None if storage is None else StudyFiler(storage, study_name, learner or login_name(),
                                                             notify=self._woken.set)
        self._active = False  # a run was started and its end is not shown yet
        self._pump: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """From `start()` until the run's end is shown."""
        return self._active

    def start(self, config: FineTuneConfig) -> None:
        """Train `config` in the background (the caller holds the lock and has checked that nothing runs)."""
        for old in self.state.runs:
            old.release()  # keep the curves of past runs, not their weights
        self._active = True
        self.view.show_started()
        self.training.start(config)
        if self._pump is None:
            self._pump = threading.Thread(target=self._pump_until_shown, daemon=True, name="lmtune-panel")
            self._pump.start()

    def stop(self) -> None:
        """Ask the run to end after its current step (it keeps its history)."""
        self.training.stop()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run ends and is shown (and, with a class study, until its filing's line is
        shown). Shows it on this thread: a cell that waits keeps the kernel's loop from showing it."""
        self.training.join(timeout)
        if self.training.alive:
            return
        self.show_handed_over()
        if self.filer is not None:
            self.filer.wait(timeout)
            self.show_handed_over()
        pump = self._pump
        if pump is not None:
            pump.join(5)

    def _pump_until_shown(self) -> None:
        """Show what is handed over until the run's end (and the filings it started) are shown."""
        while True:
            self._woken.wait(0.25)
            self._woken.clear()
            self.show_handed_over()
            with self.lock:
                if not self._active and not (self.filer and self.filer.busy):
                    self._pump = None
                    break
        self.show_handed_over()  # an outcome handed back just before the filer fell idle

    def show_handed_over(self) -> None:
        """Hand the view every event handed over since last time (of the steps and evaluations, the newest only),
        and the latest outcome of the filings. A view that fails to show something says so; training goes on."""
        with self.lock:
            filed = self.filer.take() if self.filer is not None else []
            if filed:
                self.view.show_filed(filed[-1])
            events = self.training.take()
            steps = [e for e in events if e[0] == "step"]
            evaluations = [e for e in events if e[0] == "evaluate"]
            ends = [e for e in events if e[0] == "end"]
            try:
                for event in events:
                    if event[0] == "begin":
                        self.view.show_begin(event[1].meta["total_steps"])
                if steps:
                    self.view.show_progress(*steps[-1][1:])
            except Exception as error:
                self.view.show_error(error, "Showing the progress failed")
            if evaluations and not ends:  # the end draws its own picture
                try:
                    self.view.show_evaluation(evaluations[-1][1])
                except Exception as error:
                    self.view.show_error(error, "Drawing the curves failed")
            for _, run, failure in ends:
                if failure is not None:
                    self.view.show_error(failure)
                try:
                    if run is not None:
                        self._end(run)
                except Exception as error:
                    self.view.show_error(error)
                self._active = False
                self.view.show_running(False)

    def _end(self, run: Run) -> None:
        """An ended run joins the history and goes to the class study (on the filer's thread), then is shown."""
        self.state.add_run(run)
        if self.filer is not None and run.status in ("finished", "diverged", "stopped") and run.history:
            self.filer.file(len(self.state.runs), run)  # returns at once
        self.view.show_ended(run)
