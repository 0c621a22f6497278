"""Reading a sweep file: YAML -> environment expansion -> profile -> ``--set`` overrides -> ``SweepSpec``.

This module owns the boundary between the user's text and the typed schema of ``orchestrator.spec.schema``:

- YAML is read with ``yaml.safe_load``'s loader only, within limits (``orchestrator.spec.yamlsafe``: bounded alias
  expansion and nesting, no duplicate keys, regular UTF-8 files).
- ``${VAR}`` and ``${VAR:-default}`` in string values are replaced from the environment (``$${`` writes a
  literal ``${``); an unset variable without a default is an error naming it and the key.
- A profile (``--profile NAME``) and then ``--set key=value`` overrides replace values at dotted paths from
  the top of the file (``base.recipe.epochs``, ``grid.model``, ``seeds``). Under ``grid``,
  ``evaluate.where`` and ``table.baseline`` the rest of the path is one (dotted) key, so ``grid.dataset.name``
  sets the grid entry ``dataset.name``; in ``grid`` a null value removes the entry. ``--set`` values are
  parsed with ``yaml.safe_load`` (``--set seeds=[0,1]``).
- Relative paths (``storage.root``, ``base.dataset.root`` and ``dataset.root`` grid/zip values) are resolved
  against the current working directory at load time, so jobs started elsewhere see the same folders;
  ``table.reference.file`` against the sweep file's folder (the reference CSVs travel with the file).
- Every problem becomes a ``ConfigError`` whose text is one line:
  ``<file>: <dotted.key>: <problem> (got <value!r>; allowed: <...>)``; several problems are joined by
  ``; `` on that line (``orchestrator.spec.errors``). Semantic checks (every expanded trial, names known to
  ``layers``/``pipelines``, data roots, layer knob combinations) are ``orchestrator.spec.checks.sweep_problems``,
  called by ``load_sweep``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.spec.checks import sweep_problems
from orchestrator.spec.errors import ConfigError, Problem, translate_validation_error
from orchestrator.spec.expand import expand_with_sources
from orchestrator.spec.schema import SweepSpec, TrainBase, TrialSpec
from orchestrator.spec.schemapath import _child, _dotted_paths, _members, _model_of, dotted_key, schema_annotation
from orchestrator.spec.trialchecks import layer_problems, name_problems

__all__ = ["apply_override", "load_sweep", "read_yaml", "validate_every_profile"]

# Sections whose keys are themselves dotted trial paths: a profile path ends its walk there.
_DOTTED_KEY_SECTIONS = {("grid",), ("evaluate", "where"), ("table", "baseline")}
_ENV_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# -- environment, profiles, overrides ----------------------------------------------------------------------
def _expand_env(node: Any, parts: list[str | int]) -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, [*parts, k]) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, [*parts, i]) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(Problem(dotted_key(parts), f"environment variable {name} is not set", node,
                                  f"set {name}, or write ${{{name}:-default}}"))

    result = _ENV_RE.sub(replace, node)
    if "${" in _ENV_RE.sub("", node):
        raise ConfigError(Problem(dotted_key(parts), "malformed ${...} reference", node, "${VAR} or ${VAR:-default}"))
    return result


def apply_override(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted path from the top of the raw sweep mapping (in place)."""
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise ConfigError(Problem(path, "empty part in dotted key", path, "e.g. base.recipe.epochs"))
    if parts[0] == "profiles":
        raise ConfigError(Problem(path, "profiles cannot be set by a profile or --set", path))
    node, walked = data, []
    while len(walked) < len(parts) - 1 and tuple(walked) not in _DOTTED_KEY_SECTIONS:
        part = parts[len(walked)]
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(Problem(".".join([*walked, part]), f"cannot set {path!r} inside a non-mapping", child))
        node = child
        walked.append(part)
    leaf = ".".join(parts[len(walked):])
    if value is None and tuple(walked) == ("grid",):
        node.pop(leaf, None)
    else:
        node[leaf] = copy.deepcopy(value)


def _override_path_ok(path: str) -> bool:
    """Whether a profile/--set path names something in the schema (typos caught even in unused profiles)."""
    parts = path.split(".")
    for n in range(1, len(parts)):
        if tuple(parts[:n]) in _DOTTED_KEY_SECTIONS:
            if parts[0] == "table":
                return True  # table.baseline keys are the table's own business (tablespec)
            return schema_annotation(TrainBase if parts[0] == "grid" else TrialSpec, ".".join(parts[n:]))[0]
    ann: Any = SweepSpec
    for part in parts:
        if typing.get_origin(_members(ann)[0]) is dict:
            return True  # a free-form mapping, e.g. executor.slurm.additional_parameters
        found, ann = _child(ann, part) if _model_of(ann) else (False, None)
        if not found:
            return False
    return True


def _suggest_path(path: str) -> str:
    """", did you mean 'base.recipe.epochs'?" for a misspelt profile/--set path, or nothing."""
    head = path.split(".")[0]
    paths = [f"grid.{p}" for p in _dotted_paths(TrainBase)] if head == "grid" else _dotted_paths(SweepSpec)
    close = difflib.get_close_matches(path, paths, n=1, cutoff=0.8)
    return f", did you mean {close[0]!r}?" if close else ""


def _parse_set(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(Problem("--set", "expected key=value", item, "e.g. --set base.recipe.epochs=2"))
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(key.strip(), f"--set value is not valid YAML: {exc}", text)) from None


