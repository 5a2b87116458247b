"""The data a run trains and evaluates on.

    from lmtune_widgets.data import load_splits, tokenize
    splits = load_splits("sentiment")          # the bundled customer messages, offline
    splits.train["text"][:3], splits.label_names  # -> [...], ["negative", "positive"]
    splits = load_splits(dataset="rotten_tomatoes")   # a Hugging Face data set: online once, then from the cache
    splits = load_splits(dataset="tickets.csv", text_column="message", label_column="category")  # your own file
    splits = splits_for(config)                  # what a FineTuneConfig trains on

The bundled file `data/customer_feedback.csv` has a fixed `split` column (train/validation/test), so every
learner and every test sees the same examples. A run uses the first `max_train_samples` rows of the train
split (the file is shuffled once, when it was made, with balanced labels) and flips `label_noise` of their
labels with its own seed.

A Hugging Face data set's splits are put once in a fixed, label-interleaved order (`interleave_by_label`),
so the first N rows hold every class even when the file stores one class after another (rotten_tomatoes);
the bundled file keeps its own order. Labels given as text or as numbers other than 0..K-1 become ids
0..K-1 in the sorted order of the values. A data set loaded once (online, e.g. by an instructor before a
workshop) is read from the local datasets cache afterwards, with no network and with HF_DATASETS_OFFLINE=1;
only a data set missing from the cache is fetched from the hub.

A learner's own file (a `dataset` that is a local path: `is_local_path`) is read, checked and split by
`data_files` and dealt out label by label as a hub data set is; see that module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .data_files import (DataFileError, DataWarning, LABEL_COLUMNS, TEXT_COLUMNS,  # noqa: F401 (re-exported)
                         data_stamp, is_local_path, read_data_file)
from .hub import HubUnavailableError, ensure_hub_reachable

DATA_FILE = "customer_feedback.csv"
HUB_ORDER_SEED = 0  # the one fixed order of a hub data set's rows (see interleave_by_label)


@dataclass
class Splits:
    """Train, validation and test `datasets.Dataset`s with a `text` and an integer `label` column."""

    train: "datasets.Dataset"  # noqa: F821
    validation: "datasets.Dataset"  # noqa: F821
    test: "datasets.Dataset | None"  # noqa: F821
    label_names: list[str]
    source: str  # "bundled:<task>", "hub:<name>" or "file:<file name>@<data_hash>"
    data_hash: str | None = None  # a learner's own file: the first 16 hex digits of its sha256 (see file_hash)
    warnings: list[str] = field(default_factory=list)  # what loading found worth a look (see DataWarning)


def bundled_data_path(name: str = DATA_FILE) -> Path:
    """Where a bundled file is: `data/` in a checkout, or inside the installed package."""
    checkout = Path(__file__).resolve().parent.parent / "data" / name
    if checkout.exists():
        return checkout
    return Path(str(resources.files("lmtune_widgets") / "bundled" / name))


def load_splits(task: str = "sentiment", dataset: str | None = None, text_column: str | None = None,
                label_column: str | None = None) -> Splits:
    """The three splits of the bundled data for `task`, of a learner's own file (`dataset` a local path, see
    `is_local_path`), or of a Hugging Face data set. Loaded once per process; a local file is read again when it
    changed (its size or modification time is part of the cache's key)."""
    if dataset and is_local_path(dataset):
        return _load_splits(None, dataset, text_column, label_column, data_stamp(dataset))
    return _load_splits(task, dataset, text_column, label_column, None)


def splits_for(config) -> Splits:
    """The splits a `FineTuneConfig` trains and evaluates on."""
    return load_splits(config.task, config.dataset, config.text_column, config.label_column)


@lru_cache(maxsize=4)
def _load_splits(task: str | None, dataset: str | None, text_column: str | None, label_column: str | None,
                 stamp: tuple | None) -> Splits:
    if dataset and stamp is not None:
        return load_file_splits(dataset, text_column, label_column)
    if dataset:
        return _load_hub_splits(dataset, text_column, label_column)
    import datasets

    datasets.disable_progress_bars()
    table = datasets.load_dataset("csv", data_files=str(bundled_data_path()), split="train")
    label_names = sorted(set(table[task]))
    to_id = {name: i for i, name in enumerate(label_names)}
    table = table.map(lambda row: {"label": to_id[row[task]]})
    parts = {name: table.filter(lambda row, name=name: row["split"] == name) for name in ("train", "validation", "test")}
    keep = ["text", "label", "phenomenon"]  # phenomenon: what makes a message hard (for error analysis only)
    parts = {k: v.select_columns(keep) for k, v in parts.items()}
    return Splits(parts["train"], parts["validation"], parts["test"], label_names, f"bundled:{task}")


def load_file_splits(dataset: str, text_column: str | None = None, label_column: str | None = None) -> Splits:
    """The splits of a learner's file or saved folder (`data_files.read_data_file`: checked, split by its split
    column or carved by class), each dealt out label by label as a hub data set's. Not cached: `load_splits` is."""
    found = read_data_file(dataset, text_column, label_column)
    parts = {split: part.select(interleave_by_label(part["label"])) for split, part in found.parts.items()}
    return Splits(parts["train"], parts["validation"], parts.get("test"), found.label_names,
                  f"file:{found.name}@{found.data_hash}", data_hash=found.data_hash, warnings=found.warnings)


def _load_hub_dataset(name: str) -> "datasets.DatasetDict":  # noqa: F821
    """All splits of the Hugging Face data set `name`: from the local datasets cache when it was loaded once
    before (no network needed, so a pre-cached workshop works with HF_DATASETS_OFFLINE=1), else from the hub,
    failing within seconds when the hub is switched off or out of reach.

        raw = _load_hub_dataset("rotten_tomatoes")   # online once; later offline too, from the cache
    """
    import datasets

    try:
        return _load_cached(name)
    except Exception as error:  # not cached (or not readable): the hub is the only other place
        cache_miss = f"not taken from the datasets cache {datasets.config.HF_DATASETS_CACHE}: {_first_line(error)}"
    try:
        ensure_hub_reachable(what=f"dataset={name!r} ({cache_miss})")
        return datasets.load_dataset(name)
    except HubUnavailableError:
        raise
    except Exception as error:  # unknown name, no network
        raise HubUnavailableError(
            f"dataset={name!r} could not be loaded ({type(error).__name__}: {_first_line(error)}). "
            "Leave dataset unset to use the bundled customer messages (task='sentiment' or 'topic'), which work offline."
        ) from None


def _load_cached(name: str) -> "datasets.DatasetDict":  # noqa: F821
    """The newest prepared copy of `name` in the datasets cache: the lookup `datasets` itself makes in
    offline mode (its `Cache` builder), made here whatever the mode, so a cached data set needs no network."""
    from datasets.packaged_modules.cache.cache import Cache

    return Cache(repo_id=name, dataset_name=name.split("/")[-1], version="auto", hash="auto").as_dataset()


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [""])[0][:200]


