"""The engine's modules import without a circle: each one alone, first, in a fresh interpreter,
and no chain of imports (typing-only and deferred ones included) leads back to where it began."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        name = ".".join(("neurogate", *parts)).removesuffix(".__init__")
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Engine modules ``path`` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                deps.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names)
    return deps & set(MODULES)


@pytest.mark.slow  # a fresh interpreter per module: about 0.4 s of CPU each
@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_alone(name: str) -> None:
    run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that leads back to its start, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for dep in sorted(graph[name]):
            found = visit(dep, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_no_import_cycles() -> None:
    graph = {name: _imports(path) - {name} for name, path in MODULES.items()}
    assert "neurogate.engine.snapshot" in graph["neurogate.engine.detector"]  # edges are read
    assert find_cycle(graph) is None


def test_the_cycle_check_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_stores_depend_on_the_key_contract_not_on_engine_internals() -> None:
    """Stores import the key/count contract (engine/keys.py) and each other, nothing else of
    the engine; the in-memory store alone reuses the engine's count table."""
    allowed = {"neurogate.engine.keys", "neurogate.engine.redaction"}
    for name, path in MODULES.items():
        if not name.startswith("neurogate.engine.stores"):
            continue
        internals = {d for d in _imports(path)
                     if not d.startswith("neurogate.engine.stores") and d not in allowed}
        if name == "neurogate.engine.stores.memory":
            internals -= {"neurogate.engine.counts"}
        assert internals == set(), f"{name} imports {sorted(internals)}"
