"""From one sweep to its trials: grid x zip groups x seeds, minus exclude, each a validated ``TrialSpec``.

Order is deterministic and follows the file: grid keys in the order written (the first varies slowest),
then each zip group, then the seeds (innermost, so a configuration's seeds sit together). A grid or zip
value at a sub-section path (``recipe.optimizer: [{name: adam, lr: 0.001}]``) is merged into the base's
section, a value at a leaf replaces it. Two trials with the same ``trial_key`` are an error (a repeated grid
value or seed), never silently merged: the user asked for N trials and should get N.

Expanding checks what only the trials show: the grid/zip/exclude structure first
(``orchestrator.spec.structure``), every expanded trial re-validated with its error pinned on the key holding
the bad value (``grid.layer.method``, or ``base.layer.skp`` when base set it), an exclude entry that matches
no trial, and layer knobs the trials' methods ignore (``orchestrator.spec.knobchecks``, an error unless the
sweep sets ``allow_ignored_knobs``). The checks against the registries, the data and the machine are
``orchestrator.spec.checks.sweep_problems`` and ``orchestrator.run.preflight``. An expansion is kept for the
next call with the same inputs: a command expands its sweep once, however many steps ask for the trials.

Evaluation sweeps (``evaluate:`` set) have no grid: their trials are the DONE trials of the source sweep in
``<storage.root>/<source_sweep>/`` matching ``evaluate.where``, re-targeted at this sweep.
"""

from __future__ import annotations

import copy
import itertools
import logging
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.errors import ConfigError, Problem, translate_validation_error
from orchestrator.spec.knobchecks import ignored_knob_problems
from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.spec.schemapath import dotted_key, schema_annotation
from orchestrator.spec.structure import canon, structure_problems

__all__ = ["expand", "expand_with_sources"]

log = logging.getLogger(__name__)


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree[part]
    if isinstance(value, dict) and isinstance(tree.get(leaf), dict):
        merged = copy.deepcopy(tree[leaf])
        merged.update(value)
        value = merged
    tree[leaf] = value


def _get(tree: Any, path: str) -> Any:
    for part in path.split("."):
        tree = tree[part]
    return tree


def _matches(dumped: dict[str, Any], where: dict[str, Any]) -> bool:
    """Whether a trial (as JSON data) has every (dotted key, value) pair; values compared after typing."""
    for key, wanted in where.items():
        actual = _get(dumped, key)
        if actual == wanted:
            continue
        try:
            adapter = TypeAdapter(schema_annotation(TrialSpec, key)[1])
            wanted = adapter.dump_python(adapter.validate_python(wanted), mode="json")
        except (ValidationError, TypeError, ValueError):
            return False
        if actual != wanted:
            return False
    return True


# Each command used to expand its sweep two or three times (load_sweep's checks, then the command itself):
# seconds for 10,000 trials, and every warning said as many times. Trials are frozen, so the last few
# expansions are kept, keyed by what expansion reads (not evaluation sweeps: theirs change as trials finish).
_EXPANDED: dict[str, list[tuple[TrialSpec, dict[str, str]]]] = {}
_EXPANDED_KEPT = 4
_NOT_EXPANSION_INPUTS = {"description", "tracking", "storage", "executor", "tune", "profiles", "table"}


def expand_with_sources(spec: SweepSpec) -> list[tuple[TrialSpec, dict[str, str]]]:
    """Trials, each with the sweep-file key behind each varied path (``layer.method`` -> ``grid.layer.method``)."""
    if spec.evaluate is not None:
        return _expand_with_sources(spec)
    key = spec.model_dump_json(exclude=_NOT_EXPANSION_INPUTS)
    if key not in _EXPANDED:
        pairs = _expand_with_sources(spec)
        while len(_EXPANDED) >= _EXPANDED_KEPT:
            del _EXPANDED[next(iter(_EXPANDED))]
        _EXPANDED[key] = pairs
    return [(trial, dict(sources)) for trial, sources in _EXPANDED[key]]


