"""No import cycles among the project's modules, and every module imports on its own.

The graph holds the imports a module runs when it is imported (module level, outside
`if TYPE_CHECKING:`); an import of a package points at its `__init__`. A cycle there is what makes
a new operator module fail to import `Layout` at run time, so none is allowed.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "datasets_adapters", "metrics")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def run_time_imports(path: Path) -> set[str]:
    """Project modules `path` imports when it is imported."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module for alias in node.names)

    visit(tree.body)
    return {name for name in found if name in MODULES}


def test_there_is_no_import_cycle():
    graph = {name: run_time_imports(path) for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def walk(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target) :] + [target] if target in stack else [name, target]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if target not in state:
                walk(target, stack + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])


def test_an_operator_module_imports_layout_at_run_time():
    """What a new operator module does: import Layout normally, in a fresh interpreter, first."""
    code = "from bench.methods.layout import Layout\nimport bench.methods.subsample\nimport bench.methods\nprint(Layout.__module__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bench.methods.layout"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)
