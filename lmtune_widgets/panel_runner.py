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
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

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
