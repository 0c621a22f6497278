"""One run over a sweep's pending trials, as the driver holds it (``orchestrator.run.driver`` decides what is
pending): the driver's threads asking Tune's scheduler (``orchestrator.run.pool``, ``tune.proxies: threads``)
or Tune's runtime (``orchestrator.run.tune``); the driver's pid file, the executor's watcher, SIGINT/SIGTERM,
the trials the ASHA scheduler stops, the jobs left running at the end, and each trial's outcome sorted into
the ``SweepResult``.

Stopping: on SIGINT or SIGTERM the driver writes ``STOPPING`` (``SweepDir.stopping``), cancels every job
recorded in its trials' ``job.json`` itself (``orchestrator.run.control.end_jobs``: it does not wait for Ray,
which ends the trials' processes before their own cleanup can run) and then lets Tune (or the threads) stop. Trials stopped
that way are not settled: only a trial the ASHA scheduler stopped (scheduler ``asha``, driver not interrupted)
is tagged ``convsweep.stopped=scheduler``, and ``resume`` runs everything else again from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.dirs.trialdir import TrialDir, atomic_write_text
from orchestrator.run.control import end_jobs
from orchestrator.run.pool import TrialOutcome, max_concurrent, reported_metrics, run_in_threads
from orchestrator.run.progress import SweepProgress
from orchestrator.run.proxy import TrialContext
from orchestrator.run.state import executor_of, job_alive, write_driver_pid
from orchestrator.run.sweepdir import SweepDir
from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.track.gitcommit import git_commit
from orchestrator.track.store import TAG

if TYPE_CHECKING:  # MLflow: the driver opens its tracker off the way to the first trial (orchestrator.run.driver)
    from orchestrator.track.tracker import Tracker

__all__ = ["SweepResult", "run_pending"]

logger = logging.getLogger(__name__)


# A DONE trial's job still running after this long is ended; before, it is left to complete (a cancel would
# record a finished SLURM job as CANCELLED).
_EXIT_GRACE_SECONDS = 90.0


@dataclass
class SweepResult:
    sweep: SweepSpec
    total: int
    skipped: list[str] = field(default_factory=list)  # settled before this run
    reused: dict[str, str] = field(default_factory=dict)  # finished in another sweep: key -> that sweep
    finished: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # ended early by the scheduler (ASHA)
    interrupted: list[str] = field(default_factory=list)  # started, unfinished when the driver was stopped
    not_started: list[str] = field(default_factory=list)  # pending, no job submitted before the driver was stopped
    failed: dict[str, str] = field(default_factory=dict)  # key -> last line of the error
    rerun: dict[str, str] = field(default_factory=dict)  # key -> why its recorded finish did not hold up
    source_file: str | None = None
    restored: bool = False  # resumed through Ray Tune's saved experiment state (tune.proxies: actors)
    halted: bool = False  # the driver was stopped (SIGINT, SIGTERM, convsweep cancel)

    @property
    def ok(self) -> bool:
        return not self.failed


def _context(spec: SweepSpec) -> TrialContext:
    env = {k: v for k, v in os.environ.items() if k.startswith("CONVSWEEP_")}
    return TrialContext(
        storage_root=spec.storage.root,
        tracking_uri=spec.tracking.uri,
        experiment=spec.experiment,
        executor=spec.executor.model_dump(mode="json"),
        executor_folder=str(SweepDir.of(spec).jobs),
        git=git_commit(Path(__file__).parent),
        env=env,
    )


def _metrics_on_disk(spec: SweepSpec, trials: list[TrialSpec]) -> dict[str, list[dict[str, Any]]]:
    """The metrics lines of each trial that has any, read once: the epochs the progress bars count as done, and
    the history the scheduler is given first (``_run``)."""
    folder = SweepDir.of(spec)
    found = {t.trial_key: folder.trial(t.trial_key).read_metrics() for t in trials}
    return {key: records for key, records in found.items() if records}


class _Stopper:
    """SIGINT/SIGTERM handling of a running driver (see the module docstring); a second signal aborts."""

    def __init__(self, spec: SweepSpec, trials: list[TrialSpec]) -> None:
        self.spec, self.trials = spec, trials
        self.interrupted = threading.Event()
        self._previous: dict[int, Any] = {}
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.join()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.interrupted.is_set():
            raise KeyboardInterrupt
        logger.warning("%s: stopping the sweep, cancelling its jobs", signal.Signals(signum).name)
        self.interrupted.set()
        atomic_write_text(SweepDir.of(self.spec).stopping, f"{os.getpid()}\n")
        # not a daemon: the jobs are cancelled even if the driver is aborting
        self._thread = threading.Thread(target=end_jobs, args=(self.spec, self.trials), name="cancel-jobs")
        self._thread.start()
        # Tune stops on SIGUSR1 through its own handler (installed while Tuner.fit runs)
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if callable(tune_handler):
            tune_handler(signal.SIGUSR1, frame)
        else:
            raise KeyboardInterrupt


class _Background:
    """Cancellations started from Tune callbacks, so Tune's loop does not wait for them; joined at the end."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def run_pending(spec: SweepSpec, trials: list[TrialSpec], pending: list[TrialSpec], tracker: Tracker,
                result: SweepResult, *, restore: bool = False, restart_errored: bool = False,
                show_progress: bool = True) -> None:
    """Run ``pending`` (of the sweep's ``trials``) through Tune, or restore its saved experiment; what became of
    each is added to ``result``."""
    pending_keys = {t.trial_key for t in pending}
    ended_now: set[str] = set()  # trials Tune ended in this run (a restored experiment reports older ones too)
    started_at = time.time()
    folder = SweepDir.of(spec)
    folder.stopping.unlink(missing_ok=True)
    write_driver_pid(spec, os.getpid())
    on_disk = _metrics_on_disk(spec, trials)
    progress = SweepProgress(
        len(trials), sum(t.recipe.epochs for t in trials), done_trials=len(trials) - len(pending),
        epochs_seen={t.trial_key: min(int(on_disk[t.trial_key][-1]["epoch"]), t.recipe.epochs)
                     for t in trials if t.trial_key in on_disk},
        metric=spec.tune.metric, enabled=show_progress,
    )  # fmt: skip
    background = _Background()
    stopper = _Stopper(spec, pending)
    # the executor's watcher (SLURM: one squeue for all jobs) polls from the driver, which outlives the trials
    executor_of(spec).start_watching()

    def on_complete(key: str) -> None:
        ended_now.add(key)
        if spec.tune.scheduler == "asha" and not stopper.interrupted.is_set():
            background.start(_end_if_stopped, spec, key, tracker)

    try:
        with stopper, progress:
            outcomes = _run(spec, trials, pending, _context(spec), on_disk, restore=restore,
                            restart_errored=restart_errored, progress=progress, on_complete=on_complete)
    finally:
        background.join()
        folder.driver_pid.unlink(missing_ok=True)
        _end_orphans(spec, pending, tracker)
    interrupted = stopper.interrupted.is_set()
    result.halted = result.halted or interrupted
    runs = tracker.status_by_key()
    waiting = [o.trial_key for o in outcomes if o.ok and o.trial_key in pending_keys
               and folder.trial(o.trial_key).is_done
               and (o.trial_key not in runs or runs[o.trial_key].info.status != "FINISHED")]
    if waiting:  # their proxies gave up on an unreachable store (orchestrator.track.outbox)
        logger.warning("%d finished trial(s) not recorded in MLflow yet (%s); `convsweep resume %s --root %s` "
                       "delivers them", len(waiting), ", ".join(waiting), spec.name, spec.storage.root)
    for outcome in outcomes:
        if outcome.trial_key not in pending_keys:
            continue
        td = folder.trial(outcome.trial_key)
        run = runs.get(outcome.trial_key)
        if not outcome.ok:
            result.failed[outcome.trial_key] = outcome.error or "failed"
        elif not interrupted and outcome.trial_key not in ended_now:
            # a restored experiment's trial Tune had ended before (its state says TERMINATED): Tune did not run
            # it now, whatever its folder says; `resume_sweep` runs what is still unsettled afresh
            continue
        elif td.is_done:
            result.finished.append(outcome.trial_key)
        elif interrupted and not _submitted_since(td, started_at):
            result.not_started.append(outcome.trial_key)
        elif spec.tune.scheduler == "asha" and not interrupted:
            # Tune ended it without an error before its last epoch: the scheduler stopped it.
            result.stopped.append(outcome.trial_key)
            if run is not None:  # again: a proxy that outlived the stop may have recorded its job's end
                tracker.set_tags(run.info.run_id, {f"{TAG}stopped": "scheduler"})
                tracker.end(run.info.run_id, "KILLED")
        else:  # the driver was stopped (convsweep cancel, SIGINT): `resume` runs it again
            result.interrupted.append(outcome.trial_key)
            if run is not None and run.info.status == "RUNNING":
                tracker.end(run.info.run_id, "KILLED")
    if interrupted:  # Tune's results leave out the trials it never started
        reported = {o.trial_key for o in outcomes}
        result.not_started += [t.trial_key for t in pending if t.trial_key not in reported
                               and not _submitted_since(folder.trial(t.trial_key), started_at)]


