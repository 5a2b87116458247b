"""The bundled customer messages (size, labels, lengths, balance, no near-duplicates, a data card, a fixed
order) and Hugging Face data sets (read from the local cache offline, labels made ids, rows interleaved)."""
import collections
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmtune_widgets.data import bundled_data_path, flip_labels, load_splits

ROOT = Path(__file__).resolve().parent.parent
TOPICS = {"delivery", "billing", "product_quality", "customer_support", "app_website"}


@pytest.fixture(scope="module")
def rows():
    with open(bundled_data_path(), newline="") as f:
        return list(csv.DictReader(f))


def test_size_columns_and_labels(rows):
    assert len(rows) >= 1500
    assert {"text", "sentiment", "topic", "split"} <= set(rows[0])
    assert {r["sentiment"] for r in rows} == {"negative", "positive"}
    assert {r["topic"] for r in rows} == TOPICS
    assert {r["split"] for r in rows} == {"train", "validation", "test"}


def test_message_lengths_are_5_to_60_words(rows):
    counts = [len(r["text"].split()) for r in rows]
    assert min(counts) >= 5 and max(counts) <= 60
    assert 10 <= np.median(counts) <= 30


def test_labels_are_balanced_in_every_split(rows):
    for split in ("train", "validation", "test"):
        part = [r for r in rows if r["split"] == split]
        sentiment = collections.Counter(r["sentiment"] for r in part)
        topic = collections.Counter(r["topic"] for r in part)
        assert min(sentiment.values()) / max(sentiment.values()) >= 0.85, (split, sentiment)
        assert min(topic.values()) / max(topic.values()) >= 0.85, (split, topic)
    assert collections.Counter(r["split"] for r in rows)["train"] >= 0.55 * len(rows)


def test_any_prefix_of_train_is_balanced(rows):
    """A run takes the first max_train_samples rows, so small subsets must be balanced too."""
    train = [r for r in rows if r["split"] == "train"]
    for n in (32, 64, 128):
        positive = sum(r["sentiment"] == "positive" for r in train[:n])
        assert abs(positive - n / 2) <= max(3, 0.1 * n), n


def test_no_duplicates_or_near_duplicates(rows):
    words = [frozenset(re.findall(r"[a-z0-9']+", r["text"].lower())) for r in rows]
    assert len({r["text"].strip().lower() for r in rows}) == len(rows)
    vocabulary = {w: i for i, w in enumerate(sorted(set().union(*words)))}
    matrix = np.zeros((len(rows), len(vocabulary)), dtype=np.float32)
    for i, ws in enumerate(words):
        matrix[i, [vocabulary[w] for w in ws]] = 1
    shared = matrix @ matrix.T
    sizes = matrix.sum(1)
    jaccard = shared / (sizes[:, None] + sizes[None, :] - shared)
    np.fill_diagonal(jaccard, 0)
    i, j = np.unravel_index(jaccard.argmax(), jaccard.shape)
    assert jaccard[i, j] < 0.6, (rows[i]["text"], rows[j]["text"])


def test_hard_cases_are_present_and_labelled(rows):
    kinds = collections.Counter(r["phenomenon"] for r in rows)
    assert set(kinds) == {"plain", "negation", "mixed", "sarcasm", "typo"}
    assert all(kinds[k] >= 40 for k in kinds), kinds  # every kind of hard case is there in numbers


def test_data_card_describes_the_file(rows):
    card = (bundled_data_path().parent / "README.md").read_text()
    for words in ("How it was made", "Label balance", "hard cases", str(len(rows))):
        assert words in card, words


def test_splits_load_with_datasets():
    import datasets

    splits = load_splits("sentiment")
    assert isinstance(splits.train, datasets.Dataset)
    assert splits.label_names == ["negative", "positive"]
    assert set(splits.train["label"]) == {0, 1}
    topic = load_splits("topic")
    assert len(topic.label_names) == 5 and len(topic.validation) == len(splits.validation)


def test_label_noise_is_seeded_and_exact():
    labels = [0, 1] * 50
    noisy, flipped = flip_labels(labels, 0.2, 2, seed=3)
    assert flipped.sum() == 20 and sum(a != b for a, b in zip(labels, noisy)) == 20
    assert flip_labels(labels, 0.2, 2, seed=3)[0] == noisy and flip_labels(labels, 0.2, 2, seed=4)[0] != noisy
    five, _ = flip_labels(list(range(5)) * 20, 0.5, 5, seed=0)
    assert sum(a != b for a, b in zip(list(range(5)) * 20, five)) == 50


# The bundled order is what recorded runs were trained on: it must never change.
BUNDLED_ORDER_SHA256 = {
    "sentiment": "863bc14cf6f71548fa73a599012814420f944bfefb6fcba0294c5e24029832c3",
    "topic": "a751f42c9fc8f842b057e86f69474fed6b26f09d74b8eb6f029287f126ce1310",
}


