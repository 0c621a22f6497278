"""Running, resuming and inspecting a sweep: the library behind ``convsweep sweep | resume | status | cancel``.

``run_sweep`` validates everything first (a ``ConfigError`` before anything is submitted or recorded),
expands the trials, asks MLflow which trial keys are already settled (FINISHED and borne out by the trial
folder, or stopped early by the scheduler; ``orchestrator.run.state``) and runs only the others through Ray
Tune, so running a sweep twice starts no trial and creates no run. Before anything else it stores the
resolved sweep as ``<storage root>/<sweep>/sweep.json``: ``resume``, ``status`` and ``cancel`` then need only
the sweep's name.

``resume_sweep`` restores the sweep's Tune experiment when there is one (Tune re-runs its unfinished trials,
and with ``restart_errored`` its errored ones), then runs whatever is still unsettled as a fresh Tune run:
a trial Tune's saved state calls ended but that is not settled (its folder damaged, its run KILLED) is
not Tune's to run again, so only this second run trains it -- and ``resume`` converges.
Either way a trial continues from its own checkpoints and MLflow run, and a job a killed driver left running
is ended first (``orchestrator.run.proxy``).

Stopping: on SIGINT or SIGTERM the driver writes ``STOPPING`` (``orchestrator.run.proxy.stopping_marker``),
cancels every job recorded in its trials' ``job.json`` itself (through the executor's ``attach`` and
``cancel``: it does not wait for Ray, which ends the trials' processes before their own cleanup can run) and
then lets Tune stop. ``cancel_sweep`` does the same from any shell, and also ends a driver that runs as a
job (``convsweep sweep --detach``, recorded in ``driver.json``). Trials stopped that way are not settled: only a
trial the ASHA scheduler stopped (scheduler ``asha``, driver not interrupted) is tagged
``convsweep.stopped=scheduler``, and ``resume`` runs everything else again from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.run.executors.base import available_executors, get_executor
from orchestrator.spec.expand import expand
from orchestrator.run.progress import SweepProgress
from orchestrator.run.proxy import TrialContext, stopping_marker
from orchestrator.run.preflight import load_sweep
from orchestrator.spec.errors import ConfigError, Problem
from orchestrator.track.tracker import TAG, Tracker, absolute_tracking_uri, git_commit
from orchestrator.track.store import require_store
from orchestrator.dirs.trialdir import TrialDir, atomic_write_text
from orchestrator.run.sweepdir import load_recorded, sweep_dir
from orchestrator.run.sweepdir import record_sweep as _record
from orchestrator.run.state import (DRIVER_JOB_FILE, DRIVER_PID_FILE, StatusRow, audit, driver_job, driver_pid,
                                     job_alive, record_driver_job, status_rows)

__all__ = [
    "SweepResult", "StatusRow", "prepare_sweep", "run_sweep", "resume_sweep", "load_recorded", "status_rows",
    "cancel_sweep", "sweep_dir", "end_jobs", "record_driver_job", "driver_job", "DRIVER_PID_FILE",
    "DRIVER_JOB_FILE",
]  # fmt: skip

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
    restored: bool = False  # resumed through Ray Tune's saved experiment state
    halted: bool = False  # the driver was stopped (SIGINT, SIGTERM, convsweep cancel)

    @property
    def ok(self) -> bool:
        return not self.failed


def prepare_sweep(
    sweep: str | os.PathLike[str] | SweepSpec,
    profile: str | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    executor: str | None = None,
) -> SweepSpec:
    """Load and fully validate a sweep; paths (storage root, SQLite file) pinned to absolute ones."""
    spec = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep, profile, tuple(overrides))
    where = "" if isinstance(sweep, SweepSpec) else str(sweep)
    if executor is not None:
        if executor not in available_executors():
            raise ConfigError(Problem("--executor", "unknown executor", executor, ", ".join(available_executors())), where or None)
        spec = spec.model_copy(update={"executor": spec.executor.model_copy(update={"kind": executor})})
    spec = spec.model_copy(
        update={
            "tracking": spec.tracking.model_copy(update={"uri": absolute_tracking_uri(spec.tracking.uri)}),
            "storage": spec.storage.model_copy(update={"root": str(Path(spec.storage.root).resolve())}),
        }
    )
    try:
        from orchestrator.spec.checks import evaluation_source_problems

        expand(spec)
        problems = evaluation_source_problems(spec)  # `plan` reports it; running would do nothing
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        raise (exc.with_file(where) if where else exc) from None
    return spec


def _context(spec: SweepSpec) -> TrialContext:
    env = {k: v for k, v in os.environ.items() if k.startswith("CONVSWEEP_")}
    return TrialContext(
        storage_root=spec.storage.root,
        tracking_uri=spec.tracking.uri,
        experiment=spec.experiment,
        executor=spec.executor.model_dump(mode="json"),
        executor_folder=str(sweep_dir(spec) / "jobs"),
        git=git_commit(Path(__file__).parent),
        env=env,
    )


def _settled(spec: SweepSpec, tracker: Tracker, trials: list[TrialSpec], result: SweepResult) -> set[str]:
    """FINISHED trials their folders bear out, and under ASHA those the scheduler stopped; the rest is (re)run.

    A trial whose recorded finish does not hold up (``orchestrator.run.state.audit``) loses its DONE marker
    here, so that its job trains from the newest intact checkpoint instead of reporting the old end.
    """
    stopped = tracker.stopped_keys() if spec.tune.scheduler == "asha" else set()
    checked = audit(spec, trials, tracker.finished_keys(), stopped)
    for key, why in checked.inconsistent.items():
        if key not in result.rerun:
            logger.info("trial %s: %s; running it again", key, why)
        TrialDir.for_trial(spec.storage.root, spec.name, key).clear_markers()
        result.rerun.setdefault(key, why)
    return checked.settled


def _settled_or_reused(spec: SweepSpec, trials: list[TrialSpec], tracker: Tracker, result: SweepResult,
                       reuse: bool) -> set[str]:
    """The settled trial keys (``_settled``); the trials that finished in another sweep are linked now
    (``orchestrator.run.reuse``) into ``result.reused``. Without ``reuse`` the sweep's earlier links are dropped
    and their trials trained again."""
    from orchestrator.run.reuse import reuse_finished, unlink_reused

    if not reuse:
        dropped = unlink_reused(spec, tracker)
        if dropped:
            logger.warning("--no-reuse: %d reused trial(s) will be trained in this sweep", len(dropped))
        return _settled(spec, tracker, trials, result)
    settled = _settled(spec, tracker, trials, result)
    result.reused = reuse_finished(spec, [t for t in trials if t.trial_key not in settled], tracker)
    return settled


def _epochs_on_disk(spec: SweepSpec, trials: list[TrialSpec]) -> dict[str, int]:
    seen = {}
    for t in trials:
        records = TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key).read_metrics()
        if records:
            seen[t.trial_key] = min(int(records[-1]["epoch"]), t.recipe.epochs)
    return seen


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
        atomic_write_text(stopping_marker(self.spec.storage.root, self.spec.name), f"{os.getpid()}\n")
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


def _run(spec: SweepSpec, trials: list[TrialSpec], pending: list[TrialSpec], tracker: Tracker, result: SweepResult,
         *, restore: bool = False, restart_errored: bool = False, show_progress: bool = True) -> None:
    from orchestrator.run.tune import run_tune  # imports ray

    pending_keys = {t.trial_key for t in pending}
    ended_now: set[str] = set()  # trials Tune ended in this run (a restored experiment reports older ones too)
    started_at = time.time()
    pid_file = sweep_dir(spec) / DRIVER_PID_FILE
    stopping_marker(spec.storage.root, spec.name).unlink(missing_ok=True)
    atomic_write_text(pid_file, f"{os.getpid()} {socket.gethostname()}\n")
    progress = SweepProgress(
        len(trials), sum(t.recipe.epochs for t in trials), done_trials=len(trials) - len(pending),
        epochs_seen=_epochs_on_disk(spec, trials), metric=spec.tune.metric, enabled=show_progress,
    )  # fmt: skip
    background = _Background()
    stopper = _Stopper(spec, pending)
    # the executor's watcher (SLURM: one squeue for all jobs) polls from the driver, which outlives the trials
    getattr(get_executor(spec.executor, sweep_dir(spec) / "jobs"), "start_watching", lambda: None)()

    def on_complete(key: str) -> None:
        ended_now.add(key)
        if spec.tune.scheduler == "asha" and not stopper.interrupted.is_set():
            background.start(_end_if_stopped, spec, key, tracker)

    try:
        with stopper, progress:
            outcomes = run_tune(spec, pending, _context(spec), restore=restore, restart_errored=restart_errored,
                                progress=progress, on_complete=on_complete)
    finally:
        background.join()
        pid_file.unlink(missing_ok=True)
        _end_orphans(spec, pending, tracker)
    interrupted = stopper.interrupted.is_set()
    result.halted = result.halted or interrupted
    runs = tracker.status_by_key()
    waiting = [o.trial_key for o in outcomes if o.ok and o.trial_key in pending_keys
               and TrialDir.for_trial(spec.storage.root, spec.name, o.trial_key).is_done
               and (o.trial_key not in runs or runs[o.trial_key].info.status != "FINISHED")]
    if waiting:  # their proxies gave up on an unreachable store (orchestrator.track.outbox)
        logger.warning("%d finished trial(s) not recorded in MLflow yet (%s); `convsweep resume %s --root %s` "
                       "delivers them", len(waiting), ", ".join(waiting), spec.name, spec.storage.root)
    for outcome in outcomes:
        if outcome.trial_key not in pending_keys:
            continue
        td = TrialDir.for_trial(spec.storage.root, spec.name, outcome.trial_key)
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
                               and not _submitted_since(TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key),
                                                        started_at)]


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
    td = TrialDir.for_trial(spec.storage.root, spec.name, key)
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


def end_jobs(spec: SweepSpec, trials: list[TrialSpec] | None = None) -> int:
    """Cancel every still-running job recorded in the trials' ``job.json`` (all at once); returns how many."""
    handles = []
    for trial in expand(spec) if trials is None else trials:
        handle = job_alive(spec, TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key))
        if handle is not None:
            handles.append(handle)
    cancel_all = getattr(get_executor(spec.executor, sweep_dir(spec) / "jobs"), "cancel_all", None)
    if cancel_all is not None and handles:  # one scancel for all (SLURM)
        cancel_all(handles)
    else:
        threads = [threading.Thread(target=h.cancel, name=f"cancel-{h.job_id}") for h in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if handles:
        logger.warning("cancelled job(s) %s", ", ".join(h.job_id for h in handles))
    return len(handles)


def _end_orphans(spec: SweepSpec, trials: list[TrialSpec], tracker: Tracker) -> None:
    """End jobs still running once Tune has returned (an interrupted driver); their runs become KILLED.

    A proxy cancels its own job when it is stopped, but Ray may kill a trial's actor before that runs.
    """
    runs = None
    for trial in trials:
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
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


def _start_ray_if_needed(spec: SweepSpec, trials: list[TrialSpec]) -> None:
    """Start Ray now, in the background, unless every trial is DONE on disk (then no Tune runs; the MLflow
    check that follows is the authority, this only decides whether Ray's start-up overlaps it)."""
    if any(not TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key).is_done for t in trials):
        from orchestrator.run.tune import start_ray_early  # imports ray

        start_ray_early()


