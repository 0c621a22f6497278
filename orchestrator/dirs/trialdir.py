"""The trial directory: the contract between a training job and the sweep driver.

A compute node needs nothing but this directory (on a cluster, on the shared filesystem): the driver writes
the resolved spec and the MLflow run id before submitting; rank 0 of the job appends one JSON line per
finished epoch, keeps atomic checkpoints and writes a summary and a DONE or FAILED marker at the end. The
driver turns those files into MLflow records, so training never depends on the tracking server and a crash of
either side loses nothing already written.

Layout (``<storage root>/<sweep>/<trial_key>/``)::

    spec.json           resolved TrialSpec (driver, before submit)
    mlflow_run_id       the trial's MLflow run (driver, before submit)
    checkpoints/last.pt checkpoints/prev.pt  (rank 0, atomic; each with a ``.sha256`` checksum beside it)
    checkpoints/best.pt checkpoints/best_prev.pt  the best epoch's weights by val_top1 (rank 0, atomic)
    metrics.jsonl       one object per finished epoch (rank 0); epoch 1's also holds "data_backend", the
                        loader backend the job runs on (``dataset.backend: auto`` resolved: pytorch,
                        dali-cpu, dali-gpu or synthetic), for the driver's MLflow tag convsweep.data_backend
    summary.json        final figures (rank 0), "data_backend" among them (of the attempt that finished)
    job.log             the job's log
    job.json            the trial's latest job: {"executor": kind, "job_id": id, ...} (driver, after submit);
                        how any later driver or `convsweep cancel` finds a job that may still be running
    DONE | FAILED       end markers; FAILED holds the traceback
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["TrialDir", "atomic_write_text", "read_json_file"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that a reader sees either the old file or the whole new one, never a torn write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json_file(path: Path, remedy: str) -> Any:
    """A JSON file's data; ValueError naming the file and ``remedy`` when it is not JSON (a torn copy, an edit)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not valid JSON ({_first_line(exc)}); {remedy}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TrialDir:
    """Paths and small I/O helpers for one trial's directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()

    def __repr__(self) -> str:
        return f"TrialDir({str(self.path)!r})"

    @classmethod
    def for_trial(cls, storage_root: str | os.PathLike[str], sweep: str, trial_key: str) -> TrialDir:
        return cls(Path(storage_root) / sweep / trial_key)

    # -- paths -------------------------------------------------------------------------------------------
    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def run_id_path(self) -> Path:
        return self.path / "mlflow_run_id"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def prev_checkpoint(self) -> Path:
        return self.checkpoint_dir / "prev.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    @property
    def prev_best_checkpoint(self) -> Path:
        return self.checkpoint_dir / "best_prev.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def log_path(self) -> Path:
        return self.path / "job.log"

    @property
    def job_path(self) -> Path:
        return self.path / "job.json"

    @property
    def done_marker(self) -> Path:
        return self.path / "DONE"

    @property
    def failed_marker(self) -> Path:
        return self.path / "FAILED"

    # -- spec and run id (driver side) -------------------------------------------------------------------
    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)

    def write_spec(self, spec: dict[str, Any]) -> None:
        atomic_write_text(self.spec_path, json.dumps(spec, indent=2, sort_keys=True) + "\n")

    @property
    def _start_again(self) -> str:
        return f"delete the trial folder {self.path} to run the trial again"

    def read_spec(self) -> dict[str, Any]:
        data = read_json_file(self.spec_path, self._start_again)
        if not isinstance(data, dict):
            raise ValueError(f"{self.spec_path}: not a trial spec (got {type(data).__name__}); {self._start_again}")
        return data

    def write_run_id(self, run_id: str) -> None:
        atomic_write_text(self.run_id_path, run_id + "\n")

    def read_run_id(self) -> str | None:
        if not self.run_id_path.exists():
            return None
        return self.run_id_path.read_text(encoding="utf-8").strip() or None

    # -- the trial's latest job (driver side) ---------------------------------------------------------------
    def write_job(self, executor: str, job_id: str, **extra: Any) -> None:
        """Record the job just submitted for this trial (replaces the previous record)."""
        record = {"executor": executor, "job_id": str(job_id), **extra}
        atomic_write_text(self.job_path, json.dumps(record, sort_keys=True) + "\n")

    def read_job(self) -> dict[str, Any] | None:
        """The latest job's record, or None before the first submission."""
        if not self.job_path.exists():
            return None
        # a lost job record is safe to drop only once its job is gone: the next driver submits a new one
        record = read_json_file(self.job_path, "delete it once no job of this trial runs any more")
        return record if isinstance(record, dict) and "job_id" in record else None

    # -- metrics (rank 0 writes, driver reads) -----------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one epoch's record; flushed and fsynced so a reader on another host sees whole lines."""
        line = json.dumps(record, sort_keys=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every whole epoch record, last record per epoch winning (an epoch re-run after a crash)."""
        by_epoch: dict[int, dict[str, Any]] = {}
        for record in self.iter_metrics():
            by_epoch[int(record["epoch"])] = record
        return [by_epoch[e] for e in sorted(by_epoch)]

    def keep_metrics_through(self, epoch: int) -> int:
        """Keep one record (the last) of each epoch up to ``epoch``, in order; returns how many lines went.

        The writer's side of a resume: the file is replaced atomically, so a reader sees the old or the new
        history. Lines that are no epoch record (torn by a crash, edited) go too: the writer cannot vouch for
        them, and the epochs they held are trained again.
        """
        if not self.metrics_path.exists():
            return 0
        lines = self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept: dict[int, str] = {}
        for line in lines:
            try:
                record = json.loads(line) if line.endswith("\n") else None
            except ValueError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("epoch"), (int, float)) and record["epoch"] <= epoch:
                kept.pop(int(record["epoch"]), None)  # the last record of an epoch wins, in its own place
                kept[int(record["epoch"])] = line
        if len(kept) == len(lines) and list(kept) == sorted(kept):
            return 0
        atomic_write_text(self.metrics_path, "".join(kept[e] for e in sorted(kept)))
        return len(lines) - len(kept)

    def iter_metrics(self) -> Iterator[dict[str, Any]]:
        if not self.metrics_path.exists():
            return
        with open(self.metrics_path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                # A line without its newline is still being written: read it next time.
                if not line.endswith("\n"):
                    break
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    record = _first_line(exc)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), (int, float)):
                    shown = record if isinstance(record, str) else f"got {line.strip()[:60]!r}"
                    raise ValueError(f"{self.metrics_path}: line {number}: not an epoch record ({shown}); delete "
                                     "that line (a resumed trial writes its epoch again) or the trial folder")
                yield record

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        if not self.summary_path.exists():
            return None
        data = read_json_file(self.summary_path, self._start_again)
        if not isinstance(data, dict):
            raise ValueError(f"{self.summary_path}: not a summary (got {type(data).__name__}); {self._start_again}")
        return data

    # -- end markers -------------------------------------------------------------------------------------
    def mark_done(self) -> None:
        self.failed_marker.unlink(missing_ok=True)
        atomic_write_text(self.done_marker, "")

    def mark_failed(self, traceback_text: str) -> None:
        atomic_write_text(self.failed_marker, traceback_text)

    def clear_markers(self) -> None:
        """Forget how the previous attempt ended, before a retry or a resume."""
        self.done_marker.unlink(missing_ok=True)
        self.failed_marker.unlink(missing_ok=True)

    @property
    def is_done(self) -> bool:
        return self.done_marker.exists()

    def contradiction(self, *, trains: bool = True, deep: bool = True) -> str | None:
        """Why this folder does not bear out a finished trial (every reason, "; "-joined), or None when it does.

        A finished trial has its DONE marker, a readable summary and, if it trains (an evaluation trial keeps
        no checkpoints) and still has checkpoints, an intact newest one (``orchestrator.dirs.checksum.damage``;
        ``deep=False``: sizes only). ``status`` reports a trial MLflow calls FINISHED that fails this;
        ``resume`` runs it again.
        """
        from orchestrator.dirs.checksum import damage

        reasons = []
        if not self.is_done:
            reasons.append("no DONE marker")
        if not self.summary_path.exists():
            reasons.append("no summary.json")
        else:
            try:
                self.read_summary()
            except ValueError:
                reasons.append("summary.json is not a readable summary")
        # the newest checkpoint there is: prev.pt alone is what a crash between the two renames leaves, and
        # none at all is a finished trial whose checkpoints were cleaned up to save space -- its result stands
        newest = next((p for p in (self.last_checkpoint, self.prev_checkpoint) if p.exists()), None)
        why = damage(newest, deep=deep) if trains and newest is not None else None
        if why is not None:
            reasons.append(f"checkpoints/{newest.name} {why}")
        return "; ".join(reasons) or None

    @property
    def failure(self) -> str | None:
        if not self.failed_marker.exists():
            return None
        return self.failed_marker.read_text(encoding="utf-8")
