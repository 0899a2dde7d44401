"""The house stays readable: the kit in layers with no way up, no import cycle, modules a
reader can hold in their head, one way in for units and tests, and no test-data machinery
in the gateway process.

The import graph is read from the source with `ast` (imports under `if TYPE_CHECKING:` are
for the type checker only and are left out), so these checks need nothing installed.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mbs", "gateway", "services", "contracts")
MAX_LINES = 400
# Lowest first: a module may import its own layer and those before it, never one after.
LAYERS = (
    ("mbs.errors", "mbs.wire", "mbs.backoff", "mbs.settings"),
    ("mbs.kafka",),
    ("mbs.contract",),
    ("mbs.telemetry",),
    ("mbs.unit",),
    ("mbs.broker",),
    ("mbs.dashboards",),
    ("mbs.cli", "mbs.__main__"),
    ("mbs.testing",),
)
ABOVE_THE_KIT = ("services", "gateway", "contracts", "ecosystem")


def _parse(path: Path) -> ast.Module:
    """The module's syntax tree. CPython 3.11.7 sometimes raises a spurious "AST constructor
    recursion depth mismatch" for the first big file parsed after a long hypothesis run in the
    same process (its depth bookkeeping is off once); a second parse of the same text is
    exact, so one retry keeps this check about the layout, not the interpreter."""
    text = path.read_text()
    try:
        return ast.parse(text)
    except SystemError:
        return ast.parse(text)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found["ecosystem"] = ROOT / "ecosystem.py"
    return found


SOURCES = _sources()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_nodes_of(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _runtime_nodes_of(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    yield from _runtime_nodes(node)


def imports_of(module: str) -> set[str]:
    """The project modules `module` imports (a `from pkg import name` names pkg.name when
    that is a module, else pkg)."""
    path = SOURCES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(_parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in SOURCES else base)
    return {name for name in found if name in SOURCES}


def _layer(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(f"{top}.") for top in layer):
            return index
    return None


def test_no_import_cycle() -> None:
    graph = {module: imports_of(module) - {module} for module in SOURCES}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_the_kit_never_imports_what_is_built_on_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module in SOURCES
        if module == "mbs" or module.startswith("mbs.")
        for target in imports_of(module)
        if target.split(".")[0] in ABOVE_THE_KIT
    ]
    assert not wrong, "the ecosystem is handed in (ecosystem.py), never imported:\n" + "\n".join(
        wrong
    )


def test_kit_layers_only_import_downwards() -> None:
    unplaced = [m for m in SOURCES if m.startswith("mbs.") and _layer(m) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module in SOURCES
        if module.startswith("mbs.")
        for target in imports_of(module)
        if target.startswith("mbs.") and (_layer(target) or 0) > (_layer(module) or 0)
    ]
    assert not upward, "\n".join(upward)


def test_no_module_is_longer_than_a_reader_holds_in_mind() -> None:
    files = [*SOURCES.values(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these (over {MAX_LINES} lines): {long}"


def _project_imports(path: Path) -> Iterator[tuple[str, str]]:
    """(module, name) of every `from project import name` and `import project.module`."""
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] in (*PACKAGES, "ecosystem", "tests"):
                yield from ((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in (*PACKAGES, "ecosystem"):
                    yield alias.name, ""


@pytest.mark.parametrize("folder", ["services", "contracts"])
def test_units_and_contracts_use_the_kits_public_face(folder: str) -> None:
    deep = [
        f"{path.relative_to(ROOT)}: from {module} import {name}"
        for path in (ROOT / folder).rglob("*.py")
        for module, name in _project_imports(path)
        if module.startswith("mbs") and module != "mbs"
    ]
    assert not deep, "import from `mbs` itself:\n" + "\n".join(deep)


def test_no_test_reaches_a_private_name() -> None:
    private = [
        f"{path.relative_to(ROOT)}: from {module} import {name}"
        for path in (ROOT / "tests").rglob("*.py")
        for module, name in _project_imports(path)
        if name.startswith("_") or any(part.startswith("_") for part in module.split("."))
    ]
    assert not private, "\n".join(private)


def test_the_gateway_process_does_not_load_test_data_machinery() -> None:
    script = (
        "import sys, gateway.app, gateway.bootstrap; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('hypothesis', 'hypothesis_jsonschema')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"the gateway imports {done.stdout.strip()}"