@pytest.mark.parametrize("task", sorted(BUNDLED_ORDER_SHA256))
def test_bundled_rows_keep_their_order(task):
    splits = load_splits(task)
    assert splits.train["text"][:2] == [
        "The response time on chat was incredible, maybe fifteen seconds, and the answer was spot on.",
        "Not impressed. The parcel wasn't even in the right town when it was supposed to be at my door.",
    ]
    assert splits.train["label"][:8] == {"sentiment": [1, 0, 1, 0, 1, 0, 1, 0], "topic": [2, 3, 4, 1, 3, 2, 1, 0]}[task]
    rows = [f"{name}\t{label}\t{text}" for name in ("train", "validation", "test")
            for text, label in zip(getattr(splits, name)["text"], getattr(splits, name)["label"])]
    assert hashlib.sha256("\n".join(rows).encode()).hexdigest() == BUNDLED_ORDER_SHA256[task]


# ------------------------------------------------------------------------------------ Hugging Face data sets
def assert_interleaved(labels):
    """Every prefix is balanced as far as the data allows: a label leads another by more than one row only
    once the other has no rows left."""
    totals = collections.Counter(labels)
    counts = collections.Counter()
    for n, label in enumerate(labels, 1):
        counts[label] += 1
        for a in totals:
            for b in totals:
                assert counts[a] <= counts[b] + 1 or counts[b] == totals[b], (n, dict(counts), labels)


def test_interleave_by_label_balances_every_prefix_with_a_fixed_seed():
    from lmtune_widgets.data import interleave_by_label

    grouped = [0] * 30 + [1] * 10 + [2] * 20  # as some hub files store them: one class after another
    order = interleave_by_label(grouped)
    assert sorted(order) == list(range(len(grouped)))
    assert_interleaved([grouped[i] for i in order])
    assert interleave_by_label(grouped) == order  # the default seed is fixed, not the run's
    assert interleave_by_label(grouped, seed=1) != order
    assert order[:12] != sorted(order[:12])  # rows of one label are shuffled, not kept in file order


# Tiny data sets as a hub data set would come: one class after another, labels as text or odd numbers.
HUB_LIKE = {
    "toy_text_labels": ("text", "label", {"train": ["pos"] * 12 + ["neg"] * 12,
                                          "validation": ["pos"] * 4 + ["neg"] * 4, "test": ["neg"] * 3 + ["pos"] * 3}),
    "toy_one_two": ("sentence", "label", {"train": [2] * 10 + [1] * 10, "test": [1] * 3 + [2] * 3}),
    "toy_signed": ("review", "sentiment", {"train": [1] * 8 + [-1] * 8, "validation": [-1] * 3 + [1] * 3}),
}
LOAD_FROM_CACHE = """
import json, sys
import datasets
from lmtune_widgets.data import load_splits
out = {}
for folder in sys.argv[1:]:
    datasets.load_dataset(folder)  # as a first online load would: the prepared data set lands in the cache
    name = folder.rsplit("/", 1)[-1]
    splits = load_splits(dataset=name)  # offline: it must come from the cache
    out[name] = {"label_names": splits.label_names, "source": splits.source,
                 **{split: {"text": list(getattr(splits, split)["text"]), "label": list(getattr(splits, split)["label"])}
                    for split in ("train", "validation", "test") if getattr(splits, split) is not None}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cached_hub_splits(tmp_path_factory):
    """What `load_splits(dataset=...)` gives offline for the HUB_LIKE data sets, loaded once into the datasets
    cache of a fresh HF_HOME (in a child process: datasets reads HF_HOME when it is imported)."""
    root = tmp_path_factory.mktemp("hub")
    folders = []
    for name, (text_column, label_column, splits) in HUB_LIKE.items():
        (root / name).mkdir()
        for split, labels in splits.items():
            with open(root / name / f"{split}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow([text_column, label_column])
                writer.writerows([f"{split} row {i} says {label}", label] for i, label in enumerate(labels))
        folders.append(str(root / name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(root / "hf_home"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    (root / "elsewhere").mkdir()  # not next to the folders: the names must resolve through the cache
    result = subprocess.run([sys.executable, "-c", LOAD_FROM_CACHE, *folders], cwd=root / "elsewhere", env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cached_hub_dataset_loads_offline(cached_hub_splits):
    toy = cached_hub_splits["toy_text_labels"]
    assert toy["source"] == "hub:toy_text_labels"
    assert [len(toy[split]["label"]) for split in ("train", "validation", "test")] == [24, 8, 6]
    carved = cached_hub_splits["toy_one_two"]  # no validation file: 10% of train becomes validation
    assert len(carved["train"]["label"]) + len(carved["validation"]["label"]) == 20


@pytest.mark.parametrize("name,label_names", [("toy_text_labels", ["neg", "pos"]), ("toy_one_two", ["1", "2"]),
                                              ("toy_signed", ["-1", "1"])])
def test_hub_labels_become_ids_in_sorted_order(cached_hub_splits, name, label_names):
    splits = cached_hub_splits[name]
    assert splits["label_names"] == label_names
    for split in ("train", "validation", "test"):
        for text, label in zip(splits.get(split, {}).get("text", []), splits.get(split, {}).get("label", [])):
            assert label in range(len(label_names)) and text.endswith(f" says {label_names[label]}"), (split, text, label)


@pytest.mark.parametrize("name", sorted(HUB_LIKE))
def test_hub_splits_are_interleaved_by_label(cached_hub_splits, name):
    """A run takes the first N rows of each split: from a file stored one class after another, they must still
    hold every class."""
    for split in ("train", "validation", "test"):
        if split in cached_hub_splits[name]:
            assert_interleaved(cached_hub_splits[name][split]["label"])
