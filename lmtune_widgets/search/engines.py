"""Two engines, one budget: `compare_engines(base, n_trials, space)` runs one budget with each engine (Optuna, then
Ray Tune) and measures what each costs: wall time, time to the first result, processes and memory.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import FineTuneConfig
from .objective import default_space, objective_value
from .optuna_search import search
from .ray_search import start_ray


@dataclass
class EngineCost:
    """One engine's search of a budget, and what it cost on this machine (one search, one sampler seed)."""

    engine: str
    best_value: float  # the best kept validation loss among the trials that trained to the end
    finished: int  # trials that trained to the end
    stopped_early: int  # pruned (Optuna's median rule) or stopped (Ray's ASHA) before the end
    failed: int
    wall_s: float  # the whole call, Ray's start and shutdown included
    first_result_s: float  # until the first trial's first evaluation: what the engine costs before any result
    startup_s: float  # starting the engine itself: Ray's local cluster; 0 for Optuna, which runs in this process
    processes: int  # at the busiest moment, this process included
    peak_memory_mb: float  # resident memory summed over those processes (shared libraries counted in each)


def _timeline(path: str):
    """A training callback that notes, in a file every process can append to, when each trial first evaluated and
    how it ended (Ray's trials run in worker processes, Optuna's here). Made here: training imports torch."""
    import json

    from ..training import Callback

    class Timeline(Callback):
        def on_train_begin(self, run):
            self.evaluated = False

        def on_evaluate(self, run, point):
            if not self.evaluated:
                self.evaluated = True
                self.note(kind="evaluate")

        def on_train_end(self, run):
            if run.status in ("finished", "diverged"):
                self.note(kind="end", value=objective_value(run))

        def note(self, **event):
            with open(path, "a") as file:
                file.write(json.dumps({"t": time.time(), **event}) + "\n")

    return Timeline()


@contextlib.contextmanager
def _peak_processes(every: float = 0.2):
    """Sample this process and its children while the block runs; yields a dict that ends up holding the peaks."""
    import psutil

    peak, done = {"processes": 1, "memory_mb": 0.0}, threading.Event()

    def sample():
        me = psutil.Process()
        while not done.is_set():
            rss, count = 0, 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss, count = rss + process.memory_info().rss, count + 1
            peak["processes"], peak["memory_mb"] = max(peak["processes"], count), max(peak["memory_mb"], rss / 2**20)
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True, name="lmtune-sampler")
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def compare_engines(base: FineTuneConfig, n_trials: int, space: Callable[[Any], dict[str, Any]] = default_space,
                    seed: int = 0, num_cpus: int | None = None, folder: str | None = None) -> list[EngineCost]:
    """The same space and budget searched by Optuna (TPE, median pruning, in this process) and by Ray Tune (ASHA,
    on a local Ray of `num_cpus` CPUs), one after the other; returns what each found and cost, Optuna first.

    Both sample with Optuna's TPE from `seed`, so they start from the same first proposals. Both score a trial by
    its kept model's validation loss (`objective_value`), read from the trials themselves. One call is one
    measurement: the numbers move from call to call (machine load, seeds), so compare engines over several.
    """
    import json
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix="lmtune-engines-")
    costs = []
    for engine in ("optuna", "ray"):
        notes = Path(folder) / f"{engine}.jsonl"
        notes.unlink(missing_ok=True)
        started = time.time()
        with _peak_processes() as peak:
            startup = 0.0
            if engine == "ray":
                import ray

                start_ray(num_cpus=num_cpus)
                startup = time.time() - started
            try:
                found = search(base, n_trials=n_trials, space=space, seed=seed, backend=engine,
                               callbacks=[_timeline(str(notes))], num_cpus=num_cpus,
                               storage=str(Path(folder) / "ray") if engine == "ray" else None)
            finally:
                if engine == "ray":
                    ray.shutdown()
        wall = time.time() - started
        events = [json.loads(line) for line in notes.read_text().splitlines()] if notes.exists() else []
        firsts = [e["t"] - started for e in events if e["kind"] == "evaluate"]
        values = [e["value"] for e in events if e["kind"] == "end"]
        if engine == "optuna":
            states = [t.state.name for t in found.trials]
            counts = (states.count("COMPLETE"), states.count("PRUNED"), states.count("FAIL"))
        else:
            states = [t["status"] for t in found.trials]
            counts = (states.count("finished"), states.count("stopped early"), states.count("error"))
        costs.append(EngineCost(engine, min(values) if values else math.nan, *counts, wall_s=wall,
                                first_result_s=min(firsts) if firsts else math.nan, startup_s=startup,
                                processes=peak["processes"], peak_memory_mb=peak["memory_mb"]))
    return costs
