"""A learner's own data file (issue 22): CSV, JSON lines, Parquet and save_to_disk folders load to the same splits,
train from a path in Python and on the command line with the file's hash in the run, bad files are named with
their problem, and the file is never written to."""
import collections
import csv
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from lmtune_widgets import FineTuneConfig
from lmtune_widgets import data_files
from lmtune_widgets.data import load_file_splits, load_splits, splits_for
from lmtune_widgets.data_files import DataFileError, DataWarning, file_hash, is_local_path, summarize

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("billing", "shipping", "other")
SUBJECTS = {"billing": ["charged twice for", "no refund yet for", "wrong amount on the invoice of"],
            "shipping": ["still waiting for", "the courier lost", "tracking has not moved for"],
            "other": ["cannot log in to see", "please change the address on", "how do I review"]}
COLUMNS = {"text_column": "message", "label_column": "category"}  # named unlike the bundled file's


def ticket_rows(per_class: int = 30) -> list[dict]:
    """Short support messages, three classes, stored one class after another (as exports often are)."""
    return [{"message": f"Hello, {SUBJECTS[c][i % 3]} order {1000 + 37 * i + len(c)}, sent on day {i % 28 + 1}.",
             "category": c} for c in CLASSES for i in range(per_class)]


def write_csv(path: Path, rows: list[dict], columns=None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def tickets(tmp_path) -> Path:
    return write_csv(tmp_path / "tickets.csv", ticket_rows())


def as_lists(splits) -> dict:
    return {split: (list(getattr(splits, split)["text"]), [splits.label_names[i] for i in getattr(splits, split)["label"]])
            for split in ("train", "validation", "test")}


def assert_interleaved(labels):
    """The first N rows hold every class as evenly as the data allows."""
    totals, counts = collections.Counter(labels), collections.Counter()
    for label in labels:
        counts[label] += 1
        assert all(counts[a] <= counts[b] + 1 or counts[b] == totals[b] for a in totals for b in totals), counts


# ------------------------------------------------------------------------------------------------ loading
def test_a_csv_loads_with_named_columns_fixed_splits_and_its_labels(tickets):
    splits = load_splits(dataset=str(tickets), **COLUMNS)
    assert splits.label_names == ["billing", "other", "shipping"]
    assert splits.source == f"file:tickets.csv@{file_hash(tickets)}" and len(splits.data_hash) == 16
    sizes = {split: collections.Counter(labels) for split, (_, labels) in as_lists(splits).items()}
    assert sizes["validation"] == sizes["test"] == {c: 4 for c in CLASSES} or all(  # 15% of 30 of each class
        4 <= n <= 5 for split in ("validation", "test") for n in sizes[split].values()), sizes
    assert sum(sum(c.values()) for c in sizes.values()) == 90
    texts = [t for texts, _ in as_lists(splits).values() for t in texts]
    assert len(set(texts)) == 90  # every row in one split only
    for split in ("train", "validation", "test"):
        assert_interleaved(getattr(splits, split)["label"])
    again = load_file_splits(str(tickets), **COLUMNS)  # not from the cache: the carving is fixed
    assert as_lists(again) == as_lists(splits)


def test_jsonl_parquet_and_save_to_disk_load_to_the_same_splits(tmp_path, tickets):
    import datasets

    table = datasets.Dataset.from_list(ticket_rows())
    table.to_json(tmp_path / "tickets.jsonl", lines=True)
    table.to_parquet(tmp_path / "tickets.parquet")
    table.save_to_disk(str(tmp_path / "tickets_saved"))
    expected = as_lists(load_splits(dataset=str(tickets), **COLUMNS))
    for name in ("tickets.jsonl", "tickets.parquet", "tickets_saved"):
        splits = load_splits(dataset=str(tmp_path / name), **COLUMNS)
        assert as_lists(splits) == expected, name
        assert splits.source.startswith(f"file:{name}@") and splits.data_hash == file_hash(tmp_path / name)


def test_a_split_column_is_honoured_and_a_saved_dataset_dict_keeps_its_splits(tmp_path):
    import datasets

    rows = ticket_rows(12)
    for i, row in enumerate(rows):
        row["split"] = ("train", "train", "validation", "test")[i % 4]
    splits = load_splits(dataset=str(write_csv(tmp_path / "with_splits.csv", rows)), **COLUMNS)
    for split in ("train", "validation", "test"):
        assert sorted(getattr(splits, split)["text"]) == sorted(r["message"] for r in rows if r["split"] == split)
    parts = {split: datasets.Dataset.from_list([{k: r[k] for k in COLUMNS.values()} for r in rows if r["split"] == split])
             for split in ("train", "validation", "test")}
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "dict_saved"))
    assert as_lists(load_splits(dataset=str(tmp_path / "dict_saved"), **COLUMNS)) == as_lists(splits)


