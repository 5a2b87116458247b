"""The shape of the code: modules keep to their own names, import downwards only, and README's table lists them."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lmtune_widgets"


def modules() -> dict[str, Path]:
    """Dotted name under the package ("training", "search.optuna_search") -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "bundled" in path.parts:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts[-1] != "__main__":  # `python -m` entry points: one line calling the module's main
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import of the package's own modules in a file,
    at any depth (imports inside functions count: they are how cycles hide)."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y, from . import x, from ..x import y
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("lmtune_widgets"):
                target = node.module.removeprefix("lmtune_widgets").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}".lstrip(".") for n in names if f"{target}.{n}".lstrip(".") in modules()]
            if submodules:  # from . import atlas: the module atlas itself
                out += [(m, [], node.lineno) for m in submodules]
                names = [n for n in names if f"{target}.{n}".lstrip(".") not in submodules]
            if target and names:
                out.append((target, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name.removeprefix("lmtune_widgets.").strip("."), [], node.lineno) for a in node.names
                    if a.name.startswith("lmtune_widgets.")]
    return out


def test_no_module_imports_another_modules_private_names():
    found = modules()
    leaks = [f"{path.relative_to(ROOT)}:{line} takes {n} from {target}"
             for name, path in found.items() for target, names, line in imports(name, path)
             for n in names if n.startswith("_") and not n.startswith("__") and target != name]
    assert not leaks, "\n".join(leaks)


def test_modules_import_each_other_without_a_cycle():
    """A cycle means some module imports upward; without one, every module has a place in a layered order."""
    found = modules()
    graph = {}
    for name, path in found.items():
        targets = {t for t, _, _ in imports(name, path) if t in found and t != name}
        # a package's __init__ re-exports its parts: importing the package reaches them, not the other way round
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    order, state = [], {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*trail[trail.index(node):], node])
        state[node] = "open"
        for target in sorted(graph[node]):
            visit(target, [*trail, node])
        state[node] = "done"
        order.append(node)

    for node in sorted(graph):
        visit(node, [])
    assert order.index("config") < order.index("models") < order.index("objectives") < order.index("training")
    assert order.index("training") < order.index("atlas") and order.index("training") < order.index("panel")


def test_the_readme_layout_table_has_one_line_per_module():
    rows = re.findall(r"^\| `lmtune_widgets/([\w/]+)\.py` \| (.+) \|$", (ROOT / "README.md").read_text(), re.M)
    listed = {path.replace("/", ".").removesuffix(".__init__") for path, _ in rows}
    assert listed == set(modules()), (f"in the README but not the package: {sorted(listed - set(modules()))}; "
                                      f"in the package but not the README: {sorted(set(modules()) - listed)}")
    assert len(rows) == len(listed) and all(len(job) > 20 for _, job in rows)
