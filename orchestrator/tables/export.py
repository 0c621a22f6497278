"""A sweep's runs as one portable file, and tables rendered from such a file without MLflow.

``convsweep export SWEEP --out FILE`` writes every MLflow run of a sweep (any status): its trial key, seed,
status, the code version that drove it, every param, every metric's full per-epoch history and its latest
value (the summaries ``best_val_top1``, ``final_val_top1``, ... among them). ``convsweep table FILE --runs
EXPORT`` lays the same table out of that file alone, so a result can be committed, mailed and re-rendered on
a machine that has neither the MLflow store nor the data.

Formats, by the output's suffix:
- ``.jsonl`` (the default): a header line (``kind: sweep``), then one line per run (``kind: run``). Nested
  histories stay nested, the file diffs line by line in git, and reading it needs only the standard library.
- ``.csv``: tidy, one row per run and epoch (``step``), params as ``param:<name>`` and latest values as
  ``latest:<name>`` columns repeated on each of the run's rows, per-epoch values in one column per metric;
  for pandas or R. Both formats read back into the same runs (in CSV an absent param reads as an empty one).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orchestrator.track.query import SWEEP_TAG, RunRecord

__all__ = ["ExportedRun", "FORMAT", "export_sweep", "read_export", "write_export", "HistoryFromExport"]

FORMAT = "convsweep-runs/1"
_TAG = "convsweep."


@dataclass(frozen=True)
class ExportedRun:
    run_id: str
    trial_key: str
    sweep: str
    status: str
    git_commit: str
    params: dict[str, str]
    metrics: dict[str, float]  # latest value of every metric (summaries included)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(step, value)]
    tags: dict[str, str] = field(default_factory=dict)  # the convsweep.* tags
    start_time: int | None = None  # ms since the epoch, as MLflow keeps it
    end_time: int | None = None

    @property
    def seed(self) -> str | None:
        return self.params.get("seed")

    def record(self) -> RunRecord:
        return RunRecord(self.run_id, self.status, self.sweep, self.params, self.metrics)


def _number(value: float) -> float | str:
    # JSON has no NaN/inf; spell them as strings so the file stays strict JSON
    return value if math.isfinite(value) else repr(value)


def _float(value: Any) -> float:
    return float(value)  # float("nan"), float("inf") read the spellings _number writes


def fetch_exported_runs(tracking_uri: str, experiment: str, sweep_name: str) -> list[ExportedRun]:
    """Every run of ``sweep_name`` in ``experiment`` (any status), with each metric's full history."""
    from mlflow.tracking import MlflowClient

    from orchestrator.track.query import fetch_runs

    runs = fetch_runs(tracking_uri, experiment, sweep_name, finished_only=False)
    client = MlflowClient(tracking_uri=tracking_uri)
    out = []
    for run in runs:
        tags = {k: v for k, v in run.data.tags.items() if k.startswith(_TAG)}
        history = {}
        for key in sorted(run.data.metrics):
            points = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key))
            history[key] = [(step, value) for step, _, value in points]
        out.append(ExportedRun(
            run_id=run.info.run_id, trial_key=tags.get(f"{_TAG}trial_key", ""), sweep=tags.get(SWEEP_TAG, ""),
            status=run.info.status, git_commit=tags.get(f"{_TAG}git_commit", "unknown"),
            params=dict(sorted(run.data.params.items())), metrics=dict(sorted(run.data.metrics.items())),
            history=history, tags=dict(sorted(tags.items())), start_time=run.info.start_time,
            end_time=run.info.end_time))
    # a stable order, so that two exports of the same store are the same file
    return sorted(out, key=lambda r: (r.trial_key, r.run_id))