def _expand_with_sources(spec: SweepSpec) -> list[tuple[TrialSpec, dict[str, str]]]:
    problems = structure_problems(spec)
    if problems:
        raise ConfigError(problems)
    if spec.evaluate is not None:
        return [(t, {}) for t in _evaluation_trials(spec)]
    axes: list[list[dict[str, tuple[str, Any]]]] = [
        [{key: (f"grid.{key}", v)} for v in values] for key, values in spec.grid.items()
    ]
    axes += [
        [{key: (f"zip[{i}].{key}", v) for key, v in zip(group, row)} for row in zip(*group.values())]
        for i, group in enumerate(spec.zip)
    ]
    base = spec.base.model_dump(mode="json")
    resources = spec.resources.model_dump(mode="json")
    out: list[tuple[TrialSpec, dict[str, str]]] = []
    raw: list[dict[str, Any]] = []  # each kept trial's grid/zip values as written
    used: set[int] = set()  # exclude entries that matched a trial
    problems = []
    for combo in itertools.product(*axes):
        settings = {k: sv for part in combo for k, sv in part.items()}
        sources = {k: source for k, (source, _) in settings.items()}
        tree = copy.deepcopy(base)
        for key, (_, value) in settings.items():
            _set(tree, key, value)
        for seed in spec.seeds:
            data = {**tree, "sweep": spec.name, "seed": seed, "resources": resources}
            try:
                trial = TrialSpec.model_validate(data)
            except ValidationError as exc:
                problems += translate_validation_error(exc, TrialSpec, lambda parts: _source_key(parts, sources))
                break  # the other seeds fail the same way
            dumped = trial.model_dump(mode="json") if spec.exclude else {}
            hits = [i for i, entry in enumerate(spec.exclude) if _matches(dumped, entry)]
            used.update(hits)
            if not hits:
                out.append((trial, {**sources, "seed": "seeds"}))
                raw.append({k: v for k, (_, v) in settings.items()})
    # a typo'd value (layer.method: gmcov) excludes nothing and would run the trials meant to be dropped
    if not problems:  # a trial that failed validation was never matched against the entries
        problems = [Problem(f"exclude[{i}]", "matches no trial", entry, "values the grid, zip or base give a trial")
                    for i, entry in enumerate(spec.exclude) if i not in used]
    if problems:
        raise ConfigError(problems)
    _check_duplicates(out, raw)
    if not out:
        raise ConfigError(Problem("exclude", "every trial is excluded", spec.exclude, "entries that leave a trial"))
    _ignored_knobs(spec, out)
    return out


def _ignored_knobs(spec: SweepSpec, out: list[tuple[TrialSpec, dict[str, str]]]) -> None:
    problems = ignored_knob_problems(spec, out)
    if problems and not spec.allow_ignored_knobs:
        raise ConfigError(problems)
    for p in problems:  # the sweep allows them: said once, as the expansion is cached
        log.warning("%s (allowed by allow_ignored_knobs)", p.text())


def _source_key(parts: list[str | int], sources: dict[str, str]) -> str:
    """The sweep-file key behind a trial error's location: the grid/zip key that set it, else base/resources."""
    dotted = dotted_key(parts)
    for path, source in sources.items():
        if dotted == path or dotted.startswith(path + ".") or dotted.startswith(path + "["):
            return source + dotted[len(path):]
    return dotted if parts and parts[0] in ("resources", "sweep", "seed") else f"base.{dotted}"


def _check_duplicates(trials: list[tuple[TrialSpec, dict[str, str]]], raw: list[dict[str, Any]]) -> None:
    """Distinct grid values that type to the same trial (``[5, 5.0]``) would run one trial twice."""
    seen: dict[str, int] = {}
    for i, (trial, sources) in enumerate(trials):
        j = seen.setdefault(trial.trial_key, i)
        if j != i:
            differ = {p: (raw[j][p], raw[i][p]) for p in raw[i] if canon(raw[i][p]) != canon(raw[j][p])}
            raise ConfigError(Problem(", ".join(sources[p] for p in differ) or "seeds",
                                      f"values that are equal once typed make trials {j} and {i} the same trial",
                                      differ or trial.seed, "values that differ"))


def expand(spec: SweepSpec) -> list[TrialSpec]:
    """The sweep's trials, in deterministic order; ConfigError (without a file name) if one is invalid."""
    return [trial for trial, _ in expand_with_sources(spec)]


def _evaluation_trials(spec: SweepSpec) -> list[TrialSpec]:
    assert spec.evaluate is not None
    source_root = Path(spec.storage.root) / spec.evaluate.source_sweep
    trials = []
    for path in sorted(source_root.iterdir()) if source_root.is_dir() else []:
        tdir = TrialDir(path)
        if not (tdir.is_done and tdir.spec_path.exists()):
            continue
        try:
            data = tdir.read_spec()
            if not _matches(data, spec.evaluate.where):
                continue
            data.update(sweep=spec.name, evaluate_source=str(tdir.path), transforms=list(spec.evaluate.transforms),
                        evaluate_checkpoint=spec.evaluate.checkpoint, resources=spec.resources.model_dump(mode="json"))
            if spec.base.dataset.root is not None:  # this machine's copy of the data
                data["dataset"]["root"] = spec.base.dataset.root
            trials.append(TrialSpec.model_validate(data))
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and ValidationError are ValueErrors
            raise ConfigError(Problem("evaluate.source_sweep", f"unreadable source trial {tdir.spec_path}: "
                                      f"{type(exc).__name__}: {exc}")) from None
    return trials
