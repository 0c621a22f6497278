"""MLflow bookkeeping of a sweep, driver side only: compute nodes never talk to the tracking server.

One MLflow run per trial, found again by its ``convsweep.trial_key`` tag (or the id the driver wrote into
the trial directory before the first submission), so a retried, resumed or re-run trial always writes into
the same run. The trial's ``metrics.jsonl`` is turned into metrics with ``step = epoch``; epochs already
logged are skipped, so replaying the file after a crash or a resume duplicates nothing. Params are logged
once, when the run is created. Works the same with a SQLite URI and an ``mlflow server`` URI.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.spec.schema import TrialSpec
from orchestrator.spec.metricnames import EPOCH_METRICS
from orchestrator.track.gitcommit import git_commit
from orchestrator.track.store import TAG, absolute_tracking_uri, bound_http_retries, is_unreachable_error
from orchestrator.dirs.trialdir import TrialDir

__all__ = ["Tracker", "git_commit", "absolute_tracking_uri", "EPOCH_METRICS", "TAG"]

logger = logging.getLogger(__name__)

# MLflow keeps tag values up to 8,000 characters; keep the error tag well inside it.
_ERROR_TAIL_CHARS = 6000
_BATCH = 100
T = TypeVar("T")


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store beside its file (MLflow's default is ./mlruns under whatever directory
    the driver happened to start in); a server or another database decides for itself."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return None
    return (Path(uri[len(prefix):]).resolve().parent / "mlartifacts").as_uri()


def _retry(call: Callable[[], T], what: str, attempts: int = 6, connect_attempts: int | None = None) -> T:
    """Retry a tracking call through short outages (a locked SQLite file, a restarting server).

    ``connect_attempts`` bounds the attempts on a connection failure separately: a caller that retries on
    its own (the proxy, on its next poll) asks for few, so it is not held here for the whole backoff.
    """
    connect_attempts = attempts if connect_attempts is None else connect_attempts
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as e:
            text = str(e).lower()
            locked, connect = "locked" in text, "connect" in text
            if not (locked or connect) or attempt >= (attempts if locked else connect_attempts) - 1:
                raise
            logger.warning("MLflow %s failed (%s); retrying", what, str(e).splitlines()[0])
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _error_tag(traceback_text: str) -> str:
    """One line saying what failed, then the traceback's tail."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    head = lines[-1] if lines else "failed"
    tail = traceback_text.strip()[-_ERROR_TAIL_CHARS:]
    return f"{head}\n{tail}"


def _epoch_metrics(record: dict[str, Any], timestamp: int) -> list[Metric]:
    step = int(record["epoch"])
    metrics: list[Metric] = []
    for key in EPOCH_METRICS:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics.append(Metric(key, float(value), timestamp, step))
    for name, value in (record.get("sigma") or {}).items():
        metrics.append(Metric(f"sigma.{name}", float(value), timestamp, step))
    # "epoch" goes last: it marks the epoch as logged (the batch is one transaction in the SQL stores).
    metrics.append(Metric("epoch", float(step), timestamp, step))
    return metrics


