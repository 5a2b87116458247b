"""Every lesson claim holds on the recorded runs, each claim can fail, and every lesson checks its own claims."""
import copy
from pathlib import Path

import nbformat
import pytest

from lmtune_widgets import atlas, evidence

NOTEBOOKS = {p.stem[:2]: p for p in (Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")}


def _records():
    return [r for path in sorted(atlas.atlas_dir().glob("cpu-*.jsonl")) for r in atlas._read(path)]


@pytest.mark.parametrize("claim_id", sorted(evidence.CLAIMS))
def test_every_lesson_claim_holds_on_the_recorded_runs(claim_id):
    [finding] = evidence.check(claim_id)
    assert finding.holds, str(finding)
    assert finding.evidence and all(line.strip() for line in finding.evidence)


def test_a_claim_fails_when_the_runs_say_otherwise():
    records = copy.deepcopy(_records())
    for record in records:  # the lowest learning rate now scores like the best: "too low underfits" must fail
        if {k: v for k, v in record["config"].items() if k != "seed"} == {"learning_rate": 1e-05}:
            record["kept"]["validation_accuracy"] = 0.95
    [finding] = evidence.check("01.too_low", atlas.Book(records))
    assert not finding.holds and any("higher" in line for line in finding.evidence), str(finding)


def test_a_claim_without_its_runs_does_not_hold_and_says_what_is_missing():
    records = [r for r in _records() if r["config"].get("learning_rate") != 5e-3]
    [finding] = evidence.check("01.too_high", atlas.Book(records))
    assert not finding.holds and "not recorded" in finding.evidence[0], str(finding)
    with pytest.raises(AssertionError, match="01.too_high"):
        evidence.assert_claims("01", atlas.Book(records))


def test_an_unknown_lesson_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="no claim or lesson '99'.*01"):
        evidence.check("99")


def test_every_lesson_checks_its_own_claims_in_its_last_code_cell():
    lessons_with_claims = {c.lesson for c in evidence.CLAIMS.values()}
    assert lessons_with_claims <= set(NOTEBOOKS), lessons_with_claims - set(NOTEBOOKS)
    for lesson in lessons_with_claims:
        code = [c for c in nbformat.read(NOTEBOOKS[lesson], as_version=4).cells if c.cell_type == "code"]
        assert f'lessons.check_claims("{lesson}")' in code[-1].source, NOTEBOOKS[lesson].name


def test_the_claims_come_in_the_lessons_order():
    lessons = [c.lesson for c in evidence.CLAIMS.values()]
    assert lessons == sorted(lessons), lessons


def test_a_grid_name_moved_to_the_atlas_still_works_from_evidence_with_a_warning():
    with pytest.warns(DeprecationWarning, match="lmtune_widgets.atlas.FREEZE_RATES"):
        assert evidence.FREEZE_RATES is atlas.FREEZE_RATES == atlas.LESSON_GRIDS["freeze_x_lr"][1]["learning_rate"]
    with pytest.raises(AttributeError):
        evidence.NO_SUCH_GRID


def test_no_claim_picks_its_best_rate_at_an_edge_of_its_grid():
    assert evidence.best_at_an_edge() == []


def test_a_best_rate_at_an_edge_of_its_grid_is_found(monkeypatch):
    # from scratch, the lesson grid as first recorded (1e-4 to 2e-3) had its best at its lowest rate
    monkeypatch.setattr(atlas, "SCRATCH_RATES", atlas.SCRATCH_RATES_FIRST)
    found = evidence.best_at_an_edge(which={"07.pretraining"})
    assert len(found) == 1 and found[0].startswith("07.pretraining: best rate 0.0001 is an edge of 0.0001, 0.0005")
