"""Frozen features kept on disk, so a new process does not recompute what an earlier one already did.

    from lmtune_widgets import feature_cache
    name = feature_cache.entry_name(key, model_path, [train_ids, validation_ids])
    cached = feature_cache.load(name, device, [train_ids, validation_ids])   # None: absent, disabled or unreadable
    feature_cache.save(name, cached)                                         # never raises
    feature_cache.clear()                                                    # forget them all

`frozen.frozen_features` looks in the in-process cache first, then here, and computes the features only when both
miss. An entry is named by a hash of everything that changes the features: the in-process key (model, frozen
layers, task, data, lengths, samples, device), the precision, the exact token ids fed to the frozen layers,
a fingerprint of the model's files (name, size and modification time of each), and the versions of the kit,
torch and transformers, the CPU's vector unit and torch's thread count (a recorded run is reproduced bit for
bit only on the same kind). Anything else reads as a miss, and the features are computed as before.

Files are safetensors (plain tensors, no pickle), written to a temporary name and renamed, so a reader never
sees half a file. A file that cannot be read, or does not match the token ids it was asked for, is ignored
(and deleted). Beyond `LMTUNE_FEATURE_CACHE_MB` (default 2048) the least recently used files are deleted.

Where: `$LMTUNE_CACHE/features` (the kit's cache root, as for the dequantised LLM), else
`$XDG_CACHE_HOME/lmtune-widgets/features`, else `~/.cache/lmtune-widgets/features`.
`LMTUNE_FEATURE_CACHE=0` switches the disk cache off. Deleting the folder is always safe.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from array import array
from pathlib import Path
from typing import Sequence

import torch

FORMAT = 1  # bump when the file layout or what the features depend on changes
SUFFIX = ".safetensors"
DEFAULT_LIMIT_MB = 2048
STALE_TEMP_S = 3600  # a temporary file older than this was left by a process that died while writing


def enabled() -> bool:
    """False when LMTUNE_FEATURE_CACHE is 0/false/no/off."""
    return os.environ.get("LMTUNE_FEATURE_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_root() -> Path:
    """Where the kit keeps what it computes once (frozen features, the dequantised LLM): $LMTUNE_CACHE, else
    $XDG_CACHE_HOME/lmtune-widgets, else ~/.cache/lmtune-widgets (in Colab: the runtime's own disk)."""
    root = os.environ.get("LMTUNE_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lmtune-widgets"


def folder() -> Path:
    """The cache folder (created when first written)."""
    return cache_root() / "features"


def limit_bytes() -> int:
    try:
        return int(float(os.environ.get("LMTUNE_FEATURE_CACHE_MB", DEFAULT_LIMIT_MB)) * 1024 * 1024)
    except ValueError:
        return DEFAULT_LIMIT_MB * 1024 * 1024


def model_fingerprint(model_path: str) -> str | None:
    """Name, size and modification time of every file in a local model folder (weights, config, tokenizer);
    for a hub id, of the downloaded snapshot that `from_pretrained` reads. None when there is no such folder."""
    path = Path(model_path).expanduser()
    if not path.is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model_path, "config.json")
        except Exception:  # not a valid hub id, or no huggingface_hub
            return None
        if not isinstance(found, str):
            return None
        path = Path(found).parent  # the snapshot folder (its name is the commit)
    files = []
    for root, _, names in os.walk(path):
        for name in names:
            full = Path(root) / name
            try:
                stat = full.stat()  # follows the hub cache's symlinks to the blobs
            except OSError:
                continue
            files.append((str(full.relative_to(path)), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps([str(path.resolve()), sorted(files)]).encode()).hexdigest() if files else None


def _ids_digest(parts: Sequence[Sequence[Sequence[int]]]) -> str:
    digest = hashlib.sha256()
    for ids in parts:
        for x in ids:  # each example's ids as 8-byte integers, then its length: no two inputs read the same
            digest.update(array("q", x).tobytes())
            digest.update(len(x).to_bytes(8, "little"))
        digest.update(b"|")
    return digest.hexdigest()


def entry_name(key: tuple, model_path: str, parts: Sequence[Sequence[Sequence[int]]], precision: str = "float32") -> str | None:
    """The file name for these features, or None when they are not cached on disk (switched off, or no local
    model files to fingerprint, such as a hub id that is not downloaded)."""
    fingerprint = model_fingerprint(model_path) if enabled() else None
    if fingerprint is None:
        return None
    import transformers

    from . import __version__

    what = [FORMAT, repr(key), precision, fingerprint, _ids_digest(parts), __version__, torch.__version__,
            transformers.__version__, torch.get_num_threads(), platform.machine(), _vector_unit()]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:40] + SUFFIX


def _vector_unit() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        return "unknown"


def load(name: str | None, device: torch.device, parts: Sequence[Sequence[Sequence[int]]]):
    """(states of each part..., returns_tuple), as `FrozenPrefix.compute` gave them, or None.

    Each part's states are a list with one (length, hidden) tensor per example; their lengths are checked
    against the token ids, so a file that does not belong to these inputs is never used.
    """
    if name is None or not enabled():
        return None
    path = folder() / name
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        states = []
        with safe_open(str(path), framework="pt", device=str(device)) as file:
            returns_tuple = file.metadata()["returns_tuple"] == "1"
            for i, ids in enumerate(parts):
                lengths = file.get_tensor(f"lengths_{i}").tolist()
                if lengths != [len(x) for x in ids]:
                    raise ValueError("the lengths do not match the token ids")
                flat = file.get_tensor(f"states_{i}")
                if flat.shape[0] != sum(lengths):
                    raise ValueError("the states do not match their lengths")
                states.append(list(torch.split(flat, lengths)) if lengths else [])
        os.utime(path)  # recently used: evicted last
        return (*states, returns_tuple)
    except Exception:  # unreadable, truncated or foreign: ignore it, recompute, overwrite it
        _remove(path)
        return None


def save(name: str | None, cached: tuple) -> bool:
    """Write (states of each part..., returns_tuple) under `name`, atomically; then keep the folder under
    its size limit. Returns whether it was written; a failure (read-only, disk full) is not an error."""
    if name is None or not enabled():
        return False
    *parts, returns_tuple = cached
    tmp = None
    try:
        from safetensors.torch import save_file

        tensors = {}
        for i, states in enumerate(parts):
            tensors[f"lengths_{i}"] = torch.tensor([s.shape[0] for s in states], dtype=torch.int64)
            tensors[f"states_{i}"] = (torch.cat([s.detach().cpu() for s in states]) if states
                                      else torch.zeros(0, dtype=torch.float32)).contiguous()
        where = folder()
        where.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=where, prefix=".writing-", suffix=".tmp")
        os.close(handle)
        save_file(tensors, tmp, metadata={"returns_tuple": "1" if returns_tuple else "0", "format": str(FORMAT)})
        os.replace(tmp, where / name)  # atomic: readers see the old file, no file, or the whole new one
        tmp = None
        evict(keep=name)
        return True
    except Exception:
        return False
    finally:
        if tmp is not None:
            _remove(Path(tmp))


def evict(limit: int | None = None, keep: str | None = None) -> int:
    """Delete the least recently used entries until the folder holds at most `limit` bytes (default: the
    configured limit), never `keep`; also stale temporary files. Returns how many files were deleted."""
    limit = limit_bytes() if limit is None else limit
    entries, removed, now = [], 0, time.time()
    try:
        listing = list(folder().iterdir())
    except OSError:
        return 0
    for path in listing:
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.name.endswith(".tmp"):
            if now - stat.st_mtime > STALE_TEMP_S:
                removed += _remove(path)
        elif path.name.endswith(SUFFIX):
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if path.name != keep:
            removed += _remove(path)
            total -= size
    return removed


def clear() -> int:
    """Delete every cached feature file; returns how many."""
    return evict(limit=-1) if folder().is_dir() else 0


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except OSError:
        return 0
