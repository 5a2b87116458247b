"""Build a virtual environment that holds Colab's own package versions, to test the kit where learners are.

    python tests/stacks/build_stack.py .venv-colab          # what `make test` runs before the tests (once)

`colab-gpu-2026-08-19.txt` is Colab's GPU runtime as published (googlecolab/backend-info, commit a724079,
Python 3.13). This machine has Python 3.11 only, and no PyTorch 2.11 CPU wheel, so the environment is:
- this Python, and `torch==2.13.0` (the CPU wheel, the nearest to Colab's torch 2.11.0+cu128 that installs here);
- every other package the kit imports or uses, at Colab's version: the freeze is the constraint file, so pip can
  take no other version of anything Colab ships (transformers 5.15.0, datasets 4.0.0, peft 0.20.0,
  matplotlib 3.10.0, numpy 2.1.3, ipywidgets 7.7.1, notebook 6.5.7, ipykernel 6.17.1, ipython 7.34.0, ...);
- the tools that run the tests there (pytest and papermill, both pinned by the freeze or added where Colab has
  none); not the kit: `tests/test_colab_stack.py` installs the kit's wheel into it, as a learner's
  `%pip install` would, after checking that the install replaces nothing.

Lines that cannot install here are left out of the constraints: packages given by URL or git, and the CUDA
builds (torch and its family, nvidia-*, triton, cupy, cuda-*). Colab's setuptools (75.2) is left out too: torch
2.13 needs 77 or newer to install, and the kit does not use it.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FREEZE = HERE / "colab-gpu-2026-08-19.txt"
TORCH = "torch==2.13.0"  # the CPU wheel on the kit's build machine; Colab has 2.11.0+cu128
# Installs here only as a CUDA build, or by URL: left out of the constraints
NOT_HERE = re.compile(r"^(torch|torchvision|torchaudio|torchcodec|torchao|torchdata|torchtune|torchsummary|triton|"
                      r"nvidia-.*|cuda-.*|cupy-.*|setuptools)$", re.I)
# What the kit and its tests use from Colab's stack (the rest of it stays out: it is not needed to test the kit)
WANTED = ["transformers", "datasets", "peft", "accelerate", "matplotlib", "numpy", "ipywidgets", "widgetsnbextension",
          "ipython", "ipykernel", "notebook", "jupyter_client", "traitlets", "tornado", "sentence-transformers",
          "huggingface_hub", "tokenizers", "safetensors", "tqdm", "sqlalchemy", "pyyaml", "requests", "packaging",
          "pandas", "pyarrow", "scipy", "scikit-learn", "pillow", "nbformat", "nbclient", "psutil",
          "pytest", "papermill"]


def name(requirement: str) -> str:
    """The normalised project name of a requirement line ('Jinja2==3.1.6' -> 'jinja2')."""
    return re.split(r"[\s<>=!~\[;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def colab_packages() -> dict[str, str]:
    """Every package in Colab's freeze that pip can pin here: name -> version."""
    pins = {}
    for line in FREEZE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line or NOT_HERE.match(name(line)):
            continue
        package, version = line.split("==", 1)
        pins[name(package)] = version.strip()
    return pins


def colab_torch() -> str:
    """The torch release Colab ships ('2.11.0' of '2.11.0+cu128'): the kit's torch floor."""
    line = next(l for l in FREEZE.read_text().splitlines() if name(l) == "torch")
    return line.split("==", 1)[1].split("+", 1)[0].strip()


def write_constraints(path: Path) -> Path:
    pins = colab_packages()
    path.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())) + f"{TORCH}\n")
    return path


def kit_requirements() -> list[str]:
    """The kit's own requirements, as pyproject.toml states them."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def floors() -> dict[str, str]:
    """The lowest version pyproject.toml allows of each requirement: name -> version (from `>=`)."""
    found = {}
    for requirement in kit_requirements():
        match = re.search(r">=\s*([\w.]+)", requirement)
        if match:
            found[name(requirement)] = match.group(1)
    return found


def colab_part_of(python: str, constraints: Path) -> list[str]:
    """The packages of Colab's stack that the kit's requirements reach: what pip would take to install them with
    Colab's versions, less what pip would have to fetch from outside Colab's list."""
    out = subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "install", "--dry-run", "-q",
                          "--report", "-", "-c", str(constraints), *kit_requirements()],
                         check=True, capture_output=True, text=True).stdout
    pins = colab_packages()
    wanted = [name(item["metadata"]["name"]) for item in json.loads(out)["install"]]
    return [f"{n}=={pins[n]}" for n in wanted if n in pins]


def quiet(command: list[str]) -> None:
    """Run a pip command; its output is shown only when it fails (pip warns about this machine's local indexes)."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")


def build(folder: Path) -> None:
    folder = folder.resolve()
    python = folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if folder.exists():  # always Colab's stack as it comes: the tests install the kit into it, so never build on top
        shutil.rmtree(folder)
    venv.EnvBuilder(with_pip=True).create(folder)
    python = str(python)
    constraints = write_constraints(folder / "colab-constraints.txt")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    quiet(pip + [TORCH])
    quiet(pip + ["-c", str(constraints)] + WANTED)
    # Colab also ships some of what the kit's own requirements need (Mako, for optuna's alembic): as it comes there
    reached = colab_part_of(python, constraints)
    if reached:
        quiet(pip + ["-c", str(constraints)] + reached)
    quiet([python, "-Xfrozen_modules=off", "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"])
    quiet([python, "-m", "pip", "check"])
    print(f"{folder.name}: Colab's stack ({FREEZE.name}) with {TORCH}, {len(reached)} more of Colab's packages that "
          "the kit's requirements reach")
    (folder / ".stack-built").write_text(FREEZE.name + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else ".venv-colab"))