def test_number_labels_keep_their_names_and_whole_floats_count_as_whole_numbers(tmp_path):
    rows = [{"text": f"message number {i} about thing {i % 7}", "label": (3, 7)[i % 2]} for i in range(40)]
    splits = load_splits(dataset=str(write_csv(tmp_path / "ints.csv", rows)))  # found by name: text, label
    assert splits.label_names == ["3", "7"]
    floats = [{**row, "label": float(row["label"])} for row in rows]
    (tmp_path / "floats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in floats))
    assert as_lists(load_splits(dataset=str(tmp_path / "floats.jsonl"))) == as_lists(splits)


def test_an_edited_file_is_read_again(tickets):
    first = load_splits(dataset=str(tickets), **COLUMNS)
    rows = ticket_rows()
    rows[0]["message"] = "A message that was not in the file before the edit."
    write_csv(tickets, rows)
    os.utime(tickets, ns=(tickets.stat().st_atime_ns, tickets.stat().st_mtime_ns + 10**9))
    second = load_splits(dataset=str(tickets), **COLUMNS)
    assert second.data_hash != first.data_hash
    assert "A message that was not in the file before the edit." in [t for texts, _ in as_lists(second).values()
                                                                   for t in texts]


def test_the_file_and_the_folder_are_never_written_to(tmp_path, tickets):
    import datasets

    datasets.Dataset.from_list(ticket_rows()).save_to_disk(str(tmp_path / "saved"))

    def state():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in [tickets, *sorted((tmp_path / "saved").rglob("*"))]
                if p.is_file()}

    before = state()
    for path in (tickets, tmp_path / "saved"):
        splits = load_splits(dataset=str(path), **COLUMNS)
        splits.train.map(lambda row: {"n": len(row["text"])})  # what a run does next must not write there either
    assert state() == before


def test_local_paths_are_told_from_hub_names(tmp_path, tickets):
    assert all(map(is_local_path, [str(tickets), "mine.csv", "data/x.jsonl", "./folder", "~/x", "a/b/c", "C:\\x"]))
    assert not any(map(is_local_path, ["rotten_tomatoes", "stanfordnlp/imdb", "SetFit/sst2"]))


