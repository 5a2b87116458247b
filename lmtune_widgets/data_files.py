"""A learner's own data file as a run's data: CSV, JSON lines, JSON, Parquet, or a folder saved with `datasets`.

    cfg = FineTuneConfig(dataset="tickets.csv", text_column="message", label_column="category")
    run = fine_tune(cfg)                 # run.meta["data"] == "file:tickets.csv@<hash>", run.meta["data_hash"]
    splits = load_splits(dataset="tickets.csv", text_column="message", label_column="category")
    print(summarize(splits, tokenizer, max_length=64))   # rows per split and class, lengths, warnings

`datasets` reads every kind of file (its csv, json and parquet builders, and `load_from_disk`, all kept in
memory, so nothing is ever written next to the learner's file). The text and label columns are found by name as
for a hub data set (`TEXT_COLUMNS`, `LABEL_COLUMNS`, case aside), or named with `text_column` and
`label_column`. A `split` column (train / validation / test) is kept; without one, 15% of each class becomes the
validation split and another 15% the test split, always the same rows (seed `SPLIT_SEED`). Labels keep their
names (text, or whole numbers: 1.0 counts as 1), and each split is dealt out label by label as a hub data set is
(`data.interleave_by_label`, in `data.load_file_splits`). The file's content hash (`file_hash`) goes into the run's meta, so a run says
which data it saw.

A file that cannot be used raises `DataFileError` (a ValueError) whose message starts with the file's name and
says what is wrong and where (a missing or ambiguous column, one class, too few rows of a class, an empty text,
bytes that are not UTF-8, fractional labels, an empty or too large file). What works but deserves a look (the same
text in train and validation, texts longer than max_length) is a `DataWarning`, and a line of `summarize`.
"""
from __future__ import annotations

import collections
import hashlib
import math
import os
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")  # a text column is found by these names
LABEL_COLUMNS = ("label", "labels", "sentiment")
FILE_SUFFIXES = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # -> datasets builder
SPLIT_NAMES = ("train", "validation", "test")
SPLIT_SEED = 0  # the one fixed carving of a file without a split column
VALIDATION_FRACTION = 0.15  # of each class, when the file has no split column
TEST_FRACTION = 0.15
MIN_ROWS_PER_CLASS = 10  # so that 15% of a class is at least one row in validation and in test
MAX_FILE_BYTES: int | None = None  # None: RAM_FRACTION of the memory available now (tests set a number)
RAM_FRACTION = 0.25  # reading a table takes a few times its size (parsing, Arrow, the tokenized copy)
HASH_DIGITS = 16
UPLOAD_DIR = Path("~/.cache/lmtune_widgets/uploads")  # the kit's own copies of files uploaded in the panel
SHOWN_ROWS = 5  # row numbers named in one message at most


class DataFileError(ValueError):
    """A learner's data file that cannot be used. The message starts with the file's name."""


class DataWarning(UserWarning):
    """Something in a learner's data that works but deserves a look (the same text in train and validation,
    texts cut at max_length)."""


def is_local_path(dataset: str) -> bool:
    """Whether `dataset` names a file or folder on this machine rather than a Hugging Face data set: it exists, or
    ends with .csv, .jsonl, .json or .parquet, or reads as a path (starts with '/', '.', '~', holds a backslash or
    more than one '/'). 'owner/name' that is not here is a hub name, as hub ids have one '/'."""
    text = str(dataset).strip()
    return (os.path.exists(os.path.expanduser(text)) or text.lower().endswith(tuple(FILE_SUFFIXES))
            or text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1)


def _files(path: Path) -> list[Path]:
    """The file itself, or a folder's files in sorted order (relative names)."""
    if path.is_dir():
        return sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    return [path]