def _load_hub_splits(name: str, text_column: str | None = None, label_column: str | None = None) -> Splits:
    import datasets

    raw = _load_hub_dataset(name)
    train = raw["train"]
    text_column = text_column or next((c for c in TEXT_COLUMNS if c in train.column_names), None)
    label_column = label_column or next((c for c in LABEL_COLUMNS if c in train.column_names), None)
    if text_column not in train.column_names or label_column not in train.column_names:
        raise ValueError(f"dataset={name!r} needs a text column (one of {TEXT_COLUMNS}, or text_column=...) and a "
                         f"label column (one of {LABEL_COLUMNS}, or label_column=...); it has {train.column_names}")
    if "validation" in raw:
        validation = raw["validation"]
    else:  # carve a fixed validation split out of train
        parts = train.train_test_split(test_size=0.1, seed=0)
        train, validation = parts["train"], parts["test"]
    parts = {"train": train, "validation": validation, "test": raw["test"] if "test" in raw else None}
    parts = {split: table.rename_columns({text_column: "text", label_column: "label"}).select_columns(["text", "label"])
             for split, table in parts.items() if table is not None}
    feature = parts["train"].features["label"]
    if isinstance(feature, datasets.ClassLabel):  # already ids 0..K-1, with names
        label_names = list(feature.names)
    else:  # text labels, or numbers other than 0..K-1 (1/2, -1/1): ids in the sorted order of the values
        values = sorted(set().union(*(table["label"] for table in parts.values())))
        label_names = [str(value) for value in values]
        to_id = {value: i for i, value in enumerate(values)}
        features = datasets.Features({"text": parts["train"].features["text"],
                                      "label": datasets.ClassLabel(names=label_names)})
        parts = {split: table.map(lambda batch: {"label": [to_id[value] for value in batch["label"]]}, batched=True,
                                  features=features)
                 for split, table in parts.items()}
    parts = {split: table.select(interleave_by_label(table["label"])) for split, table in parts.items()}
    return Splits(parts["train"], parts["validation"], parts.get("test"), label_names, f"hub:{name}")


def interleave_by_label(labels, seed: int = HUB_ORDER_SEED) -> list[int]:
    """Row indices that deal the rows out label by label, so that the first N rows are as balanced as the data
    allows: a run takes the first `max_train_samples` / `max_eval_samples` rows of a split, and hub files are
    often stored one class after another.

        split = split.select(interleave_by_label(split["label"]))

    Each label's rows are shuffled with `seed`, then taken in rounds of one row per label (the labels in a
    shuffled order each round); once a label runs out, the others go on. The default seed is fixed rather than
    the run's, so every run sees the same rows and the frozen-feature cache stays shared between runs.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    rank = np.empty(len(labels), dtype=np.int64)  # which round each row is dealt in
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        rank[rng.permutation(rows)] = np.arange(len(rows))
    return np.lexsort((rng.random(len(labels)), rank)).tolist()


def flip_labels(labels: list[int], fraction: float, num_labels: int, seed: int) -> tuple[list[int], np.ndarray]:
    """Flip `fraction` of the labels to another class at random. Returns the new labels and which were flipped."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    flipped = np.zeros(len(labels), dtype=bool)
    count = int(round(fraction * len(labels)))
    if count == 0 or num_labels < 2:
        return labels.tolist(), flipped
    rng = np.random.default_rng(seed + 1_000_003)
    chosen = rng.choice(len(labels), size=count, replace=False)
    shifts = rng.integers(1, num_labels, size=count)  # never the original class
    labels[chosen] = (labels[chosen] + shifts) % num_labels
    flipped[chosen] = True
    return labels.tolist(), flipped


def tokenize(split, tokenizer, max_length: int, limit: int | None) -> dict[str, list]:
    """Token ids (unpadded) and labels of the first `limit` rows; padding happens per batch."""
    if limit is not None and limit < len(split):
        split = split.select(range(limit))
    encoded = split.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        load_from_cache_file=True,
        desc=None,
    )
    return {"input_ids": encoded["input_ids"], "label": list(encoded["label"]), "text": list(split["text"])}