def run_sweep(
    sweep: str | os.PathLike[str] | SweepSpec,
    profile: str | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    executor: str | None = None,
    *,
    show_progress: bool = True,
    reuse: bool = True,
) -> SweepResult:
    """Run every trial of the sweep that is not settled yet; see the module docstring."""
    spec = prepare_sweep(sweep, profile, overrides, executor)
    source = None if isinstance(sweep, SweepSpec) else str(Path(sweep).resolve())
    trials = expand(spec)
    require_store(spec.tracking.uri, str(sweep) if source else spec.name)
    _record(spec, source)  # before MLflow starts up: a driver killed meanwhile is then one `resume` continues
    _start_ray_if_needed(spec, trials)
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    result = SweepResult(spec, len(trials), source_file=source)
    settled = _settled_or_reused(spec, trials, tracker, result, reuse)
    pending = [t for t in trials if t.trial_key not in settled and t.trial_key not in result.reused]
    result.skipped = [t.trial_key for t in trials if t.trial_key in settled]
    if pending:
        _run(spec, trials, pending, tracker, result, show_progress=show_progress)
    return result


def resume_sweep(
    name: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] = "runs",
    restart_errored: bool = False,
    show_progress: bool = True,
    reuse: bool = True,
) -> SweepResult:
    """Continue an interrupted sweep: unfinished trials from their checkpoints, errored ones if asked."""
    from orchestrator.run.tune import can_restore

    spec, source = load_recorded(name, root)
    trials = expand(spec)
    require_store(spec.tracking.uri, spec.name, "start it again (or fix it) and run `convsweep resume "
                  f"{spec.name}` again; the trial directories under {sweep_dir(spec)} keep everything")
    _start_ray_if_needed(spec, trials)
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    result = SweepResult(spec, len(trials), source_file=source)
    settled = _settled_or_reused(spec, trials, tracker, result, reuse) | set(result.reused)
    result.skipped = [t.trial_key for t in trials if t.trial_key in settled and t.trial_key not in result.reused]
    if can_restore(spec):
        pending = [t for t in trials if t.trial_key not in settled]
        if pending:
            logger.info("restoring the Tune experiment of sweep %s", spec.name)
            result.restored = True
            _run(spec, trials, pending, tracker, result, restore=True, restart_errored=restart_errored,
                 show_progress=show_progress)
        settled = _settled(spec, tracker, trials, result)
    errored = set() if restart_errored else _failed_keys(tracker) | set(result.failed)
    rest = [t for t in trials if t.trial_key not in settled and t.trial_key not in errored]
    if rest and not result.halted:  # a resume stopped while restoring stays stopped
        _run(spec, trials, rest, tracker, result, show_progress=show_progress)
    return result


