"""What every benchmark shares: the --smoke and --out options, the machine's facts, and the results file.

A benchmark writes its figures to `benchmarks/results/<name>.json` (or `--out PATH`); `benchmarks/report.py`
turns those files into the tables of `benchmarks/README.md`. `--smoke` does the same work at a tiny size, in
seconds (tests/test_benchmarks.py runs every benchmark so), and never writes over the committed files: without
`--out` its file goes to the temporary folder.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

# The tiny run of MiniLM every smoke mode uses: one epoch of 2 steps, evaluated once, the features of 5 layers frozen.
SMOKE = dict(max_train_samples=32, max_eval_samples=32, num_train_epochs=1, freeze_layers=5, evals_per_epoch=1)

# Child processes run offline and import the kit from this checkout (not whatever is installed elsewhere).
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    made = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    made.add_argument("--smoke", action="store_true", help="the same work at a tiny size, in seconds (for tests)")
    made.add_argument("--out", help="write the results here (default: benchmarks/results/<name>.json; with "
                                    "--smoke, the temporary folder)")
    return made


def out_path(name: str, args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.smoke:  # never over the committed figures
        return Path(tempfile.gettempdir()) / "lmtune-bench-smoke" / f"{name}.json"
    return RESULTS / f"{name}.json"


def cpu_model() -> str:
    """The kit's own reading of the CPU's name (imported when a result is written: the measuring is over by then)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from lmtune_widgets.devices import cpu_name

    return cpu_name()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions() -> dict[str, str]:
    """Versions without importing anything heavy (a benchmark's parent process stays light)."""
    found = {"python": platform.python_version()}
    for package in ("torch", "transformers", "lmtune-widgets"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def median(values) -> float:
    return statistics.median(list(values))


def write(name: str, args: argparse.Namespace, medians: dict, ratios: dict, load_before: list | None,
          **extra) -> Path:
    """Write one benchmark's results file and say where. medians: the figures (medians over rounds, or nested
    by setting); ratios: the ratio(s) the benchmark exists for; extra: every round's figures, settings."""
    result = {
        "benchmark": name, "source": "measured", "smoke": bool(args.smoke),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "command": " ".join(["python", f"benchmarks/{name}.py", *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": load_average()},
        "versions": versions(), "commit": commit(), "medians": medians, "ratios": ratios, **extra}
    not_finite = [path for path, value in numbers(result) if not math.isfinite(value)]
    if not_finite:
        raise SystemExit(f"{name}: figures that are not finite numbers: {not_finite}")
    path = out_path(name, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results written to {path}")
    return path


def numbers(tree, path: str = ""):
    """Every number in a JSON tree, with where it is: ("medians.kit.train_s", 12.3), ..."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from numbers(value, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, float(tree)


def child(code: str, *argv: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env or ENV,
                          cwd=ROOT)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
