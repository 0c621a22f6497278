"""Checks of a sweep beyond its schema: names, data roots, layer knobs (and knobs no trial reads), table layout,
tune metric, tracking URI. None of them imports torch: a model is checked from ``layers.catalogue``, not built.

``orchestrator.spec.expand.check_sweep`` runs them; each returns ``Problem``s whose key is the one the user wrote
(a base key when the bad value comes from ``base``, the grid/zip key when it comes from there).
``validate_every_profile`` is ``convsweep validate`` without ``--profile``: a typo in a profile nobody selected
today would otherwise surface on the day someone does.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.spec.schema import LayerSpec, SweepSpec, TrialSpec
from orchestrator.spec.metricnames import EPOCH_METRICS
from orchestrator.spec.load import ConfigError, Problem

__all__ = [
    "evaluation_source_problems", "ignored_knob_problems", "layer_problems", "name_problems", "root_problems",
    "table_problems", "tracking_problems", "tracking_reachability_problems", "tune_problems", "validate_every_profile",
]

Pairs = list[tuple[TrialSpec, dict[str, str]]]

# the SQL stores go through SQLAlchemy, whose URIs may name a driver (postgresql+psycopg2://)
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9.-]*)(?:\+([A-Za-z0-9_]+))?:")
_URI_FORMS = ("sqlite:///FILE.db, file:///DIR, http(s)://HOST[:PORT], postgresql|mysql|mssql[+driver]://..., "
              "databricks[://PROFILE]")


def _blame(path: str, sources: dict[str, str]) -> str:
    """The sweep-file key that set trial path ``path``: its grid/zip key (or a parent's), else ``base.<path>``."""
    for varied, source in sources.items():
        if path == varied or path.startswith(varied + "."):
            return source + path[len(varied):]
    return f"base.{path}"


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def name_problems(pairs: Pairs) -> list[Problem]:
    import layers
    import pipelines

    problems = []
    for trial, sources in pairs:
        for path, value, allowed in (("model", trial.model, layers.MODEL_NAMES),
                                     ("layer.method", trial.layer.method, layers.METHODS),
                                     ("dataset.name", trial.dataset.name, pipelines.DATASETS),
                                     ("dataset.backend", trial.dataset.backend, pipelines.BACKENDS)):
            if value not in allowed:
                problems.append(Problem(_blame(path, sources), "unknown name", value, ", ".join(allowed)))
    return problems


def root_problems(pairs: Pairs) -> list[Problem]:
    import pipelines

    problems, seen = [], set()
    for trial, sources in pairs:
        ds = trial.dataset
        if ds.name == "digits" or ds.backend == "synthetic" or (ds.name, ds.root) in seen:
            continue  # digits ships with scikit-learn; synthetic data needs no files
        seen.add((ds.name, ds.root))
        try:
            pipelines.check_root(ds.name, ds.root)
        except ValueError as exc:
            problems.append(Problem(_blame("dataset.root", sources), f"{ds.name}: {exc}"))  # quotes the root
    return problems


_KNOB_PATHS = {"model": "model", **{name: f"layer.{name}" for name in LayerSpec.model_fields}}
_SUBJECT_RE = re.compile(r"(?<![\w.])(\w+) (?:must|applies)\b")


def _layer_key(message: str, sources: dict[str, str]) -> str:
    """The key to blame for a layer-build error: the knob the message is about, where the user wrote it.

    ``layers`` words its errors "<knob> must be ..." (or "<knob> applies only to ..."): that knob's value is
    the bad one, whether it came from base or from a grid key that happens to vary something else.
    """
    subject = _SUBJECT_RE.search(message)
    if subject and subject.group(1) in _KNOB_PATHS:
        return _blame(_KNOB_PATHS[subject.group(1)], sources)
    named = sorted((m.start(), path) for name, path in _KNOB_PATHS.items()
                   for m in [re.search(rf"(?<![\w.]){re.escape(name)}\b", message)] if m)
    if named:
        # a combination (dilate with skp at kernel_size): the named knob that varies is what makes it fail
        varied = [path for _, path in named if _blame(path, sources) != f"base.{path}"]
        return _blame((varied or [named[0][1]])[0], sources)
    varied = [p for p in sources if p == "model" or p.startswith("layer")]
    return sources[varied[0]] if varied else "base.layer"


def layer_problems(pairs: Pairs) -> list[Problem]:
    """Check each distinct (model, classes, method, knobs) once, without building (``layers.catalogue``).

    Only a model registered at run time, whose kernels the catalogue does not know, is built, on the meta
    device; the models a sweep file can name are all in the catalogue, so validation never imports torch.
    """
    import layers
    import pipelines
    from layers.catalogue import check_build

    problems, seen, said = [], set(), set()
    for trial, sources in pairs:
        knobs = trial.layer.build_knobs()
        ident = (trial.model, trial.dataset.name, trial.layer.method, _canon(knobs))
        if ident in seen:
            continue
        seen.add(ident)
        info = pipelines.dataset_info(trial.dataset.name)
        args = (trial.model, info.num_classes, trial.layer.method)
        try:
            if not check_build(*args, in_channels=info.in_channels, **knobs):
                import torch

                with torch.device("meta"):
                    layers.build_model(*args, in_channels=info.in_channels, **knobs)
        except ValueError as exc:
            key = _layer_key(str(exc), sources)
            if (key, str(exc)) in said:
                continue  # the same mistake in another model: once is enough
            said.add((key, str(exc)))
            where = f"model {trial.model}, method {trial.layer.method}"
            problems.append(Problem(key, f"invalid layer settings ({where}): {exc}"))  # layers quotes the value
    return problems


def _method_knobs() -> dict[str, frozenset[str]]:
    """LayerSpec fields that only some methods read (from ``layers.knobs.METHOD_KNOBS``), -> those methods."""
    from layers.knobs import METHOD_KNOBS

    every = set.intersection(*(set(knobs) for knobs in METHOD_KNOBS.values()))
    fields = set(LayerSpec.model_fields) - every - {"init"}  # init is also a model's knob (layers.catalogue)
    return {f: frozenset(m for m, knobs in METHOD_KNOBS.items() if f in knobs) for f in sorted(fields)
            if any(f in knobs for knobs in METHOD_KNOBS.values())}


def _uses(layer: LayerSpec, field: str, by_method: dict[str, frozenset[str]]) -> bool:
    if field == "orth_weight":
        return layer.orth
    return field not in by_method or layer.method in by_method[field]


def ignored_knob_problems(spec: SweepSpec, pairs: Pairs) -> list[Problem]:
    """Layer knobs the user set that no trial's method reads, and trials repeating another's computation.

    A method-specific knob (``sigma_init``: the GMConv methods) written in ``base.layer`` or varied by a grid
    or zip key must be read by at least one trial; a knob some trials read and others ignore is fine unless
    two trials then differ only in it (a grid ``layer.sigma_init`` crossed with method ``stdconv``).
    """
    from layers.knobs import METHOD_KNOBS

    by_method = _method_knobs()
    trials = [t for t, _ in pairs]
    methods = sorted({t.layer.method for t in trials}, key=list(METHOD_KNOBS).index)
    allowed = "; ".join(f"{m}: {', '.join(k for k in METHOD_KNOBS[m] if k in LayerSpec.model_fields)}"
                        for m in methods)
    written = {f"layer.{f}": f"base.layer.{f}" for f in spec.base.layer.model_fields_set}
    written.update({key: f"grid.{key}" for key in spec.grid if key.startswith("layer.")})
    written.update({key: f"zip[{i}].{key}" for i, group in enumerate(spec.zip) for key in group
                    if key.startswith("layer.")})
    problems, unused = [], set()
    for path, key in written.items():
        field = path.removeprefix("layer.")
        if field in LayerSpec.model_fields and not any(_uses(t.layer, field, by_method) for t in trials):
            unused.add(field)
            value = _get_path(spec, key)
            problems.append(Problem(key, f"no trial's method reads this knob (methods here: {', '.join(methods)}); "
                                    "remove it, or set allow_ignored_knobs: true", value,
                                    f"knobs of {allowed}" + ("; orth_weight with orth: true"
                                                             if field == "orth_weight" else "")))
    seen: dict[str, TrialSpec] = {}
    for trial, sources in pairs:
        data = trial.model_dump(mode="json", exclude={"layer"})
        data["layer"] = {f: v for f, v in trial.layer.model_dump(mode="json").items()
                         if _uses(trial.layer, f, by_method)}
        first = seen.setdefault(_canon(data), trial)
        if first is trial:
            continue
        ignored = sorted(f for f in LayerSpec.model_fields if f not in unused
                         and getattr(first.layer, f) != getattr(trial.layer, f))
        if not ignored:
            continue  # they repeat through a knob no trial reads: said above
        keys = sorted({_blame(f"layer.{f}", sources) for f in ignored})
        problems.append(Problem(keys[0], f"trials {first.trial_key} and {trial.trial_key} repeat one "
                                f"computation: method {trial.layer.method} ignores {', '.join(ignored)}; drop the "
                                "repeats with a zip group or exclude, or set allow_ignored_knobs: true",
                                allowed=f"knobs of {allowed}"))
        break  # one example says enough: the rest repeat for the same reason
    return problems


def _get_path(spec: SweepSpec, key: str) -> Any:
    if key.startswith("base."):
        return getattr(spec.base.layer, key.rsplit(".", 1)[1])
    if key.startswith("grid."):
        return spec.grid[key[len("grid."):]]
    index, _, dotted = key[len("zip["):].partition("].")
    return spec.zip[int(index)][dotted]


def _did_you_mean(name: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f", did you mean {close[0]!r}?" if close else ""


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
    problems = [Problem(f"table.metrics[{i}].{field}", f"not a metric the runs report{_did_you_mean(name, reported)}",
                        name, ", ".join(reported))
                for i, metric in enumerate(spec.table.metrics) for field in ("name", "of")
                for name in [getattr(metric, field)] if name is not None and name not in reported]
    if not trials:
        return problems
    allowed = list(trials[0].flat_params())
    for section in ("rows", "columns"):
        for i, param in enumerate(getattr(spec.table, section)):
            if param not in allowed:
                problems.append(Problem(f"table.{section}[{i}]", f"not a trial parameter{_did_you_mean(param, allowed)}",
                                        param, ", ".join(allowed)))
    return problems


def tune_problems(spec: SweepSpec) -> list[Problem]:
    """Tune would wait for a metric no trial ever reports (its strict check is off, see orchestrator.run.tune)."""
    metric = spec.tune.metric
    if metric in EPOCH_METRICS:
        return []
    return [Problem("tune.metric", f"not a metric the trainer reports{_did_you_mean(metric, EPOCH_METRICS)}",
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


def tracking_problems(spec: SweepSpec, *, external: bool) -> list[Problem]:
    """A URI MLflow can open; with ``external``, the local folder that will hold the store exists."""
    uri = spec.tracking.uri
    m = _URI_RE.match(uri)
    scheme, driver = (m.group(1).lower(), m.group(2)) if m else (uri.lower(), None)
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
        from orchestrator.track.store import unreachable_reason

        reason = unreachable_reason(uri)  # a folder nobody may write to, a file that is not a database
        if reason is not None:
            return [Problem("tracking.uri", f"the store cannot be opened: {reason}", uri,
                            "a SQLite file (or a folder for it) this user can write")]
    return []


def tracking_reachability_problems(spec: SweepSpec, timeout: float | None = None) -> list[Problem]:
    """An MLflow server that does not answer within a few seconds (``validate --offline`` skips this)."""
    from orchestrator.track.store import PROBE_SECONDS, unreachable_reason

    uri = spec.tracking.uri
    if urlparse(uri).scheme.lower() not in ("http", "https"):
        return []  # local stores are checked with the schema (tracking_problems)
    reason = unreachable_reason(uri, PROBE_SECONDS if timeout is None else timeout)
    if reason is None:
        return []
    return [Problem("tracking.uri", f"the MLflow server does not answer ({reason})", uri,
                    "a running server (mlflow server ...); `convsweep validate --offline` skips this check")]


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


def validate_every_profile(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SweepSpec:
    """Load the file as written, then once per profile; the first failure names its profile. Returns the first."""
    from orchestrator.spec.load import _read_yaml, load_sweep

    spec = load_sweep(path, None, overrides)
    profiles = _read_yaml(Path(path)).get("profiles") or {}
    for name, sets in profiles.items():
        if not sets:
            continue  # the file as written: checked above
        try:
            # everything but data roots and executors, which belong to the machine a profile is run on
            other = load_sweep(path, str(name), overrides, check=False)
            from orchestrator.spec.expand import expand_with_sources

            pairs = expand_with_sources(other)
            problems = name_problems(pairs) or layer_problems(pairs)
            if problems:
                raise ConfigError(problems, path)
        except ConfigError as exc:
            tagged = [p if "[set by profile" in p.problem else dataclasses.replace(p, problem=f"{p.problem} "
                      f"[profile {name}]") for p in exc.problems]
            raise ConfigError(tagged, exc.file) from None
    return spec
