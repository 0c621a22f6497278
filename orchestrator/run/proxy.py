"""The driver-side life of one trial: prepare its directory, submit its job, follow it, record it in MLflow.

``run_trial`` is what each trial runs, in a thread of the driver (``orchestrator.run.pool``) or as a Ray Tune
trial (``orchestrator.run.tune`` wraps it; this module does not import Ray). It is a thin proxy: the training happens in the job's processes, which talk to the driver only through
the trial directory. The proxy

1. writes ``spec.json`` and has the sweep's writer open the trial's MLflow run (creating it or re-using it),
2. ends a job of an earlier driver that is still running for this trial (its id is in ``job.json``), so two
   jobs never write into one directory -- a SIGKILLed driver leaves its jobs running, and the resumed trial
   continues from the last checkpoint instead,
3. submits ``TrialJob`` through the sweep's executor and records it in ``job.json`` and MLflow (job ids, log
   path, requeues: resubmissions plus the scheduler's own restarts of a job, ``JobHandle.requeues``),
4. tails ``metrics.jsonl``: new epochs go to ``report``, and the writer is told to log them to MLflow
   (epochs already logged are skipped),
5. ends the run FINISHED (summary metrics logged) as soon as rank 0 has written DONE -- the job's processes
   take seconds to exit, a reaper thread waits for that instead of the trial -- or FAILED (error tag,
   ``TrialFailed`` raised so Tune can retry); when it is interrupted (Tune stopped the trial, the process
   exits) the job is cancelled and the run ends KILLED.

The proxy imports no MLflow (under Tune's runtime each proxy is a Ray worker of its own, and MLflow would be
most of its memory): every tracking call goes to the sweep's one ``orchestrator.track.writer.TrackingWriter``
(``TrialWriter`` here; the driver's own, or a Ray actor under Tune's runtime). MLflow going away does not stop any of this: the writer keeps
what the store did not take and tries it again (``orchestrator.track.outbox``); a DONE trial waits for its
records to be in (up to a bound), then ends for Tune anyway and leaves them to ``convsweep resume``.

A sweep being stopped (``convsweep cancel``, or SIGINT/SIGTERM to the driver) is announced by the file
``<storage root>/<sweep>/STOPPING`` (``SweepDir.stopping``), written before any job is cancelled: a proxy then
submits nothing more, and a job that ends cancelled ends its run KILLED, not FAILED (no retry).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from orchestrator.spec.schema import ExecutorSpec, TrialSpec
from orchestrator.run.executors.base import Executor, JobHandle, JobState, get_executor, live_job
from orchestrator.run.sweepdir import SweepDir
# orchestrator.train.job is light (torch is imported when a job runs). The job's class must live in a module the
# job process can import cheaply: it is unpickled there, importing its module, and this one imports MLflow.
from orchestrator.train.job import TrialJob
from orchestrator.track.outbox import DRIVER_PID_ENV, grace_seconds  # light: MLflow is imported only where an error is judged
from orchestrator.dirs.trialdir import TrialDir

__all__ = ["TrialContext", "TrialFailed", "TrialWriter", "run_trial", "cancel_live_jobs"]

logger = logging.getLogger(__name__)


class TrialFailed(RuntimeError):
    """The trial's job failed; the message is its error's last line."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares: plain data, so it travels inside Tune's trial config."""

    storage_root: str
    tracking_uri: str
    experiment: str
    executor: dict[str, Any]
    executor_folder: str
    git: str
    poll_seconds: float = 0.25
    env: dict[str, str] = field(default_factory=dict)  # the driver's CONVSWEEP_* variables, for the jobs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialContext:
        return cls(**data)


class TrialWriter(Protocol):
    """What the proxy asks of the sweep's MLflow writer (``orchestrator.track.writer.TrackingWriter``), a trial
    being named by its directory. ``open_trial`` and ``finish`` wait (up to the grace); the others return as soon
    as the writer has the call."""

    def open_trial(self, spec: dict[str, Any], trial_dir: str, *, uri: str, experiment: str, executor: str,
                   git: str, env: dict[str, str]) -> str | None: ...
    def epochs(self, trial_dir: str) -> None: ...
    def job(self, trial_dir: str, job_id: str, *, restarts: int = 0, log_path: str | None = None) -> None: ...
    def end(self, trial_dir: str, status: str, error: str | None = None) -> None: ...
    def finish(self, trial_dir: str) -> bool: ...