def data_stamp(dataset: str) -> tuple:
    """What changes when the file is edited (each file's name, size and modification time): part of the load
    cache's key, so an edited file is read again. Cheap: no file is read."""
    path = Path(dataset).expanduser()
    if not path.exists():
        return (str(path), "missing")
    return tuple((p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in _files(path))


def file_hash(path: str | Path) -> str:
    """The first 16 hex digits of the sha256 of the file's bytes; of a folder, of its files (relative name and
    bytes) in sorted order. Read in chunks, read-only."""
    path = Path(path).expanduser()
    digest = hashlib.sha256()
    for file in _files(path):
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:HASH_DIGITS]


def max_file_bytes() -> int:
    """The largest file read: MAX_FILE_BYTES, or RAM_FRACTION of the memory available now."""
    if MAX_FILE_BYTES is not None:
        return MAX_FILE_BYTES
    try:
        import psutil

        available = psutil.virtual_memory().available
    except Exception:  # no psutil: ask the system (Linux, macOS); else assume 8 GiB
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30
    return int(available * RAM_FRACTION)


def _size(number: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if number < 1000 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "bytes" else f"{number:.1f} {unit}"
        number /= 1000
    return ""


def _rows(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:SHOWN_ROWS]))
    return f"row {shown}" if len(numbers) == 1 else f"rows {shown}" + (
        f" and {len(numbers) - SHOWN_ROWS} more" if len(numbers) > SHOWN_ROWS else "")


def store_upload(name: str, content: bytes) -> Path:
    """Keep an uploaded file in the kit's own folder, as UPLOAD_DIR/<hash of the bytes>/<its name>, and return
    that path: the same bytes always land at the same path, and messages about the file still give its name."""
    safe = "".join(c if c.isalnum() or c in "._- " else "_" for c in Path(str(name)).name).strip() or "upload.csv"
    if Path(safe).suffix.lower() not in FILE_SUFFIXES:
        raise DataFileError(f"{safe}: unknown kind of file {Path(safe).suffix!r}; upload a .csv, .jsonl, .json or "
                            ".parquet file")
    folder = UPLOAD_DIR.expanduser() / hashlib.sha256(content).hexdigest()[:HASH_DIGITS]
    path = folder / safe
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{safe}.partial"
        partial.write_bytes(content)
        partial.replace(path)  # whole or not at all
    return path


# ------------------------------------------------------------------------------------------------ reading
def _check_file(path: Path, name: str) -> str:
    """The datasets builder for the file (or "disk" for a saved folder), after the checks that need no parsing:
    it is there, of a known kind, not empty, not too large, and (text files) UTF-8."""
    if not path.exists():
        raise DataFileError(f"{name}: no such file or folder ({path.resolve()})")
    kind = "disk" if path.is_dir() else FILE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataFileError(f"{name}: unknown kind of file {path.suffix!r}; use .csv, .jsonl, .json, .parquet or a "
                            "folder saved with datasets' save_to_disk")
    if kind == "disk" and not any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")):
        raise DataFileError(f"{name}: this folder was not saved with datasets' save_to_disk (it has no "
                            "dataset_info.json or dataset_dict.json); give the path of a .csv, .jsonl or .parquet file")
    size = sum(p.stat().st_size for p in _files(path))
    if size == 0:
        raise DataFileError(f"{name}: the file is empty (0 bytes)")
    limit = max_file_bytes()
    if size > limit:
        raise DataFileError(f"{name}: the file is too large for this machine's memory ({_size(size)}; files up to "
                            f"{_size(limit)} are read, {RAM_FRACTION:.0%} of the memory available now): use a sample "
                            "of its rows")
    if kind in ("csv", "json"):
        data = path.read_bytes()
        if not data.strip():
            raise DataFileError(f"{name}: the file is empty (only {len(data)} bytes of white space)")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data[:error.start].count(b"\n") + 1
            where = f"line {line}" + (f" (row {line - 1} below the header)" if kind == "csv" and line > 1 else "")
            raise DataFileError(f"{name}: bytes that are not UTF-8 on {where}, byte {error.start} "
                                f"({data[error.start:error.start + 1]!r}): save the file as UTF-8 (in Excel: "
                                "'CSV UTF-8')") from None
    return kind


