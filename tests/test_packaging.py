"""Setup files agree, the wheel carries the data, and importing the package does no heavy work."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def names(requirements):
    return {re.split(r"[<>=!~\[ ;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def markers(requirements):
    """The environment markers (`; python_version < "3.11"`) by requirement name, quotes and spaces dropped."""
    return {names([r]).pop(): re.sub(r"[\s'\"]", "", r.split(";", 1)[1]) for r in requirements if ";" in r}


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_section = lines[lines.index("  - pip:") + 1:]
    listed = [line.strip()[2:] for line in pip_section if line.strip().startswith("- ")]
    assert names(listed) == names(wanted)
    # the kit's own floors too (torch aside: the file pins the build it installs)
    assert {r for r in project["dependencies"] if not r.startswith("torch")} <= set(listed)
    assert markers(listed) == markers(wanted)


def test_wheel_carries_the_bundled_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("lmtune_widgets-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        assert "lmtune_widgets/bundled/customer_feedback.csv" in files
        assert "lmtune_widgets/bundled/support_tickets_example.csv" in files  # lesson 12's own-file example
        assert any(f.startswith("lmtune_widgets/bundled/atlas-support-tickets/cpu-") for f in files)  # and its atlas
        assert "lmtune_widgets/search/__main__.py" in files  # a subpackage ships only if pyproject lists it
        data = archive.read("lmtune_widgets/bundled/customer_feedback.csv")
    assert data == (ROOT / "data" / "customer_feedback.csv").read_bytes()


def test_import_is_light():
    code = "import sys, lmtune_widgets; print(sorted(m for m in ('torch', 'transformers', 'ipywidgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def agenda(title):
    """The rows of one of docs/workshop.md's agenda tables: (start minute, end minute, lesson numbers named)."""
    text = (ROOT / "docs" / "workshop.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    minutes = lambda clock: int(clock.split(":")[0]) * 60 + int(clock.split(":")[1])
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"\d:\d\d-\d:\d\d", cells[0]):
            start, end = cells[0].split("-")
            rows.append((minutes(start), minutes(end), set(re.findall(r"\b(\d\d)\b", cells[1]))))
    return rows


def test_the_workshop_agendas_fill_their_time_and_cover_every_hyperparameter_lesson():
    every_knob = {f"{n:02d}" for n in range(9)}  # 00 start here to 08 playground: all seven hyperparameters
    for title, length, lessons in (("90-minute agenda", 90, every_knob), ("3-hour agenda", 180, every_knob | {"10", "11"})):
        rows = agenda(title)
        assert rows, f"no agenda rows under '## {title}'"
        assert rows[0][0] == 0 and rows[-1][1] == length, (title, rows[0], rows[-1])
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:])), f"{title}: rows leave a gap or overlap"
        assert lessons <= set().union(*(named for _, _, named in rows)), f"{title} leaves out a lesson"


# Removed from the standard library by Python 3.12 (distutils, imp, asynchat, asyncore, smtpd) and 3.13 (PEP 594)
REMOVED = {"distutils", "imp", "asynchat", "asyncore", "smtpd", "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt",
           "imghdr", "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau",
           "telnetlib", "uu", "xdrlib", "lib2to3"}


def test_no_module_imports_what_python_3_12_or_3_13_removed():
    """Colab runs Python 3.13 and only 3.11 installs here: at least nothing imports a module those removed."""
    import ast

    found = []
    modules = (ROOT / "lmtune_widgets").rglob("*.py")  # the subpackages too
    for path in [*modules, *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in REMOVED]
    assert not found, found
