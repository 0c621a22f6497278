"""The driver-side life of one trial: prepare its directory, submit its job, follow it, record it in MLflow.

``run_trial`` is what each Ray Tune trial runs (``orchestrator.run.tune`` wraps it; this module does not import
Ray). It is a thin proxy: the training happens in the job's processes, which talk to the driver only through
the trial directory. The proxy

1. writes ``spec.json`` and the MLflow run id (creating the run or re-using the trial's run),
2. ends a job of an earlier driver that is still running for this trial (its id is in ``job.json``), so two
   jobs never write into one directory -- a SIGKILLed driver leaves its jobs running, and the resumed trial
   continues from the last checkpoint instead,
3. submits ``TrialJob`` through the sweep's executor and records it in ``job.json`` and MLflow (job ids, log
   path, requeues: resubmissions plus the scheduler's own restarts of a job, ``JobHandle.requeues``),
4. tails ``metrics.jsonl``: new epochs go to MLflow (epochs already logged are skipped) and to ``report``,
5. ends the run FINISHED (summary metrics logged) as soon as rank 0 has written DONE -- the job's processes
   take seconds to exit, a reaper thread waits for that instead of the trial -- or FAILED (error tag,
   ``TrialFailed`` raised so Tune can retry); when it is interrupted (Tune stopped the trial, the process
   exits) the job is cancelled and the run ends KILLED.

MLflow going away does not stop any of this: every tracking call goes through ``orchestrator.track.outbox``,
which keeps what the store did not take and tries it again on a later poll; a DONE trial waits for its
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
from typing import Any

from orchestrator.spec.schema import ExecutorSpec, TrialSpec
from orchestrator.run.executors.base import Executor, JobHandle, JobState, get_executor, live_job
from orchestrator.run.sweepdir import SweepDir
# orchestrator.train.job is light (torch is imported when a job runs). The job's class must live in a module the
# job process can import cheaply: it is unpickled there, importing its module, and this one imports MLflow.
from orchestrator.train.job import TrialJob
from orchestrator.track.outbox import TrackingOutbox, grace_seconds, is_outage
from orchestrator.track.tracker import Tracker
from orchestrator.dirs.trialdir import TrialDir

__all__ = ["TrialContext", "TrialFailed", "run_trial", "cancel_live_jobs"]

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


# Jobs this process follows; ended (cancel + run KILLED) when the process exits without its proxy's
# ``finally`` having run (Ray terminates a stopped trial's actor without waiting for the trial's thread).
_LIVE: dict[str, tuple[JobHandle, Tracker, str]] = {}
_LIVE_LOCK = threading.Lock()


def _abandon(key: str) -> None:
    with _LIVE_LOCK:
        entry = _LIVE.pop(key, None)
    if entry is None:
        return
    handle, tracker, run_id = entry
    if handle.done():
        return
    logger.info("trial %s interrupted: cancelling job %s", key, handle.job_id)
    handle.cancel()
    try:
        tracker.end(run_id, "KILLED")
    except Exception as exc:  # noqa: BLE001 - the store is away: the run stays RUNNING, resume takes it up
        if not is_outage(exc):
            raise
        logger.warning("trial %s: run %s not marked KILLED (MLflow unreachable)", key, run_id)


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
    CANCELLED); the driver ends any that linger (``orchestrator.run.driver``).
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


def _note(td: TrialDir, line: str) -> None:
    """One line of the driver's into the trial's log (``convsweep logs``), stamped."""
    with open(td.log_path, "a", encoding="utf-8") as f:
        f.write(f"[convsweep driver {time.strftime('%H:%M:%S')}] {line}\n")


def _append_log(td: TrialDir, text: str) -> None:
    with open(td.log_path, "a", encoding="utf-8") as f:
        f.write(f"\n[convsweep driver] trial failed:\n{text.rstrip()}\n")


def run_trial(
    spec: TrialSpec,
    ctx: TrialContext,
    report: Callable[[dict[str, Any]], None],
    reported_epoch: int = 0,
) -> dict[str, Any]:
    """Run one trial to its end; returns its summary. ``report`` gets every epoch after ``reported_epoch``."""
    td = TrialDir.for_trial(ctx.storage_root, spec.sweep, spec.trial_key)
    td.create()
    td.write_spec(spec.model_dump(mode="json"))
    settings = ExecutorSpec.model_validate(ctx.executor)
    outbox = TrackingOutbox(spec.trial_key, ctx.tracking_uri, note=lambda line: _note(td, line))
    tracker, run_id = _open_run(spec, ctx, td, outbox, settings.kind)
    executor = get_executor(settings, ctx.executor_folder)
    _end_stale_job(executor, td)

    def pump(reported: int) -> int:
        records = td.read_metrics()
        outbox.call("epochs", lambda: tracker.log_epochs(run_id, records))
        for record in records:
            if int(record["epoch"]) > reported:
                report(record)
                reported = int(record["epoch"])
        return reported

    if td.is_done:  # the job ended while no driver watched it
        pump(reported_epoch)
        return _finish(spec, ctx, td, tracker, run_id, outbox)
    stopping = SweepDir(ctx.storage_root, spec.sweep).stopping
    if stopping.exists():  # the sweep is being stopped: start nothing new
        outbox.call("end", lambda: tracker.end(run_id, "KILLED"))
        return {}

    td.clear_markers()
    _job_environment(ctx.env)
    try:
        handle = executor.submit(_trial_job(str(td.path)), name=f"{spec.sweep}-{spec.trial_key}", resources=spec.resources)
    except Exception:
        error = traceback.format_exc()
        outbox.call("end", lambda: tracker.end(run_id, "FAILED", error))
        raise
    td.write_job(settings.kind, handle.job_id, log_path=str(handle.log_path))
    with _LIVE_LOCK:
        _LIVE[spec.trial_key] = (handle, tracker, run_id)
    try:
        requeues = handle.requeues
        outbox.call("job", lambda: tracker.record_job(run_id, handle.job_id, restarts=requeues,
                                                      log_path=str(handle.log_path)))
        reported, size, failed_since = reported_epoch, -1, None
        while True:
            state = handle.state()  # before reading: lines written before the job ended are then all seen
            if handle.requeues != requeues:  # the scheduler started the same job again (requeue)
                restarts = requeues = handle.requeues
                outbox.call("requeue", lambda: tracker.record_job(run_id, handle.job_id, restarts=restarts))
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
            elif outbox.pending:  # the store was away: try again (every few seconds, not every poll)
                outbox.flush()
            if state.is_terminal or done:
                break
            time.sleep(ctx.poll_seconds)
        if td.is_done:
            with _LIVE_LOCK:
                _LIVE.pop(spec.trial_key, None)
            if not handle.done():
                _reap_later(handle)
            return _finish(spec, ctx, td, tracker, run_id, outbox)
        if stopping.exists() and state == JobState.CANCELLED:  # cancelled with the sweep: not a failure
            outbox.call("end", lambda: tracker.end(run_id, "KILLED"))
            return {}
        error = _error_text(td, handle, state)
        if not td.failure:  # the trainer logged its own traceback to job.log; this failure came from outside
            _append_log(td, error)
        # not waited for: Tune retries the trial, which finds the same run (still RUNNING if this is lost)
        outbox.call("end", lambda: tracker.end(run_id, "FAILED", error))
        last = [line for line in error.strip().splitlines() if line.strip()]
        raise TrialFailed(f"trial {spec.trial_key}: {last[-1] if last else state.value}")
    finally:
        _abandon(spec.trial_key)


def _open_run(spec: TrialSpec, ctx: TrialContext, td: TrialDir, outbox: TrackingOutbox, executor: str
              ) -> tuple[Tracker, str]:
    """The trial's tracker and run. The job is submitted only once its run exists (its id is in the trial
    directory), so an unreachable store is waited for here, up to the grace."""
    opened: list[tuple[Tracker, str]] = []
    kind = "evaluate" if spec.evaluate_source else "train"

    def open_run() -> None:
        # few attempts per call: the outbox tries again itself, and logs the outage once
        tracker = Tracker(ctx.tracking_uri, ctx.experiment, spec.sweep, connect_attempts=1)
        opened.append((tracker, tracker.ensure_run(spec, td, executor=executor, git=ctx.git, kind=kind)))

    grace = grace_seconds(ctx.env)
    if not outbox.call("open", open_run) and not outbox.deliver(grace):
        raise TrialFailed(f"trial {spec.trial_key}: MLflow at {ctx.tracking_uri} unreachable for {grace:.0f} s "
                          f"before its job was submitted; nothing ran (convsweep resume {spec.sweep} runs it)")
    return opened[-1]


DRIVER_FAULT_ENV = "CONVSWEEP_DRIVER_FAULT"  # tests: "kill_after_summary" (see _driver_fault)


def _driver_fault(ctx: TrialContext, sweep: str, point: str) -> None:
    """Test hook: at ``point``, SIGKILL the driver (its pid file) and this proxy, as a power cut would."""
    if ctx.env.get(DRIVER_FAULT_ENV) != point:
        return
    import signal

    fields = SweepDir(ctx.storage_root, sweep).driver_pid.read_text(encoding="utf-8").split()
    logger.warning("%s=%s: killing the driver (pid %s) and this proxy", DRIVER_FAULT_ENV, point, fields[0])
    os.kill(int(fields[0]), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _finish(spec: TrialSpec, ctx: TrialContext, td: TrialDir, tracker: Tracker, run_id: str,
            outbox: TrackingOutbox) -> dict[str, Any]:
    summary = td.read_summary() or {}

    def record() -> None:  # every step is idempotent: retried whole after an outage
        tracker.log_summary(run_id, summary)
        _driver_fault(ctx, spec.sweep, "kill_after_summary")
        tracker.log_artifacts(run_id, td.path / "analysis", "analysis")  # orchestrator.train.analysis's maps, plots
        tracker.end(run_id, "FINISHED")

    grace = grace_seconds(ctx.env)
    if not outbox.call("finish", record) and not outbox.deliver(grace):
        outbox.say(f"MLflow at {ctx.tracking_uri} unreachable for {grace:.0f} s; the trial ends with its summary "
                   f"and its records stay in {td.path}: `convsweep resume {spec.sweep}` delivers them")
    return summary
