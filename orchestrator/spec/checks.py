"""Checks of a sweep's sections beyond its schema (table layout, tune metric, tracking URI, an evaluation
sweep's source), and ``sweep_problems``: every check that needs nothing but the file, the registries of
``layers``/``pipelines`` and (with ``external``) the data roots. ``load_sweep`` runs it; what needs the
machine the sweep will run on (executors, the tracking store answering) is ``orchestrator.run.preflight``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from orchestrator.spec.errors import Problem, did_you_mean
from orchestrator.spec.expand import expand_with_sources
from orchestrator.spec.figurespec import figure_problems
from orchestrator.spec.metricnames import EPOCH_METRICS
from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.spec.trialchecks import layer_problems, name_problems, root_problems

__all__ = [
    "evaluation_source_problems", "store_scheme", "sweep_problems", "table_problems", "tracking_problems",
    "tune_problems",
]

# the SQL stores go through SQLAlchemy, whose URIs may name a driver (postgresql+psycopg2://)
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9.-]*)(?:\+([A-Za-z0-9_]+))?:")
_URI_FORMS = ("sqlite:///FILE.db, file:///DIR, http(s)://HOST[:PORT], postgresql|mysql|mssql[+driver]://..., "
              "databricks[://PROFILE]")


def sweep_problems(spec: SweepSpec, *, external: bool = True) -> list[Problem]:
    """The sweep's problems found from the file and the registries; ``external=False`` skips what needs
    ``layers``, ``pipelines`` or the file system (names, data roots, layer builds, the store's folder)."""
    pairs = expand_with_sources(spec)
    problems = tune_problems(spec) + table_problems(spec, [t for t, _ in pairs[:1]])
    problems += tracking_problems(spec, external=external)
    problems += figure_problems(spec.figure, spec.table)
    if external:
        names = name_problems(pairs)
        problems += names or root_problems(pairs) + layer_problems(pairs)
    return problems


def _reported_metrics(spec: SweepSpec) -> tuple[str, ...]:
    """What the sweep's runs report per epoch (training) or once (evaluation: ``<transform>_top1/_top5``)."""
    if spec.evaluate is None:
        return EPOCH_METRICS
    return tuple(f"{t}_{m}" for t in spec.evaluate.transforms for m in ("top1", "top5"))


def table_problems(spec: SweepSpec, trials: Sequence[TrialSpec]) -> list[Problem]:
    """Rows/columns name trial params (``flat_params``): a typo would group every run into one empty cell;
    metrics name what the runs report: a typo would print a table of empty cells."""
    if spec.table is None:
        return []
    reported = _reported_metrics(spec)
    problems = [Problem(f"table.metrics[{i}].{field}", f"not a metric the runs report{did_you_mean(name, reported)}",
                        name, ", ".join(reported))
                for i, metric in enumerate(spec.table.metrics) for field in ("name", "of")
                for name in [getattr(metric, field)] if name is not None and name not in reported]
    if not trials:
        return problems
    allowed = list(trials[0].flat_params())
    for section in ("rows", "columns"):
        for i, param in enumerate(getattr(spec.table, section)):
            if param not in allowed:
                problems.append(Problem(f"table.{section}[{i}]", f"not a trial parameter{did_you_mean(param, allowed)}",
                                        param, ", ".join(allowed)))
    return problems


def tune_problems(spec: SweepSpec) -> list[Problem]:
    """Tune would wait for a metric no trial ever reports (its strict check is off, see orchestrator.run.tune)."""
    metric = spec.tune.metric
    if metric in EPOCH_METRICS:
        return []
    return [Problem("tune.metric", f"not a metric the trainer reports{did_you_mean(metric, EPOCH_METRICS)}",
                    metric, ", ".join(EPOCH_METRICS))]


def _store_folder(uri: str, scheme: str) -> Path | None:
    """The folder that must exist for a local store to be created in it (None: in memory or not local)."""
    if scheme == "sqlite":
        rest = uri.split(":", 1)[1]
        if not rest.startswith("///") or rest[3:] in ("", ":memory:"):
            return None
        return Path(os.path.abspath(rest[3:])).parent
    path = urlparse(uri).path
    return Path(os.path.abspath(path)).parent if path else None


def store_scheme(uri: str) -> str:
    """The URI's scheme without a SQLAlchemy driver (``sqlite+pysqlite:///x.db`` -> ``sqlite``), lower case."""
    m = _URI_RE.match(uri)
    return m.group(1).lower() if m else uri.lower()


def tracking_problems(spec: SweepSpec, *, external: bool) -> list[Problem]:
    """A URI MLflow can open; with ``external``, the local folder that will hold the store exists."""
    uri = spec.tracking.uri
    m = _URI_RE.match(uri)
    scheme, driver = store_scheme(uri), m.group(2) if m else None
    bad = scheme not in _SCHEMES or (driver is not None and scheme not in _DATABASES)
    if not m and scheme != "databricks" or bad:
        return [Problem("tracking.uri", "not a tracking URI", uri, _URI_FORMS)]
    if scheme in ("http", "https") and not urlparse(uri).netloc:
        return [Problem("tracking.uri", "an http(s) URI needs a host", uri, "http(s)://HOST[:PORT]")]
    if external and scheme in ("sqlite", "file"):
        folder = _store_folder(uri, scheme)
        if folder is not None and not folder.is_dir():
            return [Problem("tracking.uri", f"the folder that would hold the store does not exist: {folder}", uri,
                            "a store in an existing folder (create it first)")]
    return []  # whether the store opens is asked of MLflow's side: orchestrator.run.preflight


def evaluation_source_problems(spec: SweepSpec) -> list[Problem]:
    """Running an evaluation sweep before its source sweep ran would do nothing and look like success."""
    if spec.evaluate is None:
        return []
    folder = Path(spec.storage.root) / spec.evaluate.source_sweep
    if folder.is_dir():
        return []
    return [Problem("evaluate.source_sweep", f"the source sweep has no recorded folder under the storage root "
                    f"(no {folder})", spec.evaluate.source_sweep,
                    "a sweep already run with this storage.root (run it first; `convsweep plan` shows what is found)")]