def _resolve_paths(data: dict[str, Any], sweep_file: Path) -> None:
    def absolute(p: Any, start: str = "") -> Any:
        return os.path.abspath(os.path.join(start, os.path.expanduser(p))) if isinstance(p, str) and p else p

    table = data.get("table")
    if isinstance(table, dict) and isinstance(table.get("reference"), dict) and "file" in table["reference"]:
        # published numbers live beside the sweep file (experiments/reference/), wherever convsweep runs
        table["reference"]["file"] = absolute(table["reference"]["file"], str(sweep_file.parent))

    base = data.get("base")
    if isinstance(base, dict) and isinstance(base.get("dataset"), dict) and "root" in base["dataset"]:
        base["dataset"]["root"] = absolute(base["dataset"]["root"])
    groups = [data.get("grid")] + (data.get("zip") if isinstance(data.get("zip"), list) else [])
    for group in groups:
        if isinstance(group, dict) and isinstance(group.get("dataset.root"), list):
            group["dataset.root"] = [absolute(p) for p in group["dataset.root"]]


def read_yaml(path: Path) -> dict[str, Any]:
    from orchestrator.spec.yamlsafe import YamlProblem, load_bounded, read_text

    try:
        data = load_bounded(read_text(path))
    except YamlProblem as exc:
        raise ConfigError(Problem(exc.where, exc.problem, allowed=exc.allowed), path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        what = ": ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        raise ConfigError(Problem(where, f"invalid YAML: {what or exc}"), path) from None
    if not isinstance(data, dict):
        raise ConfigError(Problem("", "the file must be a mapping of sections", data,
                                  ", ".join(SweepSpec.model_fields)), path)
    return data


def load_sweep(
    path: str | os.PathLike[str],
    profile: str | None = None,
    overrides: Iterable[str] = (),
    *,
    check: bool = True,
    trials: bool = True,
    machine_checks: Callable[[SweepSpec], list[Problem]] | None = None,
) -> SweepSpec:
    """Read, expand, override and validate a sweep file; raises ConfigError (one line) on any problem.

    By default the grid is expanded and every trial validated (``orchestrator.spec.checks.sweep_problems``);
    ``check=False`` skips the checks that need ``layers``, ``pipelines`` or the file system (names, data
    roots, layer knobs, the store's folder) and ``machine_checks``. ``trials=False`` stops at the schema
    (implies ``check=False``): for readers of the spec alone, such as ``convsweep table``, which must work
    where the data is absent and must not pay for 10,000 trials. ``machine_checks(spec)`` adds problems this
    package cannot see (executors, the tracking store), reported on the same line:
    ``orchestrator.run.preflight.load_sweep`` passes them.
    """
    path = Path(path)
    data = read_yaml(path)
    origins: dict[str, str] = {}
    try:
        data = _expand_env(data, [])
        profiles = data.get("profiles") or {}
        if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
            raise ConfigError(Problem("profiles", "must map profile names to {dotted.key: value}", profiles))
        bad = [Problem(f"profiles.{name}.{key}", f"not a key of the sweep file{_suggest_path(str(key))}", key)
               for name, sets in profiles.items() for key in sets if not _override_path_ok(str(key))]
        if bad:
            raise ConfigError(bad)
        if profile is not None:
            if profile not in profiles:
                raise ConfigError(Problem("profiles", f"unknown profile {profile!r}", profile,
                                          ", ".join(profiles) or "(this file defines no profiles)"))
            for key, value in profiles[profile].items():
                apply_override(data, str(key), value)
                origins[str(key)] = f"profile {profile!r}"
        for item in overrides:
            key, value = _parse_set(item)
            apply_override(data, key, value)
            origins[key] = "--set"
        _resolve_paths(data, path)
        try:
            spec = SweepSpec.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(translate_validation_error(exc, SweepSpec)) from None
        # the storage root (given or default) is pinned to this working directory: jobs may start elsewhere
        storage = spec.storage.model_copy(update={"root": os.path.abspath(os.path.expanduser(spec.storage.root))})
        spec = spec.model_copy(update={"storage": storage})
        if trials:
            problems = sweep_problems(spec, external=check)
            if check and machine_checks is not None:
                problems += machine_checks(spec)
            if problems:
                raise ConfigError(problems)
    except ConfigError as exc:
        raise ConfigError(_with_origins(exc.problems, origins), path) from None
    return spec


def _with_origins(problems: list[Problem], origins: dict[str, str]) -> list[Problem]:
    """Say which profile or --set put a bad value there: the file alone would not show it."""
    out = []
    for p in problems:
        source = next((o for k, o in origins.items() if p.key == k or p.key.startswith((k + ".", k + "["))), None)
        out.append(dataclasses.replace(p, problem=f"{p.problem} [set by {source}]") if source else p)
    return out


def validate_every_profile(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    machine_checks: Callable[[SweepSpec], list[Problem]] | None = None,
) -> SweepSpec:
    """Load the file as written, then once per profile; the first failure names its profile. Returns the first.

    ``convsweep validate`` without ``--profile``: a typo in a profile nobody selected today would otherwise
    surface on the day someone does.
    """
    spec = load_sweep(path, None, overrides, machine_checks=machine_checks)
    profiles = read_yaml(Path(path)).get("profiles") or {}
    for name, sets in profiles.items():
        if not sets:
            continue  # the file as written: checked above
        try:
            # everything but data roots and executors, which belong to the machine a profile is run on
            other = load_sweep(path, str(name), overrides, check=False)
            pairs = expand_with_sources(other)
            problems = name_problems(pairs) or layer_problems(pairs)
            if problems:
                raise ConfigError(problems, path)
        except ConfigError as exc:
            tagged = [p if "[set by profile" in p.problem else dataclasses.replace(p, problem=f"{p.problem} "
                      f"[profile {name}]") for p in exc.problems]
            raise ConfigError(tagged, exc.file) from None
    return spec
