"""``orchestrator.spec`` imports nothing above it (run, train, track, tables) and no torch, MLflow or Ray, not
even lazily inside a function: ``convsweep validate`` and ``plan`` load it on machines and in processes that
must not pay for them (read from the source, so a lazy import in a rarely taken branch counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator.spec

SPEC = Path(orchestrator.spec.__file__).parent
FORBIDDEN = ("orchestrator.run", "orchestrator.train", "orchestrator.track", "orchestrator.tables", "orchestrator.cli",
             "torch", "mlflow", "ray")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names


def test_spec_imports_nothing_above_it_and_no_heavy_library():
    found = {f"{path.name}: {name}" for path in sorted(SPEC.glob("*.py")) for name in _imported(path)
             if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not found, sorted(found)


def test_spec_modules_are_small():
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in SPEC.glob("*.py")}
    assert max(sizes.values()) <= 300, sizes