# Jobs this process follows; ended (cancel + run KILLED) when the process exits without its proxy's
# ``finally`` having run (Ray terminates a stopped trial's actor without waiting for the trial's thread).
_LIVE: dict[str, tuple[JobHandle, TrialWriter, str]] = {}
_LIVE_LOCK = threading.Lock()


def _abandon(key: str) -> None:
    with _LIVE_LOCK:
        entry = _LIVE.pop(key, None)
    if entry is None:
        return
    handle, writer, trial_dir = entry
    if handle.done():
        return
    logger.info("trial %s interrupted: cancelling job %s", key, handle.job_id)
    handle.cancel()
    try:
        writer.end(trial_dir, "KILLED")
    except Exception:  # noqa: BLE001 - the writer is gone with the driver: the run stays RUNNING, resume takes it up
        logger.warning("trial %s: run not marked KILLED (the tracking writer is gone)", key, exc_info=True)


# Jobs whose trial is DONE but whose processes are still exiting (interpreter teardown takes seconds): the
# proxy does not wait for them, a reaper thread does, and ends any that do not exit in time.
_REAP_SECONDS = 120.0
_FAILED_GRACE_SECONDS = 5.0  # after a rank wrote FAILED, before the job's remaining processes are ended


def _reap(handle: JobHandle) -> None:
    deadline = time.monotonic() + _REAP_SECONDS
    while not handle.done():
        if time.monotonic() > deadline:
            logger.warning("job %s wrote DONE but did not exit: ending it", handle.job_id)
            handle.cancel()
            break
        time.sleep(0.5)


def _reap_later(handle: JobHandle) -> None:
    threading.Thread(target=_reap, args=(handle,), name=f"reap-{handle.job_id}", daemon=True).start()


def cancel_live_jobs() -> None:
    """Cancel every job this process follows and mark their runs KILLED.

    Jobs of DONE trials are left to exit on their own (cancelling one would record a finished SLURM job as
    CANCELLED); the driver ends any that linger (``orchestrator.run.session``).
    """
    for key in list(_LIVE):
        _abandon(key)


atexit.register(cancel_live_jobs)


def _end_stale_job(executor: Executor, td: TrialDir) -> None:
    stale = live_job(executor, td.read_job())
    if stale is not None:
        logger.warning("trial %s: ending job %s left running by an earlier driver", td.path.name, stale.job_id)
        stale.cancel()


