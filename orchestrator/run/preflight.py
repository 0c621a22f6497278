"""Everything a sweep needs before it starts: the file's checks (``orchestrator.spec``) plus what only the
machine it runs on can answer: the executor kind is installed, the tracking store opens (a SQLite file this
user can write, not a folder or another kind of file), an MLflow server answers.

``load_sweep`` and ``validate_every_profile`` are ``orchestrator.spec.load``'s with these machine checks
added, reported on the same one line; the CLI and the driver load sweeps through them. ``spec`` cannot do
this itself: the executors' registry lives in ``run`` and the store probe in ``track``, both above it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from urllib.parse import urlparse

from orchestrator.spec import load
from orchestrator.spec.checks import store_scheme, sweep_problems, tracking_problems
from orchestrator.spec.errors import ConfigError, Problem
from orchestrator.spec.schema import SweepSpec

__all__ = ["check_sweep", "load_sweep", "machine_problems", "tracking_reachability_problems",
           "validate_every_profile"]


def machine_problems(spec: SweepSpec) -> list[Problem]:
    """The executor kind is one this installation has; a local tracking store can be opened."""
    from orchestrator.run.executors.base import available_executors

    problems = []
    kinds = available_executors()
    if spec.executor.kind not in kinds:
        problems.append(Problem("executor.kind", "unknown executor", spec.executor.kind, ", ".join(kinds)))
    uri = spec.tracking.uri
    if store_scheme(uri) in ("sqlite", "file") and not tracking_problems(spec, external=True):
        from orchestrator.track.store import unreachable_reason

        reason = unreachable_reason(uri)  # a folder nobody may write to, a file that is not a database
        if reason is not None:
            problems.append(Problem("tracking.uri", f"the store cannot be opened: {reason}", uri,
                                    "a SQLite file (or a folder for it) this user can write"))
    return problems


def check_sweep(spec: SweepSpec, *, external: bool = True) -> None:
    """Everything a sweep needs to start, checked before anything runs; raises ConfigError listing problems.

    ``external=False`` skips what needs ``layers``, ``pipelines``, the executors or the file system (names,
    data roots, layer builds, executor kind, the tracking store).
    """
    problems = sweep_problems(spec, external=external) + (machine_problems(spec) if external else [])
    if problems:
        raise ConfigError(problems)


def load_sweep(
    path: str | os.PathLike[str],
    profile: str | None = None,
    overrides: Iterable[str] = (),
    *,
    check: bool = True,
    trials: bool = True,
) -> SweepSpec:
    """``orchestrator.spec.load.load_sweep`` with the machine's checks (``check=True`` and ``trials=True``)."""
    return load.load_sweep(path, profile, overrides, check=check, trials=trials, machine_checks=machine_problems)


def validate_every_profile(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SweepSpec:
    """``convsweep validate`` without ``--profile``: the file as written with the machine's checks, then every
    profile without them (data roots and executors belong to the machine a profile is run on)."""
    return load.validate_every_profile(path, overrides, machine_checks=machine_problems)


def tracking_reachability_problems(spec: SweepSpec, timeout: float | None = None) -> list[Problem]:
    """An MLflow server that does not answer within a few seconds (``validate --offline`` skips this)."""
    from orchestrator.track.store import PROBE_SECONDS, unreachable_reason

    uri = spec.tracking.uri
    if urlparse(uri).scheme.lower() not in ("http", "https"):
        return []  # local stores are checked with the rest of the sweep (machine_problems)
    reason = unreachable_reason(uri, PROBE_SECONDS if timeout is None else timeout)
    if reason is None:
        return []
    return [Problem("tracking.uri", f"the MLflow server does not answer ({reason})", uri,
                    "a running server (mlflow server ...); `convsweep validate --offline` skips this check")]