class Tracker:
    """The runs of one sweep in one MLflow experiment."""

    def __init__(self, uri: str, experiment: str, sweep: str, *, connect_attempts: int = 6) -> None:
        self.uri = uri
        self.sweep = sweep
        self._connect_attempts = connect_attempts
        bound_http_retries()
        self.client = MlflowClient(tracking_uri=uri)
        found = self._call(lambda: self.client.get_experiment_by_name(experiment), "get experiment")
        if found is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment, _artifact_location(uri))
            except MlflowException:
                # Another process created it between our lookup and create.
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = found.experiment_id
        self._logged_epoch: dict[str, int] = {}

    def _call(self, call: Callable[[], T], what: str) -> T:
        return _retry(call, what, connect_attempts=self._connect_attempts)

    # -- finding runs ------------------------------------------------------------------------------------
    def runs(self, trial_key: str | None = None) -> list[Any]:
        """Active runs of this sweep (optionally of one trial), oldest first."""
        query = f"tags.`{TAG}sweep` = '{self.sweep}'"
        if trial_key is not None:
            query += f" and tags.`{TAG}trial_key` = '{trial_key}'"
        found: list[Any] = []
        token = None
        while True:
            page = self._call(lambda: self.client.search_runs([self.experiment_id], query, ViewType.ACTIVE_ONLY,
                                                              max_results=1000, page_token=token), "search runs")
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda r: r.info.start_time or 0)

    def finished_keys(self) -> set[str]:
        return {
            r.data.tags[f"{TAG}trial_key"] for r in self.runs() if r.info.status == RunStatus.to_string(RunStatus.FINISHED)
        }

    def stopped_keys(self) -> set[str]:
        """Trials the scheduler stopped early (KILLED on purpose): settled, not to be run again."""
        return {
            r.data.tags[f"{TAG}trial_key"] for r in self.runs()
            if r.info.status == "KILLED" and r.data.tags.get(f"{TAG}stopped") == "scheduler"
        }  # fmt: skip

    def status_by_key(self) -> dict[str, Any]:
        """The (latest) run of each trial key."""
        return {r.data.tags[f"{TAG}trial_key"]: r for r in self.runs()}

    # -- one trial's run ---------------------------------------------------------------------------------
    def ensure_run(self, spec: TrialSpec, trial_dir: TrialDir, *, executor: str, git: str, kind: str = "train") -> str:
        """The run of this trial: the one recorded in the trial directory, else by trial key, else a new one.

        A re-used run is set RUNNING again; params are logged only when the run is created.
        """
        run_id = self._reusable(trial_dir.read_run_id(), spec.trial_key)
        if run_id is None:
            tags = {
                f"{TAG}sweep": spec.sweep,
                f"{TAG}trial_key": spec.trial_key,
                f"{TAG}trial_dir": str(trial_dir.path),
                f"{TAG}git_commit": git,
                f"{TAG}executor": executor,
                f"{TAG}host": socket.gethostname(),
                f"{TAG}kind": kind,
                f"{TAG}requeues": "0",
            }
            run = self._call(
                lambda: self.client.create_run(
                    self.experiment_id, tags=tags, run_name=f"{spec.model}-{spec.layer.method}-{spec.trial_key}"
                ),
                "create run",
            )
            run_id = run.info.run_id
            trial_dir.write_run_id(run_id)  # before the params: a failure below finds this run again
            self._log_params(run_id, spec, {})
        else:
            # a creation cut short by an outage may have left params out: log those (never change one)
            self._log_params(run_id, spec, self._call(lambda: self.client.get_run(run_id), "get run").data.params)
            self._call(lambda: self.client.update_run(run_id, status="RUNNING"), "update run")
            self.set_tags(run_id, {f"{TAG}executor": executor, f"{TAG}host": socket.gethostname()})
        trial_dir.write_run_id(run_id)
        return run_id

    def _log_params(self, run_id: str, spec: TrialSpec, logged: dict[str, str]) -> None:
        params = [Param(k, v) for k, v in sorted(spec.flat_params().items()) if k not in logged]
        for i in range(0, len(params), _BATCH):
            self._call(lambda: self.client.log_batch(run_id, params=params[i : i + _BATCH]), "log params")

    def _reusable(self, recorded: str | None, trial_key: str) -> str | None:
        if recorded is not None:
            try:
                run = self._call(lambda: self.client.get_run(recorded), "get run")
            except MlflowException as exc:
                if is_unreachable_error(exc):
                    raise
                run = None  # recorded against another tracking store, or deleted for good
            if run is not None and run.info.lifecycle_stage == "active" and run.data.tags.get(f"{TAG}trial_key") == trial_key:
                return recorded
        runs = self.runs(trial_key)
        return runs[-1].info.run_id if runs else None

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        items = [RunTag(k, v) for k, v in tags.items()]
        self._call(lambda: self.client.log_batch(run_id, tags=items), "set tags")

    def record_job(self, run_id: str, job_id: str, *, restarts: int = 0, log_path: str | None = None) -> None:
        """Tag the latest job id, log path and the run's requeue count.

        ``convsweep.job_ids`` lists every job the trial had (a resubmission by the driver or a Tune retry is a
        new job); ``convsweep.job_restarts`` holds, in the same order, how often the scheduler started each
        job again under its id (a SLURM requeue or preemption). ``convsweep.requeues`` = resubmissions +
        restarts.
        """
        tags = self._call(lambda: self.client.get_run(run_id), "get run").data.tags
        ids = [j for j in tags.get(f"{TAG}job_ids", "").split(",") if j]
        counts = [int(c) if c.isdigit() else 0 for c in tags.get(f"{TAG}job_restarts", "").split(",") if c]
        counts = (counts + [0] * len(ids))[: len(ids)]
        if not ids or ids[-1] != job_id:
            ids.append(job_id)
            counts.append(0)
        counts[-1] = max(counts[-1], int(restarts))
        update = {
            f"{TAG}job_id": job_id,
            f"{TAG}job_ids": ",".join(ids),
            f"{TAG}job_restarts": ",".join(str(c) for c in counts),
            f"{TAG}requeues": str(len(ids) - 1 + sum(counts)),
        }
        if log_path is not None:
            update[f"{TAG}log_path"] = log_path
        if any(tags.get(k) != v for k, v in update.items()):
            self.set_tags(run_id, update)

    def logged_epoch(self, run_id: str) -> int:
        if run_id not in self._logged_epoch:
            history = self._call(lambda: self.client.get_metric_history(run_id, "epoch"), "metric history")
            self._logged_epoch[run_id] = max((int(m.step) for m in history), default=0)
        return self._logged_epoch[run_id]

    def log_epochs(self, run_id: str, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Log the epochs not logged yet (in order); returns the records that were new."""
        done = self.logged_epoch(run_id)
        new = [r for r in records if int(r["epoch"]) > done]
        for record in new:
            metrics = _epoch_metrics(record, int(time.time() * 1000))
            try:
                self._call(lambda: self.client.log_batch(run_id, metrics=metrics), "log metrics")
            except Exception:
                # the batch may have landed before the answer was lost: ask the store again next time
                self._logged_epoch.pop(run_id, None)
                raise
            self._logged_epoch[run_id] = int(record["epoch"])
        return new

    def sync(self, run_id: str, trial_dir: TrialDir) -> list[dict[str, Any]]:
        return self.log_epochs(run_id, trial_dir.read_metrics())

    def log_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        step = int(summary.get("epochs") or 0)
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in sorted(summary.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k != "epochs"
        ]
        # replayed after a crash between this call and the run's end: log only the (key, step) not there yet
        there = self._call(lambda: self.client.get_run(run_id), "get run").data.metrics
        metrics = [m for m in metrics if m.key not in there or step not in self._steps(run_id, m.key)]
        backend = summary.get("data_backend")  # the loader `auto` chose (orchestrator.dirs.trialdir)
        tags = [RunTag(f"{TAG}data_backend", backend)] if isinstance(backend, str) else []
        if metrics or tags:
            self._call(lambda: self.client.log_batch(run_id, metrics=metrics, tags=tags), "log summary")

    def _steps(self, run_id: str, key: str) -> set[int]:
        return {int(m.step) for m in self._call(lambda: self.client.get_metric_history(run_id, key), "history")}

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        """Copy every file of ``folder`` into the run's artifacts under ``artifact_path`` (no-op when absent)."""
        if folder.is_dir() and any(folder.iterdir()):
            self._call(lambda: self.client.log_artifacts(run_id, str(folder), artifact_path), "log artifacts")

    def end(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set the run's terminal status (FINISHED, FAILED or KILLED) and, on failure, the error tag."""
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status: not a terminal run status (got {status!r}; allowed: FINISHED, FAILED, KILLED)")
        if error:
            self.set_tags(run_id, {f"{TAG}error": _error_tag(error)})
        elif status == "FINISHED":
            run = self._call(lambda: self.client.get_run(run_id), "get run")
            if f"{TAG}error" in run.data.tags:  # an earlier attempt failed; this one did not
                self._call(lambda: self.client.delete_tag(run_id, f"{TAG}error"), "delete tag")
        self._call(lambda: self.client.set_terminated(run_id, status), "end run")