def _read_table(path: Path, name: str, kind: str):
    """The file as one in-memory `datasets.Dataset` (a saved DatasetDict's splits become a `split` column)."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if kind == "disk":
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
            if isinstance(loaded, datasets.DatasetDict):
                loaded = datasets.concatenate_datasets([part.add_column("split", [split] * len(part))
                                                        for split, part in loaded.items()])
            return loaded
        return datasets.load_dataset(kind, data_files=str(path), split="train", keep_in_memory=True)
    except Exception as error:  # a ragged CSV, broken JSON, a truncated Parquet file
        if "corresponds to no data" in str(error):  # datasets' word for a table of no rows
            raise DataFileError(f"{name}: the file has no rows (only a header?)") from None
        cause = error
        while cause.__cause__ is not None or cause.__context__ is not None:  # datasets wraps the parser's error
            cause = cause.__cause__ or cause.__context__
        what = "a saved data set" if kind == "disk" else kind.upper()
        raise DataFileError(f"{name}: could not be read as {what} ({type(cause).__name__}: "
                            f"{(str(cause).splitlines() or [''])[0][:200]})") from None


def _pick_column(name: str, columns: list[str], chosen: str | None, candidates: tuple, what: str,
                 setting: str) -> str:
    if chosen is not None:
        if chosen not in columns:
            raise DataFileError(f"{name}: {setting}={chosen!r} is not one of its columns {columns}")
        return chosen
    found = [c for c in columns if c.strip().lower() in candidates]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataFileError(f"{name}: no {what} column found among its columns {columns} (looked for "
                            f"{', '.join(candidates)}); name it with {setting}=...")
    raise DataFileError(f"{name}: more than one column could be the {what} ({', '.join(found)}) among its columns "
                        f"{columns}; choose one with {setting}=...")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label_names(name: str, labels: list, feature) -> tuple[list[str], list[int]]:
    """The class names (sorted) and each row's id. Text labels keep their text; whole numbers (1, or 1.0) their
    number; fractional numbers are refused: regression is not supported."""
    import datasets

    missing = [i + 1 for i, value in enumerate(labels) if _is_missing(value) or str(value).strip() == ""]
    if missing:
        raise DataFileError(f"{name}: {_rows(missing)} {'has' if len(missing) == 1 else 'have'} no label "
                            f"({len(missing)} row{'s' * (len(missing) != 1)} in all)")
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), list(labels)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        fractional = [i + 1 for i, v in enumerate(labels) if not float(v).is_integer()]
        if fractional:
            raise DataFileError(f"{name}: the labels are numbers with fractions ({labels[fractional[0] - 1]!r} on "
                                f"{_rows(fractional)}): regression is not supported; labels must be classes, as text "
                                "or whole numbers")
        values = sorted({int(v) for v in labels})
        to_id = {v: i for i, v in enumerate(values)}
        return [str(v) for v in values], [to_id[int(v)] for v in labels]
    texts = [str(v).strip() for v in labels]
    names = sorted(set(texts))
    to_id = {v: i for i, v in enumerate(names)}
    return names, [to_id[v] for v in texts]


@dataclass
class DataFile:
    """A learner's file, checked and split: what `data.load_file_splits` makes its `Splits` of."""

    name: str  # the file's name, as messages and `Splits.source` give it
    data_hash: str  # file_hash of the file
    parts: dict  # "train", "validation" and maybe "test" -> datasets.Dataset (text, label as ClassLabel)
    label_names: list[str]
    warnings: list[str]