# ------------------------------------------------------------------------------------------------ bad files
def _bad(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_csv(path, content)
    return path


def _rows(n=30, **changes):
    rows = [{"message": f"ticket {i} about order {i * 13}", "category": CLASSES[i % 3]} for i in range(n)]
    for i, row in changes.items():
        rows[int(i[1:])].update(row)
    return rows


BAD_FILES = [  # (id, file name, content, columns given, what the message must say)
    ("no text column", "a.csv", _rows(), {"label_column": "category"},
     "a.csv: no text column found among its columns ['message', 'category']"),
    ("ambiguous text", "b.csv", [{"text": "x y", "sentence": "y z", "label": c} for c in CLASSES * 10], {},
     "b.csv: more than one column could be the text (text, sentence) among its columns ['text', 'sentence', 'label']"),
    ("no label column", "c.csv", _rows(), {"text_column": "message"}, "c.csv: no label column found"),
    ("override not a column", "d.csv", _rows(), {"text_column": "body", "label_column": "category"},
     "d.csv: text_column='body' is not one of its columns ['message', 'category']"),
    ("one class", "e.csv", [{"message": f"m {i}", "category": "billing"} for i in range(30)], COLUMNS,
     "e.csv: only one class ('billing', 30 rows)"),
    ("too few of a class", "f.csv", _rows(60) + [{"message": "late", "category": "legal"}] * 3, COLUMNS,
     "f.csv: class 'legal' has 3 rows; each class needs at least 10"),
    ("empty text", "g.csv", _rows(r4={"message": ""}, r9={"message": "   "}), COLUMNS,
     "g.csv: empty text in column 'message' on rows 5, 10 (2 rows in all)"),
    ("not utf-8", "h.csv", "message,category\nfine,billing\nd\xe9j\xe0 vu,other\n".encode("latin-1"), COLUMNS,
     "h.csv: bytes that are not UTF-8 on line 3 (row 2 below the header)"),
    ("float labels", "i.csv", [{"message": f"m {i}", "score": 0.5 + i} for i in range(30)],
     {"text_column": "message", "label_column": "score"}, "i.csv: the labels are numbers with fractions (0.5 on rows 1"),
    ("empty file", "j.csv", b"", COLUMNS, "j.csv: the file is empty (0 bytes)"),
    ("header only", "k.csv", b"message,category\n", COLUMNS, "k.csv: the file has no rows"),
    ("missing label", "l.csv", _rows(r2={"category": ""}), COLUMNS, "l.csv: row 3 has no label"),
    ("bad split", "m.csv", [{**r, "split": "dev"} for r in _rows()], COLUMNS,
     "m.csv: the split column holds 'dev' on rows 1, 2, 3, 4, 5 and 25 more; allowed are train, validation, test"),
    ("unknown suffix", "n.xlsx", b"PK\x03\x04", COLUMNS, "n.xlsx: unknown kind of file '.xlsx'"),
    ("missing file", "nowhere.csv", None, COLUMNS, "nowhere.csv: no such file or folder"),
]


@pytest.mark.parametrize("name,content,columns,message", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_named_with_its_problem(tmp_path, name, content, columns, message):
    path = tmp_path / name if content is None else _bad(tmp_path, name, content)
    with pytest.raises(DataFileError) as error:
        load_splits(dataset=str(path), **columns)
    assert str(error.value).startswith(f"{name}: ") and message in str(error.value), str(error.value)
    assert isinstance(error.value, ValueError)


def test_a_file_too_large_for_memory_is_refused_with_its_size(tmp_path, tickets, monkeypatch):
    monkeypatch.setattr(data_files, "MAX_FILE_BYTES", 1000)
    size = tickets.stat().st_size
    with pytest.raises(DataFileError, match=rf"^tickets.csv: the file is too large for this machine's memory "
                                            rf"\({size / 1000:.1f} KB; files up to 1.0 KB are read"):
        load_splits(dataset=str(tickets), **COLUMNS)
    monkeypatch.setattr(data_files, "MAX_FILE_BYTES", None)
    assert data_files.max_file_bytes() > 10**6  # a fraction of this machine's free memory


# ------------------------------------------------------------------------------------------------ warnings, summary
def test_the_same_text_in_train_and_validation_is_a_warning_not_an_error(tmp_path):
    rows = _rows(60)
    for i in range(0, 60, 2):  # pairs of rows with the same text and class
        rows[i + 1] = {**rows[i], "message": rows[i]["message"].upper()}
    with pytest.warns(DataWarning, match=r"^dups.csv: \d+ of 9 validation texts are also in train"):
        splits = load_splits(dataset=str(write_csv(tmp_path / "dups.csv", rows)), **COLUMNS)
    assert "validation texts are also in train" in splits.warnings[0]
    assert "validation texts are also in train" in str(summarize(splits))


def test_summarize_counts_rows_per_split_and_class_lengths_and_truncation(tickets):
    from lmtune_widgets.models import load_tokenizer

    splits = load_splits(dataset=str(tickets), **COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing cut at 64 tokens: no warning
        summary = summarize(splits, load_tokenizer("minilm"), max_length=64)
    assert summary.truncated == 0
    assert {split: sum(by_class.values()) for split, by_class in summary.rows.items()} == {
        split: len(getattr(splits, split)) for split in ("train", "validation", "test")}
    assert summary.rows["train"] == dict(collections.Counter(splits.label_names[i] for i in splits.train["label"]))
    texts = [t for texts, _ in as_lists(splits).values() for t in texts]
    assert summary.median_words == statistics.median(len(t.split()) for t in texts) == 11
    assert 12 <= summary.median_tokens <= 30
    with pytest.warns(DataWarning, match=r"tickets.csv: 90 of 90 texts are longer than max_length=8 tokens"):
        cut = summarize(splits, load_tokenizer("minilm"), max_length=8)
    assert cut.truncated == 90 and "90 texts longer than max_length=8" in str(cut)
    assert "billing" in cut.html() and "&#9888;" in cut.html()


# ------------------------------------------------------------------------------------------------ settings and runs
def test_a_config_with_a_path_round_trips_as_a_share_string(tickets):
    config = FineTuneConfig(dataset=str(tickets), max_train_samples=32, **COLUMNS)
    text = config.to_share_string()
    assert json.loads(text) == {"dataset": str(tickets), "max_train_samples": 32, **COLUMNS}
    assert FineTuneConfig.from_share_string(text) == config
    assert splits_for(FineTuneConfig.from_share_string(text)).data_hash == file_hash(tickets)
    with pytest.raises(ValueError, match="text_column='message' is not valid without a dataset"):
        FineTuneConfig(text_column="message")


TINY = dict(max_train_samples=32, max_eval_samples=16, num_train_epochs=1, evals_per_epoch=1, freeze_layers=5)


def test_a_file_trains_from_a_path_and_the_run_records_its_hash(tickets, tmp_path):
    from lmtune_widgets import Run, fine_tune

    run = fine_tune(FineTuneConfig(dataset=str(tickets), **COLUMNS, **TINY))
    assert run.status == "finished" and run.label_names == ["billing", "other", "shipping"]
    assert run.meta["data_hash"] == file_hash(tickets)
    assert run.meta["data"] == f"file:tickets.csv@{file_hash(tickets)}"
    assert run.meta["data_path"] == str(tickets.resolve())
    run.save(tmp_path / "run.json")
    assert Run.load(tmp_path / "run.json").meta["data_hash"] == file_hash(tickets)


def test_the_command_line_trains_from_a_path(tickets, tmp_path):
    out = tmp_path / "run.json"
    options = [f"--{k}={v}" for k, v in {**COLUMNS, **TINY}.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "lmtune_widgets", "run", "--quiet", "--dataset", str(tickets),
                             *options, "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["meta"]["data_hash"] == file_hash(tickets) and saved["config"]["text_column"] == "message"

def test_the_command_line_names_a_bad_file_in_one_line(tickets, capsys):
    from lmtune_widgets.cli import main

    assert main(["run", "--quiet", "--dataset", str(tickets)]) == 2
    assert capsys.readouterr().err.startswith("error: tickets.csv: no text column found among its columns")


# ------------------------------------------------------------------------------------------------ the example file
def test_the_example_file_for_lesson_12_loads_and_has_a_data_card():
    path = ROOT / "data" / "support_tickets_example.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert 150 <= len(rows) <= 300 and set(rows[0]) == {"ticket", "queue"}
    counts = collections.Counter(r["queue"] for r in rows)
    assert len(counts) == 3 and min(counts.values()) >= 0.25 * len(rows), counts
    assert len({r["ticket"].strip().lower() for r in rows}) == len(rows)  # no duplicates
    splits = load_splits(dataset=str(path), text_column="ticket", label_column="queue")
    assert len(splits.label_names) == 3 and not splits.warnings
    assert "support_tickets_example.csv" in (ROOT / "data" / "README.md").read_text()