def _failed_keys(tracker: Tracker) -> set[str]:
    return {k for k, r in tracker.status_by_key().items() if r.info.status == "FAILED"}


# -- cancel ------------------------------------------------------------------------------------------------
def cancel_sweep(name: str | os.PathLike[str], root: str | os.PathLike[str] = "runs", *, grace: float = 30.0) -> int:
    """Stop the sweep: its jobs are cancelled at once, its driver is stopped (SIGINT on this host; a detached
    driver's job is cancelled) and runs still RUNNING end KILLED. Returns how many trial jobs were ended."""
    spec, _ = load_recorded(name, root)
    # first: no proxy submits anything more, and a cancelled job is not taken for a failure
    atomic_write_text(stopping_marker(spec.storage.root, spec.name), f"cancel {os.getpid()}\n")
    driver = driver_job(spec)  # a detached driver is ended as the job it is (recorded CANCELLED)
    pid = driver_pid(spec) if driver is None else None
    if pid is not None:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pid = None
    ended = end_jobs(spec)
    if driver is not None:
        driver.cancel()
    elif pid is not None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
    ended += end_jobs(spec)  # a job submitted while the first round ran
    # the jobs are ended whatever the store says; only marking their runs KILLED needs it
    require_store(spec.tracking.uri, spec.name, f"{ended} job{'s' * (ended != 1)} ended, but their runs could not "
                  f"be marked KILLED; `convsweep resume {spec.name}` or `cancel` again once it is back")
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    runs = tracker.status_by_key()
    for trial in expand(spec):
        run = runs.get(trial.trial_key)
        if run is not None and run.info.status == "RUNNING":
            tracker.end(run.info.run_id, "KILLED")
    return ended
