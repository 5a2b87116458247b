"""The panel in a real browser: JupyterLab in Debian's Chromium, driven by Playwright.

Opens a notebook with the panel, runs it, moves the learning-rate slider with the keyboard, clicks Run,
waits until the curve picture changes and the verdict appears, and saves screenshots next to the test's
temporary files (and into $LMTUNE_SCREENSHOTS when set). In CI a missing browser fails the test.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PANEL_CELL = """from lmtune_widgets import TuningPanel
panel = TuningPanel(max_train_samples=64, max_eval_samples=64, num_train_epochs=1, freeze_layers=5)
panel"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(root: Path, *cells: str) -> Path:
    """root/panel.ipynb with these code cells, for the default python3 kernel."""
    root.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "panel.ipynb")
    return root / "panel.ipynb"


RECORDED_CELL = """from lmtune_widgets import TuningPanel
panel = TuningPanel()  # the defaults: recorded with 5 seeds in the bundled atlas
panel"""


@pytest.fixture
def lab(tmp_path, request):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser test and was not found at {CHROMIUM} "
                    "(.ci/run installs it: apt-get install chromium)")
    root = tmp_path / "root"
    write_notebook(root, getattr(request, "param", PANEL_CELL))
    settings = tmp_path / "settings"
    for plugin, values in {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                           {"fetchNews": "false", "checkForUpdates": False},
                           "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False}}.items():
        path = settings / plugin
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), "lmtune-test"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                               f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
                               "--LabApp.news_url=None"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "lab.log", "w"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
        yield f"http://127.0.0.1:{port}/lab/tree/panel.ipynb?token={token}"
    finally:
        _stop(server)


