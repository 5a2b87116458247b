"""An atlas of other data: the grids on another data set, recorded into a folder of one's own; that folder read back
by `atlas.load(folder=...)`, drawn as bands by `TuningPanel(atlas=FOLDER)`, and judged claim by claim by
`python -m lmtune_widgets evidence --atlas FOLDER`."""
import json
import re

import pytest

from lmtune_widgets import FineTuneConfig, atlas, cli


def copied(folder, sections=("defaults",), dataset=None):
    """A folder holding the bundled atlas's records of `sections` (on `dataset`, when given: as if recorded there)."""
    folder.mkdir(exist_ok=True)
    records = [json.loads(line) for path in sorted(atlas.atlas_dir().glob("cpu-*.jsonl"))
               for line in path.read_text().splitlines()]
    lines = [json.dumps({**r, "config": {**r["config"], **({"dataset": dataset} if dataset else {})}})
             for r in records if r["section"] in sections]
    (folder / "cpu-shard1of1.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_the_grid_on_other_data_is_the_same_runs_on_that_data():
    bundled = [(s, c) for s, c in atlas.grid() if c.task == FineTuneConfig().task]
    other = atlas.grid(dataset="reviews.csv")
    assert [(s, c.replace(dataset=None)) for s, c in other] == bundled  # the topic task's runs are the same runs there
    assert {c.dataset for _, c in other} == {"reviews.csv"}
    lessons = [c for s, c in other if s.startswith("lessons")]
    assert lessons and all(c.task == "sentiment" for c in lessons)
    named = atlas.grid(dataset="tickets.csv", text_column="ticket", label_column="queue")  # columns not found by name
    assert [c for _, c in named] == [c.replace(dataset="tickets.csv", text_column="ticket", label_column="queue")
                                     for _, c in other]


def test_record_takes_the_data_the_grids_and_the_folder_from_the_command_line(monkeypatch, tmp_path, capsys):
    asked = []
    monkeypatch.setattr(atlas, "record", lambda **kwargs: asked.append(kwargs) or 0)
    assert cli.main(["record", "--dataset", "reviews.csv", "--grid", "lessons", "--grid", "one-knob", "--out",
                     str(tmp_path), "--backend", "ray", "--address", "auto", "--threads", "2", "--quiet",
                     "--text-column", "review", "--label-column", "stars"]) == 0
    assert asked == [dict(shard=(1, 1), threads=2, sections=["lessons", "one knob"], limit=None, quiet=True,
                          backend="ray", address="auto", folder=str(tmp_path), dataset="reviews.csv",
                          text_column="review", label_column="stars")]
    assert cli.main(["record", "--address", "auto"]) == 2
    assert "--address is where a Ray cluster is: add --backend ray" in capsys.readouterr().err
    assert cli.main(["record", "--grid", "everything"]) == 2


def test_a_folder_of_ones_own_is_read_and_drawn_by_the_panel(tmp_path):
    from lmtune_widgets import TuningPanel

    folder = copied(tmp_path / "mine")
    book = atlas.load(folder=folder)
    assert len(book) == 10 and {c.task for c in book.configs()} == {"sentiment", "topic"}
    panel = TuningPanel(atlas=folder)  # the defaults: recorded there
    assert len(panel.recorded) == 5 and "Recorded:" in panel.recorded_html.value
    panel.controls["learning_rate"].value = 10 ** -3.0  # recorded in the bundled atlas, not in this folder
    assert panel.recorded == [] and "not recorded" in panel.recorded_html.value
    assert len(TuningPanel(atlas=book, task="topic").recorded) == 5  # a Book works as well as its folder


@pytest.fixture(scope="module")
def defaults_only(tmp_path_factory):
    return copied(tmp_path_factory.mktemp("defaults"))


def test_evidence_on_a_few_records_judges_what_they_can(defaults_only, capsys):
    assert cli.main(["evidence", "--atlas", str(defaults_only)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"10 recorded runs in {defaults_only} (cpu; on the bundled data)")
    assert "held        00.seed_spread\n" in out and "not judged  01.too_low: not recorded: " in out
    assert "not judged  00.two_noises: not recorded: {'data_seed': 1}" in out  # an empty lookup, not an error
    counts = re.fullmatch(r"(\d+) claims: (\d+) held, (\d+) not held, (\d+) not judged \(runs not recorded\)",
                          out.splitlines()[-1])
    claims, held, not_held, not_judged = map(int, counts.groups())
    assert held >= 2 and not_judged > 40 and claims == held + not_held + not_judged == len(cli_claims())


def test_evidence_on_an_atlas_of_other_data_looks_its_runs_up_on_that_data(defaults_only, tmp_path, capsys):
    folder = copied(tmp_path / "other", dataset="reviews.csv")
    assert cli.main(["evidence", "--atlas", str(folder)]) == 0
    on_other = capsys.readouterr().out
    assert on_other.startswith(f"10 recorded runs in {folder} (cpu; on reviews.csv)")
    assert cli.main(["evidence", "--atlas", str(defaults_only)]) == 0
    on_bundled = capsys.readouterr().out
    assert on_other.splitlines()[1:] == on_bundled.splitlines()[1:]  # the same records: the same verdicts
    (folder / "cpu-more.jsonl").write_text((defaults_only / "cpu-shard1of1.jsonl").read_text())
    assert cli.main(["evidence", "--atlas", str(folder)]) == 2  # two data sets in one folder: which one?
    assert "pick one with --dataset" in capsys.readouterr().err
    assert cli.main(["evidence", "--atlas", str(folder), "--dataset", "reviews.csv"]) == 0


def test_evidence_on_the_bundled_atlas_holds_every_claim(capsys):
    assert cli.main(["evidence", "--atlas", str(atlas.atlas_dir())]) == 0
    n = len(cli_claims())
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"{n} claims: {n} held, 0 not held, 0 not judged (runs not recorded)"


def test_evidence_exits_2_only_on_a_folder_that_is_not_an_atlas(tmp_path, capsys):
    assert cli.main(["evidence", "--atlas", str(tmp_path / "absent")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["evidence", "--atlas", str(tmp_path)]) == 2
    assert "holds no recorded runs (cpu-*.jsonl)" in capsys.readouterr().err
    (tmp_path / "cpu-notes.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    assert cli.main(["evidence", "--atlas", str(tmp_path)]) == 2
    assert "is not a recorded run" in capsys.readouterr().err


def cli_claims():
    from lmtune_widgets import evidence

    return evidence.CLAIMS