def read_data_file(dataset: str, text_column: str | None = None, label_column: str | None = None) -> DataFile:
    """Read, check and split a learner's file or saved folder: see the module's docstring. Raises DataFileError;
    warns (DataWarning) of texts that sit in train and validation or test."""
    import datasets

    path = Path(dataset).expanduser()
    name = path.name or str(path)
    kind = _check_file(path, name)
    digest = file_hash(path)
    table = _read_table(path, name, kind)
    if len(table) == 0:
        raise DataFileError(f"{name}: the file has no rows (only a header?); its columns are {table.column_names}")
    columns = table.column_names
    text_column = _pick_column(name, columns, text_column, TEXT_COLUMNS, "text", "text_column")
    label_column = _pick_column(name, columns, label_column, LABEL_COLUMNS, "label", "label_column")
    if text_column == label_column:
        raise DataFileError(f"{name}: text_column and label_column are the same column {text_column!r}")

    texts = table[text_column]
    empty = [i + 1 for i, text in enumerate(texts) if _is_missing(text) or not str(text).strip()]
    if empty:
        raise DataFileError(f"{name}: empty text in column {text_column!r} on {_rows(empty)} "
                            f"({len(empty)} row{'s' * (len(empty) != 1)} in all): fill them in or delete them")
    texts = [str(text) for text in texts]
    label_names, label_ids = _label_names(name, table[label_column], table.features[label_column])
    counts = collections.Counter(label_ids)
    if len(counts) < 2:
        raise DataFileError(f"{name}: only one class ({label_names[label_ids[0]]!r}, {len(label_ids)} rows) in "
                            f"column {label_column!r}: a classifier needs at least two")

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=label_names)})
    whole = datasets.Dataset.from_dict({"text": texts, "label": label_ids}, features=features)
    split_column = next((c for c in columns if c.strip().lower() == "split"), None)
    if split_column is not None and split_column not in (text_column, label_column):
        parts = _given_splits(name, whole, table[split_column], label_names)
    else:
        parts = _carved_splits(name, whole, counts, label_names)
    found = _overlaps(name, parts)
    for message in found:
        warnings.warn(message, DataWarning, stacklevel=5)  # at the caller of data.load_splits
    return DataFile(name, digest, parts, label_names, found)


def _given_splits(name: str, whole, split_values: list, label_names: list[str]) -> dict:
    values = [str(v).strip().lower() if not _is_missing(v) else "" for v in split_values]
    unknown = sorted(set(values) - set(SPLIT_NAMES))
    if unknown:
        rows = [i + 1 for i, v in enumerate(values) if v in unknown]
        raise DataFileError(f"{name}: the split column holds {', '.join(map(repr, unknown))} on {_rows(rows)}; "
                            f"allowed are {', '.join(SPLIT_NAMES)}")
    for needed in ("train", "validation"):
        if needed not in values:
            raise DataFileError(f"{name}: the split column has no {needed!r} rows; it needs train and validation "
                                "rows (test is optional), or leave the column out to have them made for you")
    parts = {split: whole.select([i for i, v in enumerate(values) if v == split])
             for split in SPLIT_NAMES if split in values}
    have = collections.Counter(parts["train"]["label"])
    for i, label in enumerate(label_names):
        if not have[i]:
            raise DataFileError(f"{name}: class {label!r} has 0 rows in the train split; each class needs at least "
                                "1 there")
    return parts


def _carved_splits(name: str, whole, counts: collections.Counter, label_names: list[str]) -> dict:
    """15% of each class to validation, 15% to test, the rest to train: the same rows every time."""
    for i, label in enumerate(label_names):
        if counts[i] < MIN_ROWS_PER_CLASS:
            raise DataFileError(f"{name}: class {label!r} has {counts[i]} row{'s' * (counts[i] != 1)}; each class "
                                f"needs at least {MIN_ROWS_PER_CLASS} to be split into train, validation "
                                f"({VALIDATION_FRACTION:.0%}) and test ({TEST_FRACTION:.0%}), or give a split column")
    first = whole.train_test_split(test_size=TEST_FRACTION, seed=SPLIT_SEED, stratify_by_column="label")
    second = first["train"].train_test_split(test_size=VALIDATION_FRACTION / (1 - TEST_FRACTION), seed=SPLIT_SEED,
                                             stratify_by_column="label")
    return {"train": second["train"], "validation": second["test"], "test": first["test"]}


