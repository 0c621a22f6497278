"""The shape of a sweep, checked from the schema alone before any trial is built: grid, zip, exclude and seeds
(keys that name trial fields, no empty or repeated values, no setting varied twice, evaluation sweeps
without a grid).
"""

from __future__ import annotations

import difflib
import itertools
import json
from typing import Any

from orchestrator.spec.errors import Problem
from orchestrator.spec.schema import NON_SEMANTIC_FIELDS, SweepSpec, TrainBase, TrialSpec
from orchestrator.spec.schemapath import schema_annotation

__all__ = ["canon", "structure_problems"]


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _key_problem(section: str, key: str, root: type) -> Problem | None:
    if schema_annotation(root, key)[0]:
        return None
    if key == "seed":
        return Problem(f"{section}.{key}", "seeds are set by the top-level `seeds` list", key, "seeds: [0, 1, 2]")
    head = key.partition(".")[0]
    if head in SweepSpec.model_fields and head not in TrainBase.model_fields and root is TrainBase:
        return Problem(f"{section}.{key}", f"`{head}` is a sweep-wide section: it cannot vary between trials", key,
                       "a dotted field path of base")
    fields = sorted(_leaf_paths(root))
    close = difflib.get_close_matches(key, fields, n=3)
    allowed = ", ".join(close) if close else "a dotted field path of base, e.g. " + ", ".join(fields[:6]) + ", ..."
    return Problem(f"{section}.{key}", "not a field of the trial", key, allowed)


def _leaf_paths(model: type, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _leaf_paths(sub, f"{prefix}{name}.")
        out.append(f"{prefix}{name}")
    return out


def structure_problems(spec: SweepSpec) -> list[Problem]:
    """Grid, zip, exclude and seeds checks that need nothing but the schema."""
    problems: list[Problem] = []
    if spec.evaluate is not None:
        for section in ("grid", "zip", "exclude"):
            if getattr(spec, section):
                problems.append(Problem(section, "an evaluation sweep takes its trials from evaluate.source_sweep",
                                        getattr(spec, section), "empty"))
        for key in spec.evaluate.where:
            problems += [p for p in [_key_problem("evaluate.where", key, TrialSpec)] if p]
    varied: list[tuple[str, str]] = []  # (trial path, section label)
    for key, values in spec.grid.items():
        problems += [p for p in [_key_problem("grid", key, TrainBase)] if p]
        if not values:
            problems.append(Problem(f"grid.{key}", "empty list", values, "one or more values"))
        elif len({canon(v) for v in values}) < len(values):
            problems.append(Problem(f"grid.{key}", "repeated value (would duplicate trials)", values))
        if key in NON_SEMANTIC_FIELDS and len(values) > 1:
            problems.append(Problem(f"grid.{key}", "not part of a trial's identity: varying it alone repeats "
                                    "the same trial", key, "vary it in a zip group with a setting that matters"))
        varied.append((key, f"grid.{key}"))
    for i, group in enumerate(spec.zip):
        if not group:
            problems.append(Problem(f"zip[{i}]", "empty group", group, "{dotted.key: [values], ...}"))
        for key, values in group.items():
            problems += [p for p in [_key_problem(f"zip[{i}]", key, TrainBase)] if p]
            if not values:
                problems.append(Problem(f"zip[{i}].{key}", "empty list", values, "one or more values"))
            varied.append((key, f"zip[{i}].{key}"))
        if group and all(key in NON_SEMANTIC_FIELDS for key in group) and len(next(iter(group.values()))) > 1:
            problems.append(Problem(f"zip[{i}]", "only varies settings outside a trial's identity", list(group),
                                    "add a setting that changes the trial"))
        rows = [canon(row) for row in zip(*group.values())]
        if len(set(rows)) < len(rows):
            problems.append(Problem(f"zip[{i}]", "repeated row of values (would duplicate trials)", group))
    for (a, label_a), (b, label_b) in itertools.combinations(varied, 2):
        if a == b or a.startswith(b + ".") or b.startswith(a + "."):
            problems.append(Problem(label_b, f"varies the same setting as {label_a}", b, "each setting varied once"))
    for i, entry in enumerate(spec.exclude):
        if not entry:
            problems.append(Problem(f"exclude[{i}]", "empty entry (would exclude every trial)", entry))
        for key in entry:
            problems += [p for p in [_key_problem(f"exclude[{i}]", key, TrialSpec)] if p]
    if len(set(spec.seeds)) < len(spec.seeds):
        problems.append(Problem("seeds", "repeated seed (would duplicate trials)", spec.seeds, "distinct seeds"))
    return problems