def _job_environment(env: dict[str, str]) -> None:
    """Jobs inherit this process's environment: give them the driver's CONVSWEEP_* settings, and only those.

    A long-lived Ray cluster may have been started with other settings than the driver that submits now.
    """
    for key in [k for k in os.environ if k.startswith("CONVSWEEP_") and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def _trial_job(trial_dir: str) -> Any:
    """``TrialJob``, or the class ``CONVSWEEP_TRIAL_JOB`` names as ``module:Class`` (tests/bench/bench_scale.py's
    load generator, which follows the trial-directory protocol without training)."""
    name = os.environ.get("CONVSWEEP_TRIAL_JOB")
    if not name:
        return TrialJob(trial_dir)
    module, _, cls = name.partition(":")
    return getattr(importlib.import_module(module), cls)(trial_dir)


def _error_text(td: TrialDir, handle: JobHandle, state: JobState) -> str:
    text = td.failure or ""
    if not text.strip():
        text = handle.reason() or f"job {handle.job_id} ended {state.value} without writing DONE"
        if handle.log_path.exists():
            text = handle.log_path.read_text(encoding="utf-8", errors="replace")[-4000:] + "\n" + text
    return text


def _append_log(td: TrialDir, text: str) -> None:
    with open(td.log_path, "a", encoding="utf-8") as f:
        f.write(f"\n[convsweep driver] trial failed:\n{text.rstrip()}\n")


def run_trial(
    spec: TrialSpec,
    ctx: TrialContext,
    report: Callable[[dict[str, Any]], None],
    reported_epoch: int = 0,
    *,
    writer: TrialWriter,
) -> dict[str, Any]:
    """Run one trial to its end; returns its summary. ``report`` gets every epoch after ``reported_epoch``;
    ``writer`` records it in MLflow."""
    td = TrialDir.for_trial(ctx.storage_root, spec.sweep, spec.trial_key)
    td.create()
    spec_data = spec.model_dump(mode="json")
    td.write_spec(spec_data)
    settings = ExecutorSpec.model_validate(ctx.executor)
    trial_dir = str(td.path)
    # The job is submitted only once its run exists (its id is in the trial directory): the writer waits for an
    # unreachable store up to the grace.
    if writer.open_trial(spec_data, trial_dir, uri=ctx.tracking_uri, experiment=ctx.experiment,
                         executor=settings.kind, git=ctx.git,
                         env={**ctx.env, DRIVER_PID_ENV: str(SweepDir(ctx.storage_root, spec.sweep).driver_pid)}) is None:
        raise TrialFailed(f"trial {spec.trial_key}: MLflow at {ctx.tracking_uri} unreachable for "
                          f"{grace_seconds(ctx.env):.0f} s before its job was submitted; nothing ran "
                          f"(convsweep resume {spec.sweep} runs it)")
    executor = get_executor(settings, ctx.executor_folder)
    _end_stale_job(executor, td)

    def pump(reported: int) -> int:
        records = td.read_metrics()
        writer.epochs(trial_dir)
        for record in records:
            if int(record["epoch"]) > reported:
                report(record)
                reported = int(record["epoch"])
        return reported

    if td.is_done:  # the job ended while no driver watched it
        pump(reported_epoch)
        return _finish(td, writer)
    stopping = SweepDir(ctx.storage_root, spec.sweep).stopping
    if stopping.exists():  # the sweep is being stopped: start nothing new
        writer.end(trial_dir, "KILLED")
        return {}

    td.clear_markers()
    _job_environment(ctx.env)
    try:
        handle = executor.submit(_trial_job(trial_dir), name=f"{spec.sweep}-{spec.trial_key}", resources=spec.resources)
    except Exception:
        writer.end(trial_dir, "FAILED", traceback.format_exc())
        raise
    td.write_job(settings.kind, handle.job_id, log_path=str(handle.log_path))
    with _LIVE_LOCK:
        _LIVE[spec.trial_key] = (handle, writer, trial_dir)
    try:
        requeues = handle.requeues
        writer.job(trial_dir, handle.job_id, restarts=requeues, log_path=str(handle.log_path))
        reported, size, failed_since = reported_epoch, -1, None
        while True:
            state = handle.state()  # before reading: lines written before the job ended are then all seen
            if handle.requeues != requeues:  # the scheduler started the same job again (requeue)
                requeues = handle.requeues
                writer.job(trial_dir, handle.job_id, restarts=requeues)
            done = td.is_done  # rank 0 writes DONE last: every metrics line is there
            if td.failed_marker.exists() and not state.is_terminal:
                # One rank failed; the others may wait for it in a collective until the DDP timeout.
                failed_since = failed_since or time.monotonic()
                if time.monotonic() - failed_since > _FAILED_GRACE_SECONDS:
                    handle.cancel()
                    state = handle.state()
            new_size = td.metrics_path.stat().st_size if td.metrics_path.exists() else 0
            if new_size != size or state.is_terminal or done:
                size = new_size
                reported = pump(reported)
            if state.is_terminal or done:
                break
            time.sleep(ctx.poll_seconds)
        if td.is_done:
            with _LIVE_LOCK:
                _LIVE.pop(spec.trial_key, None)
            if not handle.done():
                _reap_later(handle)
            return _finish(td, writer)
        if stopping.exists() and state == JobState.CANCELLED:  # cancelled with the sweep: not a failure
            writer.end(trial_dir, "KILLED")
            return {}
        error = _error_text(td, handle, state)
        if not td.failure:  # the trainer logged its own traceback to job.log; this failure came from outside
            _append_log(td, error)
        # not waited for: Tune retries the trial, which finds the same run (still RUNNING if this is lost)
        writer.end(trial_dir, "FAILED", error)
        last = [line for line in error.strip().splitlines() if line.strip()]
        raise TrialFailed(f"trial {spec.trial_key}: {last[-1] if last else state.value}")
    finally:
        _abandon(spec.trial_key)


def _finish(td: TrialDir, writer: TrialWriter) -> dict[str, Any]:
    """The summary, once the writer has recorded it (or waited the grace for an unreachable store)."""
    writer.finish(str(td.path))
    return td.read_summary() or {}
