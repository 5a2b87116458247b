"""Every lesson notebook executes under papermill and writes its results.

`make test` runs them with QUICK=True (seconds per run; the lessons are not asserted). `make test-lessons`
sets LMTUNE_LESSONS=full: QUICK=False, as learners run them, with each notebook's final lesson assertions.
With LMTUNE_EXECUTED=<folder>, the executed notebooks are kept there to be read.
"""
import json
import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FULL = os.environ.get("LMTUNE_LESSONS") == "full"


def test_there_are_lessons():
    numbers = [int(p.stem[:2]) for p in NOTEBOOKS]
    assert numbers[:9] == list(range(9)), numbers  # the seven hyperparameters, from 00 to 08
    assert len(set(numbers)) == len(numbers), numbers


def committed_clean(path):
    """The notebook and its code cells, after checking they were committed without outputs."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "committed with outputs"
    return nb, code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_a_parameters_cell(path):
    nb, code = committed_clean(path)
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "needs exactly one cell tagged 'parameters'"
    assert "QUICK = False" in parameters[0].source and "RESULTS_PATH" in parameters[0].source
    assert nb.cells[0].cell_type == "markdown" and "colab-badge" in nb.cells[0].source
    assert "google.colab" in code[0].source  # installs the kit only in Colab
    for cell in code:  # plumbing belongs in the package
        assert len(cell.source.splitlines()) <= 15, cell.source[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    import papermill

    results = tmp_path / f"{path.stem}.json"
    parameters = {"QUICK": not FULL, "RESULTS_PATH": str(results), "PREDICTION": "good fit"}
    output = Path(os.environ.get("LMTUNE_EXECUTED", tmp_path)) / path.name
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(path), str(output), parameters=parameters, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False, execution_timeout=900)
    data = json.loads(results.read_text())
    assert data["quick"] is (not FULL)
    executed = nbformat.read(output, as_version=4)
    pictures = sum("image/png" in o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert pictures >= 2, "an executed lesson shows static figures"
    shown = json.dumps([c.outputs for c in executed.cells if c.cell_type == "code"])
    for noise in ("LOAD REPORT", "newly initialized", "Loading weights", "de-quantizing"):  # libraries' own reports
        assert noise not in shown, f"{path.stem} shows a library's load report: {noise!r}"
    if path.stem == "00_start_here":
        assert set(data["preset_verdicts"]) == {"underfit", "good", "overfit", "diverge"}
    if path.stem == "01_learning_rate":
        assert [row["learning_rate"] for row in data["sweep"]] == [1e-5, 3.2e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3]
        assert all(row["seeds"] >= 3 for row in data["sweep"])  # recorded seeds, the same in QUICK mode
        assert 1e-7 <= data["suggestion"] <= 1.0
    if path.stem == "09_llms_and_lora":  # the bundled LLM ran for real: LoRA trains far fewer weights
        assert data["steps"]["batch"] == data["steps"]["accumulated"] >= 1
        assert 0.0 <= data["zero_shot_accuracy"] <= 1.0 and 0.0 <= data["lora_accuracy"] <= 1.0
        assert 0 < data["methods"][0]["trainable"] < data["methods"][1]["trainable"]


APP = NOTEBOOKS[0].parent / "app.ipynb"


def test_the_app_notebook_is_committed_clean_and_starts_from_its_settings_parameter(tmp_path):
    """The Voila page (`make app`) takes its starting settings as a parameter; a bad one is named, not ignored."""
    import papermill

    _, code = committed_clean(APP)
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])] == code[:1]
    run = lambda settings: papermill.execute_notebook(str(APP), str(tmp_path / "app.ipynb"), parameters={"SETTINGS": settings},
                                                      kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    run('{"learning_rate": 0.001}')
    with pytest.raises(papermill.PapermillExecutionError, match="learning_rate"):
        run('{"learning_rate": 5}')