def test_panel_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import expect

    shots = [tmp_path / "panel-before.png", tmp_path / "panel-after.png"]
    with chromium_page(1400, 1900) as page:
        page.goto(lab)
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=90_000)
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        slider = page.locator(".jp-OutputArea .widget-slider").first
        slider.wait_for(timeout=120_000)
        readout = page.locator(".jp-OutputArea .widget-slider .widget-readout").first
        before_value = readout.inner_text()
        handle = page.locator(".jp-OutputArea .widget-slider .noUi-handle").first
        handle.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        expect(readout).not_to_have_text(before_value, timeout=10_000)
        curves = page.locator(".jp-OutputArea img.widget-image").nth(1)
        old_src = curves.get_attribute("src")
        page.screenshot(path=str(shots[0]), full_page=True)
        page.locator("button.jupyter-button:has-text('Run')").first.click()
        expect(curves).not_to_have_attribute("src", old_src, timeout=120_000)
        verdict = page.locator(".jp-OutputArea").get_by_text(
            __import__("re").compile("GOOD FIT|UNDERFITTING|OVERFITTING|DIVERGED"))
        expect(verdict.first).to_be_visible(timeout=180_000)
        expect(page.locator(".jp-OutputArea td", has_text="learning rate=").first).to_be_visible()
        page.screenshot(path=str(shots[1]), full_page=True)
    for shot in shots:
        assert shot.stat().st_size > 20_000
        if os.environ.get("LMTUNE_SCREENSHOTS"):
            Path(os.environ["LMTUNE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["LMTUNE_SCREENSHOTS"]) / shot.name)


def run_all_until_recorded(page, idle: str):
    """Run every cell once the kernel is idle (the selector `idle` says so), then wait for the panel's recorded band:
    the "Recorded:" text, the curves image and the picture it shows."""
    from playwright.sync_api import expect

    page.wait_for_selector(idle, timeout=90_000)
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    recorded = page.locator(".jp-OutputArea").get_by_text("Recorded:")
    expect(recorded.first).to_be_visible(timeout=120_000)
    curves = page.locator(".jp-OutputArea img.widget-image").nth(1)
    return recorded, curves, curves.get_attribute("src")


@pytest.mark.parametrize("lab", [RECORDED_CELL], indirect=True)
def test_recorded_band_in_jupyterlab(lab, tmp_path):
    """On recorded settings the panel shows their seed band at once, without training; one slider step away it says
    they are not recorded; one step back, the band again."""
    from playwright.sync_api import expect

    shot = tmp_path / "panel-recorded.png"
    with chromium_page(1400, 1900) as page:
        page.goto(lab)
        recorded, curves, band_src = run_all_until_recorded(page, "#jp-main-statusbar >> text=Idle")
        handle = page.locator(".jp-OutputArea .widget-slider .noUi-handle").first  # the learning rate
        handle.focus()
        page.keyboard.press("ArrowRight")
        expect(page.locator(".jp-OutputArea").get_by_text("These settings are not recorded").first).to_be_visible(
            timeout=20_000)
        expect(curves).not_to_have_attribute("src", band_src, timeout=20_000)
        empty_src = curves.get_attribute("src")
        t = time.perf_counter()
        page.keyboard.press("ArrowLeft")
        expect(curves).not_to_have_attribute("src", empty_src, timeout=20_000)  # the band, drawn again
        print(f"band shown {time.perf_counter() - t:.2f} s after the key press (browser round trip included)")
        expect(recorded.first).to_be_visible()
        # nothing was trained: the history table (the one with borders; the data's summary is a table too) is empty
        assert page.locator(".jp-OutputArea table[border='1'] td").count() == 0
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("LMTUNE_SCREENSHOTS"):
        Path(os.environ["LMTUNE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["LMTUNE_SCREENSHOTS"]) / shot.name)


# ------------------------------------------------------------------------------------------ Voila app mode, Notebook 7
ROOT = Path(__file__).resolve().parent.parent
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
# A share string for the app: small enough that a click on Run trains in seconds.
APP_SETTINGS = '{"max_train_samples":32,"max_eval_samples":32,"num_train_epochs":1,"freeze_layers":5}'


@contextmanager
def chromium_page(width: int, height: int):
    """A page of Debian's Chromium (Playwright, no browser download), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def serve_notebook(command: list[str], app: str, root: Path, log: Path, env: dict):
    """A Jupyter Notebook server (`app`: "ServerApp" for Notebook 7, "NotebookApp" for the classic one) on a free
    port with a token, serving `root`. Returns the process and the address of root's panel.ipynb."""
    port, token = free_port(), "lmtune-test"
    folder = "root_dir" if app == "ServerApp" else "notebook_dir"
    server = _serve([*command, "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--{app}.token={token}",
                     f"--{app}.{folder}={root}", "--allow-root"], f"http://127.0.0.1:{port}/api/status?token={token}",
                    log, env)
    return server, f"http://127.0.0.1:{port}/notebooks/panel.ipynb?token={token}"


def _serve(command: list[str], probe: str, log: Path, env: dict):
    """Start a server; wait until `probe` answers at all (any HTTP status). Returns the process."""
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(probe, timeout=2)
            return server
        except urllib.error.HTTPError:  # an answer, even 404: the server is up
            return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.5)
    server.terminate()
    pytest.fail(f"{command[2]} did not start: " + log.read_text()[-2000:])


def _stop(server) -> None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


def _keep(*shots: Path) -> None:
    for shot in shots:
        assert shot.stat().st_size > 20_000
        if os.environ.get("LMTUNE_SCREENSHOTS"):
            Path(os.environ["LMTUNE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["LMTUNE_SCREENSHOTS"]) / shot.name)


def test_make_app_serves_the_panel_with_voila(tmp_path):
    """`make app`'s notebook in Voila: widgets only, no code; moving a control redraws the plan, Run trains and the
    curve picture changes."""
    import re

    from playwright.sync_api import expect

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser test and was not found at {CHROMIUM}")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^app: setup\n\t.*voila notebooks/app\.ipynb", makefile, re.MULTILINE), "make app must serve the app"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LMTUNE_APP_SETTINGS": APP_SETTINGS}
    server = _serve([sys.executable, "-m", "voila", str(ROOT / "notebooks" / "app.ipynb"), "--no-browser",
                     f"--port={port}", "--Voila.ip=127.0.0.1"], f"http://127.0.0.1:{port}/favicon.ico",
                    tmp_path / "voila.log", env)  # not "/": every page load runs the notebook
    shots = [tmp_path / "app-before.png", tmp_path / "app-after.png"]
    try:
        with chromium_page(1400, 1600) as page:
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            slider = page.locator(".widget-slider").first
            slider.wait_for(timeout=120_000)
            assert page.get_by_text("TuningPanel(").count() == 0  # no code showing
            schedule = page.locator("img.widget-image").first
            expect(schedule).to_have_attribute("src", re.compile("^blob:|^data:"), timeout=30_000)
            readout = page.locator(".widget-slider .widget-readout").first
            before_value, old_plan = readout.inner_text(), schedule.get_attribute("src")
            page.locator(".widget-slider .noUi-handle").first.focus()  # the learning rate
            page.keyboard.press("ArrowRight")
            expect(readout).not_to_have_text(before_value, timeout=10_000)
            expect(schedule).not_to_have_attribute("src", old_plan, timeout=20_000)  # the planned rates, redrawn
            curves = page.locator("img.widget-image").nth(1)
            old_src = curves.get_attribute("src")
            page.screenshot(path=str(shots[0]), full_page=True)
            page.locator("button.jupyter-button:has-text('Run')").first.click()
            expect(curves).not_to_have_attribute("src", old_src, timeout=120_000)
            verdict = page.get_by_text(re.compile("GOOD FIT|UNDERFITTING|OVERFITTING|DIVERGED"))
            expect(verdict.first).to_be_visible(timeout=180_000)
            expect(page.locator("td", has_text="learning rate=").first).to_be_visible()
            page.screenshot(path=str(shots[1]), full_page=True)
    finally:
        _stop(server)
    _keep(*shots)


def test_panel_in_notebook_7(tmp_path):
    """The panel in Jupyter Notebook 7: the defaults' recorded band shows without training, and one step of the
    learning-rate slider changes the picture (these settings are not recorded)."""
    from playwright.sync_api import expect

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser test and was not found at {CHROMIUM}")
    root = tmp_path / "root"
    write_notebook(root, RECORDED_CELL)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}  # no news or update checks from a user's own settings
    server, address = serve_notebook([sys.executable, "-m", "notebook"], "ServerApp", root, tmp_path / "notebook.log",
                                     env)
    shots = [tmp_path / "notebook7-recorded.png", tmp_path / "notebook7-moved.png"]
    try:
        with chromium_page(1400, 1700) as page:
            page.goto(address)
            # Run All only once the kernel is up: earlier, Notebook 7 drops the command
            _, curves, band_src = run_all_until_recorded(page, ".jp-Notebook-ExecutionIndicator[data-status='idle']")
            readout = page.locator(".jp-OutputArea .widget-slider .widget-readout").first
            assert readout.inner_text() == "5.0e-4"
            page.screenshot(path=str(shots[0]), full_page=True)
            # In Notebook 7 the slider's handle ignores the arrow keys (JupyterLab's do not): click its track
            track = page.locator(".jp-OutputArea .widget-slider .noUi-target").first  # the learning rate
            box = track.bounding_box()
            track.click(position={"x": box["width"] * 0.8, "y": box["height"] / 2})
            expect(readout).not_to_have_text("5.0e-4", timeout=10_000)
            expect(page.locator(".jp-OutputArea").get_by_text("These settings are not recorded").first
                   ).to_be_visible(timeout=20_000)
            expect(curves).not_to_have_attribute("src", band_src, timeout=20_000)
            page.screenshot(path=str(shots[1]), full_page=True)
    finally:
        _stop(server)
    _keep(*shots)
