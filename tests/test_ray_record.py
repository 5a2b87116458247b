"""Recording the atlas on Ray: one task per run, a worker killed mid-run retried, nothing lost or written twice, a
second pass records nothing, and the records are those of a local recording, number for number."""
import json
import os
import shutil
import signal
import threading
import time

import psutil
import pytest
import ray  # a missing ray fails here: it is a test dependency (pyproject's [test] extra), never a skip

from lmtune_widgets import FineTuneConfig, atlas

from conftest import SHORT

TINY = FineTuneConfig(**{**SHORT, "max_train_samples": 32, "max_eval_samples": 32})  # 2 steps, evaluated after each
PLANNED = [("tiny", TINY.replace(learning_rate=lr, seed=seed)) for lr, seed in ((1e-3, 42), (1e-3, 1), (1e-5, 42))]
# What legitimately differs between two recordings of the same runs: how long each part took (wall clock: loading
# the model and data, computing or reading the frozen features, training, scoring the kept model; each evaluation
# point's time since the start), and where the frozen features came from (computed, or read from this process's
# memory or the disk cache: that depends on what the process ran before, not on the run). Nothing else: same
# machine, same torch, same thread count, so the same numbers.
ASIDE = {"meta": ("load_s", "cache_s", "train_s", "finish_s", "features_from"), "history": ("elapsed_s",)}


class WorkerKiller(threading.Thread):
    """SIGKILLs the first Ray worker seen running a recording task (a descendant of this process whose title Ray
    set to `ray::record_one`), once it has been at it for `after` seconds: a worker dying mid-run."""

    def __init__(self, after: float = 0.5):
        super().__init__(daemon=True)
        self.after, self.killed, self.stop = after, None, threading.Event()

    def run(self):
        first_seen = {}
        while not self.stop.is_set() and self.killed is None:
            for process in psutil.Process().children(recursive=True):
                try:
                    running = "ray::record_one" in " ".join(process.cmdline())
                except psutil.Error:
                    continue
                if running and time.monotonic() - first_seen.setdefault(process.pid, time.monotonic()) > self.after:
                    os.kill(process.pid, signal.SIGKILL)
                    self.killed = process.pid
                    break
            time.sleep(0.05)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """The same three tiny runs recorded locally, then on a local Ray of 2 CPUs into a folder that already holds one
    of them (copied from the local recording), with a worker killed mid-run; then Ray again."""
    import torch

    local, on_ray = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("ray")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(atlas, "grid", lambda: PLANNED)
        local_count = atlas.record(folder=local, quiet=True)
        first = (local / "cpu-shard1of1.jsonl").read_text().splitlines()[0]
        (on_ray / "cpu-shard1of1.jsonl").write_text(first + "\n")  # recorded before: Ray skips it
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 object_store_memory=100 * 1024 ** 2)
        killer = WorkerKiller()
        try:
            killer.start()
            start = time.perf_counter()
            ray_count = atlas.record(folder=on_ray, backend="ray", threads=1, quiet=True)
            ray_seconds = time.perf_counter() - start
            killer.stop.set()
            again = atlas.record(folder=on_ray, backend="ray", threads=1, quiet=True)
            try:  # a task that no node could take would wait for ever: refused at once
                atlas.record(folder=on_ray, backend="ray", threads=3, quiet=True)
                too_many = None
            except ValueError as error:
                too_many = str(error)
        finally:
            killer.stop.set()
            ray.shutdown()
    torch.set_num_threads(threads)
    print(f"Ray recording: {ray_count} runs in {ray_seconds:.1f} s; killed worker {killer.killed}")
    return dict(local=local, on_ray=on_ray, counts=(local_count, ray_count, again), killed=killer.killed,
                too_many=too_many)


def records(folder) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def without_timings(record: dict) -> dict:
    record = json.loads(json.dumps(record))
    for part, names in ASIDE.items():
        for name in names:
            record[part].pop(name)
    return record


def test_a_worker_killed_mid_run_is_retried_and_nothing_is_lost_or_written_twice(recordings):
    assert recordings["killed"] is not None, "no recording task was seen running: nothing was killed"
    assert recordings["counts"][:2] == (3, 2)
    assert sorted(p.name for p in recordings["on_ray"].iterdir()) == ["cpu-ray-shard1of1.jsonl", "cpu-shard1of1.jsonl"]
    written = [FineTuneConfig.from_dict(r["config"]) for r in records(recordings["on_ray"])]
    assert sorted(written, key=repr) == sorted((c for _, c in PLANNED), key=repr)  # each run once
    assert all(r["meta"]["threads"] == 1 and r["section"] == "tiny" for r in records(recordings["on_ray"]))


def test_running_again_on_ray_records_nothing(recordings):
    assert recordings["counts"][2] == 0
    assert recordings["too_many"] == "threads=3: no Ray node has that many CPUs (the largest has 2)"
    assert len(atlas.load(folder=recordings["on_ray"])) == len(PLANNED)


def test_ray_records_are_the_local_records_number_for_number(recordings):
    key = lambda r: json.dumps(r["config"], sort_keys=True)  # noqa: E731
    local = sorted(map(without_timings, records(recordings["local"])), key=key)
    on_ray = sorted(map(without_timings, records(recordings["on_ray"])), key=key)
    assert len(local) == len(on_ray) == len(PLANNED)
    for a, b in zip(local, on_ray):
        differing = {f"{part}.{name}" for part in a if isinstance(a[part], dict)
                     for name in {*a[part], *b[part]} if a[part].get(name) != b[part].get(name)}
        assert a == b, (a["config"], differing or [part for part in a if a[part] != b[part]])
    # set aside, not absent
    assert all(name in r["meta"] for r in records(recordings["on_ray"]) for name in ASIDE["meta"])


def test_the_writer_appends_a_run_once(tmp_path):
    line = (atlas.atlas_dir() / "cpu-shard1of2.jsonl").read_text().splitlines()[0]
    writer = atlas.RecordWriter(tmp_path, "cpu", (1, 1), None, backend="ray")
    assert writer.write(json.loads(line)) and not writer.write(json.loads(line))
    assert writer.path.name == "cpu-ray-shard1of1.jsonl" and len(writer.path.read_text().splitlines()) == 1
    shutil.copy(writer.path, tmp_path / "cpu-other.jsonl")
    assert not atlas.RecordWriter(tmp_path, "cpu", (1, 1), None).write(json.loads(line))  # in the folder already


def test_a_bad_backend_is_named():
    with pytest.raises(ValueError, match="backend='spark' is not valid"):
        atlas.record(backend="spark")
