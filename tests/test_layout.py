"""The direction of imports between the project's packages, read from the source (module-level and lazy
imports alike): `layers` and `pipelines` import nothing of ours, Ray is imported by `orchestrator/run/tune.py`
alone, and no package's modules import each other in a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("layers", "pipelines", "orchestrator", "slurm", "experiments")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute, wherever the import statement stands."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            # `from pkg import sub` may name a submodule
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _graph(package: str) -> dict[str, set[str]]:
    files = sorted((REPO / package).rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    return {m: {i for i in _imports(f) if i in modules and i != m} for m, f in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ["layers", "pipelines"])
def test_self_contained_packages_import_nothing_of_ours(package: str) -> None:
    others = tuple(p for p in OURS if p != package)
    bad = sorted(
        f"{_module_name(f)} imports {i}"
        for f in (REPO / package).rglob("*.py")
        for i in _imports(f)
        if i.split(".")[0] in others
    )  # fmt: skip
    assert not bad, bad


def test_ray_is_imported_by_the_tune_module_alone() -> None:
    importers = sorted({
        _module_name(f) for p in OURS for f in (REPO / p).rglob("*.py") if any(i.split(".")[0] == "ray" for i in _imports(f))
    })  # fmt: skip
    assert importers == ["orchestrator.run.tune"], importers


@pytest.mark.parametrize("package", ["layers", "pipelines", "orchestrator", "slurm"])
def test_no_import_cycles(package: str) -> None:
    assert _cycles(_graph(package)) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# What each package of orchestrator may import of orchestrator (besides itself). `cli` sits on top; `run` may import the job's class, which imports torch only when a job runs.
ALLOWED: dict[str, set[str]] = {
    "dirs": set(),
    "plots": set(),
    "spec": {"dirs"},
    "track": {"spec", "dirs"},
    "train": {"spec", "dirs", "plots"},
    "run": {"spec", "dirs", "track", "train.job"},
    "tables": {"spec", "dirs", "track", "plots"},
    "cli": {"spec", "dirs", "track", "train", "run", "tables", "plots"},
}
HEAVY = ("torch", "torchvision", "mlflow", "ray", "nvidia", "matplotlib")
MAX_LINES = 300


def _orchestrator_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (REPO / "orchestrator" / parts[1]).is_dir()) else ""


def test_every_orchestrator_package_is_in_the_table() -> None:
    packages = {p.name for p in (REPO / "orchestrator").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), packages ^ set(ALLOWED)


def test_orchestrator_packages_import_only_what_is_below_them() -> None:
    bad = []
    for f in sorted((REPO / "orchestrator").rglob("*.py")):
        module = _module_name(f)
        package = _orchestrator_package(module)
        if not package:
            continue  # orchestrator/__init__
        for imported in _imports(f):
            if not imported.startswith("orchestrator."):
                continue
            target = _orchestrator_package(imported)
            allowed = ALLOWED[package]
            if target and target != package and target not in allowed and not any(
                    imported.startswith(f"orchestrator.{a}") for a in allowed if "." in a):
                bad.append(f"{module} imports {imported}")
    assert not bad, sorted(set(bad))


def test_spec_imports_no_torch_mlflow_or_ray() -> None:
    bad = sorted({f"{_module_name(f)} imports {i}" for f in (REPO / "orchestrator" / "spec").rglob("*.py")
                  for i in _imports(f) if i.split(".")[0] in HEAVY})
    assert not bad, bad


def test_every_package_says_what_belongs_there() -> None:
    folders = [p for p in (REPO / "orchestrator").rglob("__init__.py")] + [REPO / p / "__init__.py" for p in
                                                                          ("layers", "pipelines", "slurm")]
    silent = [str(f.relative_to(REPO)) for f in folders if ast.get_docstring(ast.parse(f.read_text())) is None]
    assert not silent, silent


def test_no_module_is_over_the_line_limit() -> None:
    long = sorted(f"{f.relative_to(REPO)}: {n} lines" for p in ("layers", "pipelines", "orchestrator", "slurm")
                  for f in (REPO / p).rglob("*.py") if (n := len(f.read_text().splitlines())) > MAX_LINES)
    assert not long, long