def write_export(runs: Sequence[ExportedRun], path: str | Path, *, sweep: str, experiment: str,
                 tracking_uri: str) -> Path:
    """Write ``runs`` to ``path`` (``.jsonl`` or ``.csv``, by suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise ValueError(f"--out: {path}: unknown export format {path.suffix!r} (allowed: .jsonl, .csv)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".jsonl":
        header = {"kind": "sweep", "format": FORMAT, "sweep": sweep, "experiment": experiment,
                  "tracking_uri": tracking_uri, "runs": len(runs),
                  "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(header, sort_keys=True) + "\n")
            for r in runs:
                f.write(json.dumps({
                    "kind": "run", "run_id": r.run_id, "trial_key": r.trial_key, "sweep": r.sweep,
                    "status": r.status, "seed": r.seed, "git_commit": r.git_commit, "start_time": r.start_time,
                    "end_time": r.end_time, "params": r.params,
                    "metrics": {k: _number(v) for k, v in r.metrics.items()},
                    "history": {k: [[s, _number(v)] for s, v in pts] for k, pts in r.history.items()},
                    "tags": r.tags,
                }, sort_keys=True) + "\n")
    else:
        _write_csv(runs, tmp)
    tmp.replace(path)  # never a half-written export under the final name
    return path


_FIXED = ("run_id", "trial_key", "sweep", "status", "seed", "git_commit", "start_time", "end_time", "step")


def _write_csv(runs: Sequence[ExportedRun], path: Path) -> None:
    params = sorted({k for r in runs for k in r.params})
    latest = sorted({k for r in runs for k in r.metrics})
    per_step = sorted({k for r in runs for k in r.history})
    tags = sorted({k for r in runs for k in r.tags})
    columns = [*_FIXED, *(f"param:{k}" for k in params), *(f"latest:{k}" for k in latest),
               *(f"tag:{k}" for k in tags), *per_step]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in runs:
            fixed = [r.run_id, r.trial_key, r.sweep, r.status, r.seed or "", r.git_commit,
                     "" if r.start_time is None else r.start_time, "" if r.end_time is None else r.end_time]
            common = ([r.params.get(k, "") for k in params] + [_cell(r.metrics.get(k)) for k in latest]
                      + [r.tags.get(k, "") for k in tags])
            steps = sorted({s for pts in r.history.values() for s, _ in pts}) or [None]
            by_step = {k: dict(pts) for k, pts in r.history.items()}
            for step in steps:
                values = [_cell(by_step.get(k, {}).get(step)) if step is not None else "" for k in per_step]
                writer.writerow([*fixed, "" if step is None else step, *common, *values])


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def read_export(path: str | Path) -> list[ExportedRun]:
    """The runs of an export written by ``write_export`` (either format)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--runs: {path}: no such export file (allowed: a .jsonl or .csv file written by "
                         f"`convsweep export`)")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    runs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--runs: {path}:{n}: not a JSON line ({exc.msg}; allowed: an export written by "
                                 f"`convsweep export`)") from None
            if n == 1:
                if obj.get("kind") != "sweep" or obj.get("format") != FORMAT:
                    raise ValueError(f"--runs: {path}:1: not a convsweep export header (got kind={obj.get('kind')!r}, "
                                     f"format={obj.get('format')!r}; allowed: format {FORMAT!r})")
                continue
            runs.append(ExportedRun(
                run_id=obj["run_id"], trial_key=obj["trial_key"], sweep=obj["sweep"], status=obj["status"],
                git_commit=obj["git_commit"], params=dict(obj["params"]),
                metrics={k: _float(v) for k, v in obj["metrics"].items()},
                history={k: [(int(s), _float(v)) for s, v in pts] for k, pts in obj["history"].items()},
                tags=dict(obj.get("tags", {})), start_time=obj.get("start_time"), end_time=obj.get("end_time")))
    return runs


def _read_csv(path: Path) -> list[ExportedRun]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _FIXED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"--runs: {path}: not a convsweep CSV export (lacks the columns {missing})")
        rows = list(reader)
    per_step = [c for c in rows[0] if c not in _FIXED and ":" not in c] if rows else []
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["run_id"], []).append(row)
    runs = []
    for run_id, group in grouped.items():
        first = group[0]
        history: dict[str, list[tuple[int, float]]] = {}
        for row in group:
            for k in per_step:
                if row["step"] != "" and row[k] != "":
                    history.setdefault(k, []).append((int(row["step"]), float(row[k])))
        runs.append(ExportedRun(
            run_id=run_id, trial_key=first["trial_key"], sweep=first["sweep"], status=first["status"],
            git_commit=first["git_commit"],
            # a CSV cell cannot tell an empty param from an absent one: the sweep's runs share their param
            # names, so an empty cell is an empty value
            params={k[6:]: v for k, v in first.items() if k.startswith("param:")},
            metrics={k[7:]: float(v) for k, v in first.items() if k.startswith("latest:") and v != ""},
            history=history, tags={k[4:]: v for k, v in first.items() if k.startswith("tag:") and v != ""},
            start_time=int(first["start_time"]) if first["start_time"] else None,
            end_time=int(first["end_time"]) if first["end_time"] else None))
    return runs


@dataclass(frozen=True)
class _Metric:
    step: int
    value: float


class HistoryFromExport:
    """Answers ``get_metric_history`` (all ``orchestrator.tables.pivot`` asks of an MLflow client) from an export."""

    def __init__(self, runs: Iterable[ExportedRun]) -> None:
        self._history: Mapping[str, Mapping[str, list[tuple[int, float]]]] = {r.run_id: r.history for r in runs}

    def get_metric_history(self, run_id: str, key: str) -> list[_Metric]:
        return [_Metric(s, v) for s, v in self._history.get(run_id, {}).get(key, [])]


def export_sweep(sweep: Any, out: str | Path, *, tracking_uri: str | None = None) -> tuple[Path, int]:
    """Export every run of the ``SweepSpec`` ``sweep`` from its MLflow store to ``out``: (path, runs)."""
    uri = tracking_uri or sweep.tracking.uri
    runs = fetch_exported_runs(uri, sweep.experiment, sweep.name)
    return write_export(runs, out, sweep=sweep.name, experiment=sweep.experiment, tracking_uri=uri), len(runs)
