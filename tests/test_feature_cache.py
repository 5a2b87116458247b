"""The on-disk frozen-feature cache: same numbers with and without it, and it never gets in the way.

Every test points the cache at its own temporary folder ($LMTUNE_CACHE), never the learner's home cache.
"""
import os
import time

import pytest
import torch

from lmtune_widgets import FineTuneConfig, feature_cache
from lmtune_widgets.frozen import clear_caches
from lmtune_widgets.training import fine_tune

SMALL = dict(max_train_samples=32, max_eval_samples=16, num_train_epochs=1, freeze_layers=5, max_length=12,
             per_device_train_batch_size=16, evals_per_epoch=2)


@pytest.fixture(autouse=True)
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LMTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMTUNE_FEATURE_CACHE", raising=False)
    monkeypatch.delenv("LMTUNE_FEATURE_CACHE_MB", raising=False)
    clear_caches()
    yield tmp_path / "cache" / "features"
    clear_caches()


def numbers(run):
    """Everything a recorded run is checked on (atlas.difference), times left out."""
    return ([{k: v for k, v in point.items() if k != "elapsed_s"} for point in run.history], run.train_losses,
            {k: run.kept.get(k) for k in ("validation_loss", "validation_accuracy", "errors_by_phenomenon")})


def test_features_from_disk_give_the_same_run_bit_for_bit(cache_folder):
    config = FineTuneConfig(**SMALL)
    computed = fine_tune(config, keep_model=False)
    assert computed.meta["features_from"] == "computed"
    assert len(list(cache_folder.glob("*.safetensors"))) == 1

    clear_caches()  # as in a new process: nothing in memory, the file on disk
    from_disk = fine_tune(config, keep_model=False)
    assert from_disk.meta["features_from"] == "disk"
    assert from_disk.meta["cache_s"] < computed.meta["cache_s"]
    assert numbers(from_disk) == numbers(computed)  # exact equality, not approx: every loss, every accuracy


def _parts():
    return [[[101, 7, 8, 102], [101, 9, 102]], [[101, 5, 102]], []]


def _entry(tmp_path, key=("key",)):
    """A model folder (a config.json is enough to name it), the token ids of its parts, and their entry's name."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    parts = _parts()
    return model, parts, feature_cache.entry_name(key, str(model), parts)


def _states(parts):
    generator = torch.Generator().manual_seed(0)
    return [[torch.randn(len(x), 4, generator=generator) for x in ids] for ids in parts]


def test_round_trip_is_exact_and_checked_against_the_token_ids(cache_folder, tmp_path):
    model, parts, name = _entry(tmp_path)
    states = _states(parts)
    assert feature_cache.save(name, (*states, True))
    loaded = feature_cache.load(name, torch.device("cpu"), parts)
    assert loaded[-1] is True and len(loaded) == 4
    for got, want in zip(loaded[:-1], states):
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
    other = [[[101, 7, 102], [101, 9, 102]], [[101, 5, 102]], []]  # same file name asked for other inputs
    assert feature_cache.load(name, torch.device("cpu"), other) is None
    assert not (cache_folder / name).exists()  # a file that does not fit is deleted


def test_the_name_changes_with_what_changes_the_features(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"0" * 10)
    parts = _parts()
    base = feature_cache.entry_name(("k",), str(model), parts)
    assert base == feature_cache.entry_name(("k",), str(model), parts)
    assert base != feature_cache.entry_name(("other",), str(model), parts)
    assert base != feature_cache.entry_name(("k",), str(model), parts, precision="bfloat16")
    assert base != feature_cache.entry_name(("k",), str(model), [[[101, 7, 8, 102]], *parts[1:]])
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))  # the weights changed
    touched = feature_cache.entry_name(("k",), str(model), parts)
    assert touched != base
    weights.write_bytes(b"0" * 11)
    assert feature_cache.entry_name(("k",), str(model), parts) != touched
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        with_more = feature_cache.entry_name(("k",), str(model), parts)
    finally:
        torch.set_num_threads(threads)
    assert with_more != feature_cache.entry_name(("k",), str(model), parts)
    # no local model files (a hub id that was never downloaded): no disk cache, not an error
    assert feature_cache.entry_name(("k",), "nobody/no-such-model", parts) is None


def test_oldest_files_go_first_beyond_the_limit(cache_folder):
    cache_folder.mkdir(parents=True)
    now = time.time()
    for i in range(4):  # 0 is the oldest
        path = cache_folder / f"{i}.safetensors"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - 100 + i, now - 100 + i))
    stale = cache_folder / ".writing-dead.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (now - 2 * feature_cache.STALE_TEMP_S, now - 2 * feature_cache.STALE_TEMP_S))
    fresh = cache_folder / ".writing-live.tmp"  # another process is writing it now
    fresh.write_bytes(b"x")
    assert feature_cache.evict(limit=2500, keep="0.safetensors") == 3
    assert sorted(p.name for p in cache_folder.iterdir()) == [".writing-live.tmp", "0.safetensors", "3.safetensors"]
    assert feature_cache.clear() == 2 and [p.name for p in cache_folder.iterdir()] == [".writing-live.tmp"]


def test_a_corrupt_or_truncated_file_is_ignored_and_deleted(cache_folder, tmp_path):
    model, parts, name = _entry(tmp_path)
    assert feature_cache.save(name, (*_states(parts), False))
    path = cache_folder / name
    good = path.read_bytes()
    for broken in (good[: len(good) // 2], good[:-3], b"not a safetensors file", b""):
        path.write_bytes(broken)
        assert feature_cache.load(name, torch.device("cpu"), parts) is None
        assert not path.exists()
    assert feature_cache.save(name, (*_states(parts), False))  # written again, whole
    assert feature_cache.load(name, torch.device("cpu"), parts) is not None


def test_switched_off_or_unwritable_is_never_an_error(cache_folder, tmp_path, monkeypatch):
    model, parts, name = _entry(tmp_path, ("k",))
    monkeypatch.setenv("LMTUNE_FEATURE_CACHE", "off")
    assert not feature_cache.save(name, (*_states(parts), False)) and not cache_folder.exists()
    assert feature_cache.load(name, torch.device("cpu"), parts) is None
    monkeypatch.delenv("LMTUNE_FEATURE_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("LMTUNE_CACHE", str(blocker))
    assert feature_cache.save(name, (*_states(parts), False)) is False
    assert feature_cache.load(name, torch.device("cpu"), parts) is None


def test_an_llm_run_with_features_from_disk_is_the_same_run(tmp_path, monkeypatch):
    """The decoder LLM's frozen blocks are kept on disk too (the dequantised model stays where it is)."""
    from lmtune_widgets.llm import QUICK_SETTINGS

    monkeypatch.delenv("LMTUNE_CACHE")  # the bundled LLM's dequantised copy: the learner's own cache
    monkeypatch.setattr(feature_cache, "folder", lambda: tmp_path / "llm-features")
    config = FineTuneConfig.from_preset("llm_lora", **QUICK_SETTINGS)
    computed = fine_tune(config, keep_model=False)
    assert computed.meta["features_from"] == "computed" and len(list((tmp_path / "llm-features").glob("*"))) == 1
    clear_caches()  # as in a new process
    from_disk = fine_tune(config, keep_model=False)
    assert from_disk.meta["features_from"] == "disk"
    assert numbers(from_disk) == numbers(computed)