def _overlaps(name: str, parts: dict) -> list[str]:
    """Warnings for texts that sit in train and in validation (or test): the score there is not on unseen text."""
    seen = {" ".join(t.lower().split()) for t in parts["train"]["text"]}
    found = []
    for split in ("validation", "test"):
        if split in parts:
            same = sum(" ".join(t.lower().split()) in seen for t in parts[split]["text"])
            if same:
                found.append(f"{name}: {same} of {len(parts[split])} {split} texts are also in train (the same "
                             f"words, case and spacing aside): the {split} score is partly on texts the model "
                             "trained on")
    return found


# ------------------------------------------------------------------------------------------------ summary
@dataclass
class DataSummary:
    """What a run's data holds, before any run: rows per split and class, lengths, truncation, warnings."""

    source: str
    label_names: list[str]
    rows: dict[str, dict[str, int]]  # split -> class name -> rows
    median_words: float
    median_tokens: float | None = None  # with a tokenizer
    max_length: int | None = None
    truncated: int | None = None  # texts longer than max_length tokens (all splits), with a tokenizer
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        header = ["split", *self.label_names, "all"]
        table = [header] + [[split, *(str(by_class.get(n, 0)) for n in self.label_names), str(sum(by_class.values()))]
                            for split, by_class in self.rows.items()]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        out = [f"data: {self.source}"]
        out += ["  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
        length = f"median length: {self.median_words:g} words"
        if self.median_tokens is not None:
            length += f", {self.median_tokens:g} tokens"
        if self.truncated is not None:
            length += f"; {self.truncated} text{'s' * (self.truncated != 1)} longer than max_length={self.max_length}"
        out.append(length)
        out += [f"warning: {w}" for w in self.warnings]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def html(self) -> str:
        import html as escape

        head = "".join(f"<th style='padding:0 8px'>{escape.escape(n)}</th>" for n in [*self.label_names, "all"])
        body = "".join(
            f"<tr><td>{split}</td>" + "".join(f"<td style='text-align:right;padding:0 8px'>{by_class.get(n, 0)}</td>"
                                              for n in self.label_names)
            + f"<td style='text-align:right;padding:0 8px'>{sum(by_class.values())}</td></tr>"
            for split, by_class in self.rows.items())
        lines = [f"<b>Data:</b> {escape.escape(self.source)}",
                 f"<table><tr><th></th>{head}</tr>{body}</table>", escape.escape(self.lines()[-1 - len(self.warnings)])]
        lines += [f"<span style='color:#b35c00'>&#9888; {escape.escape(w)}</span>" for w in self.warnings]
        return "<br>".join(lines)


def summarize(splits, tokenizer=None, max_length: int = 64) -> DataSummary:
    """Rows per split and class, the median length (words; tokens too with a tokenizer), how many texts a
    `max_length` cut shortens (with a tokenizer; a DataWarning when any), and the warnings of loading.

        print(summarize(splits_for(cfg), load_tokenizer(cfg.model_name), cfg.max_length))
    """
    parts = {split: getattr(splits, split) for split in SPLIT_NAMES if getattr(splits, split) is not None}
    rows = {split: {splits.label_names[i]: n for i, n in sorted(collections.Counter(part["label"]).items())}
            for split, part in parts.items()}
    texts = [text for part in parts.values() for text in part["text"]]
    summary = DataSummary(splits.source, list(splits.label_names), rows,
                          float(statistics.median(len(t.split()) for t in texts)), warnings=list(splits.warnings))
    if tokenizer is not None:
        lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
        summary.median_tokens = float(statistics.median(lengths))
        summary.max_length = max_length
        summary.truncated = sum(n > max_length for n in lengths)
        if summary.truncated:
            message = (f"{splits.source.split(':', 1)[-1].split('@')[0]}: {summary.truncated} of {len(texts)} texts "
                       f"are longer than max_length={max_length} tokens (the longest: {max(lengths)}) and are cut "
                       "there")
            summary.warnings.append(message)
            warnings.warn(message, DataWarning, stacklevel=2)
    return summary