def _run(spec: SweepSpec, trials: list[TrialSpec], pending: list[TrialSpec], ctx: TrialContext,
         on_disk: dict[str, list[dict[str, Any]]], **kwargs: Any) -> list[TrialOutcome]:
    """The driver's own threads asking Tune's scheduler (``tune.proxies: threads``), or Tune's runtime."""
    if spec.tune.proxies == "actors":
        from orchestrator.run.tune import run_tune  # imports ray

        return run_tune(spec, pending, ctx, **kwargs)
    from orchestrator.run.tune import SchedulerDecisions  # imports ray.tune; no Ray process is started

    # ASHA's rungs as the sweep's earlier epochs left them: every trial's epochs on disk, in its order
    history = {key: [reported_metrics(r) for r in records] for key, records in on_disk.items()}
    return run_in_threads(pending, ctx, SchedulerDecisions(spec, trials), concurrency=max_concurrent(spec, pending),
                          max_failures=spec.tune.max_failures, history=history,
                          progress=kwargs["progress"], on_complete=kwargs["on_complete"])


def _submitted_since(td: TrialDir, since: float) -> bool:
    """Whether a job of this trial was submitted at or after ``since`` (its ``job.json`` is written then)."""
    try:
        return td.job_path.stat().st_mtime >= since
    except FileNotFoundError:
        return False


