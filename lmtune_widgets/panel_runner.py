"""The panel's training thread: it trains and hands results over, nothing else.

    runner = RunController(notify=lambda: ...)   # notify: called (on the training thread) after each hand-over
    runner.start(config)
    for event in runner.take():                  # on the notebook thread: what was handed over since last time
        ...                                      # ("begin", run) ("step", step, total, loss, seconds) ("evaluate", run)
                                                 # ("end", run or None, error or None)
    runner.stop(); runner.join()

The thread never touches a widget, a figure or the panel's state: at each event it puts a copy of what changed on a
queue (a run's curves are copied, since training goes on appending to them) and calls `notify`. Whoever owns the
widgets takes the events and shows them, all in one place (`TuningPanel`).

`StudyFiler` does the same for the class study: it files ended runs into an Optuna study on a thread of its own
(a database across a network can take seconds, or not answer at all), and hands back one line per outcome:

    filer = StudyFiler(storage, "workshop", "ada", notify=lambda: ...)
    filer.file(number, run)                      # returns at once
    for event in filer.take():                   # ("filed", [(number, trial), ...]) ("waiting", [number, ...], why)
        ...                                      # ("not filed", number, why)
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable

from . import training
from .config import FineTuneConfig
from .runs import Run
from .training import Callback


def snapshot(run: Run) -> Run:
    """A copy of a run's curves as they are now (no weights): safe to read while training goes on."""
    return dataclasses.replace(run, history=[dict(point) for point in run.history],
                               learning_rates=list(run.learning_rates), train_losses=list(run.train_losses),
                               meta=dict(run.meta), kept=dict(run.kept), model=None, tokenizer=None)



def _drain(events: queue.Queue) -> list:
    """Everything on the queue now, oldest first, without blocking."""
    taken = []
    while True:
        try:
            taken.append(events.get_nowait())
        except queue.Empty:
            return taken

class RunController:
    """Owns the training thread, its stop flag and the queue it hands results over on: see the module docstring."""

    def __init__(self, notify: Callable[[], None] = lambda: None):
        self.notify = notify
        self.thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.live_run: Run | None = None  # the run being trained (set by the thread; read, never changed, elsewhere)
        self._events: queue.Queue = queue.Queue()

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
        return _drain(self._events)

    # ------------------------------------------------------------------ on the training thread
    def _hand_over(self, *event) -> None:
        self._events.put(event)
        try:
            self.notify()
        except RuntimeError:  # the notebook's event loop is closed: the events wait for the next take()
            pass

    def _train(self, config: FineTuneConfig) -> None:
        run, failure = None, None
        try:
            run = training.fine_tune(config, callbacks=[Handover(self)], stop_event=self.stop_event)
        except Exception as error:  # handed over to be shown, never lost
            run, failure = getattr(error, "run", None), error
        finally:
            self._hand_over("end", run, failure)


class Handover(Callback):
    """The callback the training thread runs: copies what happened onto the controller's queue."""

    def __init__(self, controller: RunController):
        self.controller = controller
        self.t0 = time.perf_counter()

    def on_train_begin(self, run):
        self.controller.live_run = run
        self.t0 = time.perf_counter()
        self.controller._hand_over("begin", snapshot(run))

    def on_step_end(self, run, step, loss):
        self.controller._hand_over("step", step, run.meta["total_steps"], loss, time.perf_counter() - self.t0)

    def on_evaluate(self, run, point):
        self.controller._hand_over("evaluate", snapshot(run))


class StudyFiler:
    """Files the panel's ended runs into an Optuna study (`search.add_run_to_study`) on its own thread.

    Training and the widgets never wait for the database. A run that cannot be filed because the database does not
    answer waits, in order, and is filed before the next one (nothing is lost while the network is down); any other
    refusal (a run that ended before its first evaluation, a broken URL) is handed back once and not retried.
    """

    def __init__(self, storage: str, study_name: str, learner: str, notify: Callable[[], None] = lambda: None):
        self.storage, self.study_name, self.learner, self.notify = storage, study_name, learner, notify
        self._todo: queue.Queue = queue.Queue()
        self._events: queue.Queue = queue.Queue()
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
        return _drain(self._events)

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
                self._hand_over("waiting", [n for n, _ in self._waiting], why)
                return
            except Exception as error:  # shown once; retrying would not help
                self._waiting.pop(0)
                filed = self._hand_over_filed(filed)
                self._hand_over("not filed", number, f"{type(error).__name__}: {error}".splitlines()[0])
            else:
                self._waiting.pop(0)
                filed.append((number, trial.number))
        self._hand_over_filed(filed)

    def _hand_over_filed(self, filed: list) -> list:
        if filed:
            self._hand_over("filed", filed)
        return []

    def _hand_over(self, *event) -> None:
        self._events.put(event)
        try:
            self.notify()
        except RuntimeError:  # the notebook's event loop is closed: the events wait for the next take()
            pass