def _end_if_stopped(spec: SweepSpec, key: str, tracker: Tracker) -> None:
    """Tune ended trial ``key`` without an error under ASHA: if it is not DONE the scheduler stopped it.

    Its job is ended here, in the driver: Ray terminates a stopped trial's actor without waiting for the
    proxy's own cleanup (see ``orchestrator.run.tune``).
    """
    td = SweepDir.of(spec).trial(key)
    if td.is_done:
        return
    handle = job_alive(spec, td)
    if handle is not None:
        logger.info("trial %s stopped by the scheduler: ending job %s", key, handle.job_id)
        handle.cancel()
    if td.is_done:  # it finished while being stopped
        return
    run = tracker.status_by_key().get(key)
    if run is not None:
        tracker.set_tags(run.info.run_id, {f"{TAG}stopped": "scheduler"})
        tracker.end(run.info.run_id, "KILLED")


def _end_orphans(spec: SweepSpec, trials: list[TrialSpec], tracker: Tracker) -> None:
    """End jobs still running once Tune has returned (an interrupted driver); their runs become KILLED.

    A proxy cancels its own job when it is stopped, but Ray may kill a trial's actor before that runs.
    """
    runs, folder = None, SweepDir.of(spec)
    for trial in trials:
        td = folder.trial(trial.trial_key)
        handle = job_alive(spec, td)
        if handle is None:
            continue
        if td.is_done:  # finished; its processes are still exiting (slowly on busy nodes): give them time
            deadline = time.monotonic() + _EXIT_GRACE_SECONDS
            while not handle.done() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not handle.done():
                handle.cancel()
            continue
        logger.warning("trial %s: ending job %s left running", trial.trial_key, handle.job_id)
        handle.cancel()
        runs = tracker.status_by_key() if runs is None else runs
        run = runs.get(trial.trial_key)
        if run is not None and run.info.status == "RUNNING":
            tracker.end(run.info.run_id, "KILLED")
