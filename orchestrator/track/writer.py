"""One MLflow writer for a whole sweep: every trial's records go through it, and one thread makes the calls.

The trials' proxies (``orchestrator.run.proxy``: threads of the driver, or one Ray worker each) make no MLflow
call: they tell the writer what happened to their trial -- a run to open, new lines in ``metrics.jsonl``, a job
id, the end -- and the writer reads the trial directory and calls MLflow. It is plain Python: the driver holds
it (``orchestrator.run.pool``), or, under Tune's runtime, ``orchestrator.run.tune`` hosts it as one Ray actor. MLflow's import, client and store connection are then
paid once per sweep, not once per concurrent trial, and one thread (``_loop``) makes every call, in the order
the calls came, so the calls of one trial keep their order.

Through an outage the semantics are the outbox's (``orchestrator.track.outbox``), one outbox per trial: a call
the store did not take is kept and tried again every ``RETRY_SECONDS``, every call is idempotent, and a
finished trial waits up to ``CONVSWEEP_TRACKING_GRACE_SECONDS`` for its records to be in. While the store is
away only one trial's calls are tried per round: the others' outboxes count the outage without each waiting
for MLflow's own retries in turn (seconds each, in this one thread).

Trials are named by their directory (``trial_dir``), unique across sweeps.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import TrialSpec
from orchestrator.track.outbox import DRIVER_PID_ENV, RETRY_SECONDS, TrackingOutbox, grace_seconds
from orchestrator.track.tracker import Tracker

__all__ = ["DRIVER_FAULT_ENV", "TrackingWriter"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DRIVER_FAULT_ENV = "CONVSWEEP_DRIVER_FAULT"  # tests: "kill_after_summary" (see _driver_fault)


def _note(td: TrialDir, line: str) -> None:
    """One line of the driver's into the trial's log (``convsweep logs``), stamped."""
    with open(td.log_path, "a", encoding="utf-8") as f:
        f.write(f"[convsweep driver {time.strftime('%H:%M:%S')}] {line}\n")


def _driver_fault(env: dict[str, str], td: TrialDir, point: str) -> None:
    """Test hook: at ``point``, SIGKILL the driver (its pid file) and this writer, as a power cut would."""
    if env.get(DRIVER_FAULT_ENV) != point:
        return
    fields = open(env[DRIVER_PID_ENV], encoding="utf-8").read().split()
    logger.warning("%s=%s: killing the driver (pid %s) and the writer", DRIVER_FAULT_ENV, point, fields[0])
    os.kill(int(fields[0]), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Trial:
    td: TrialDir
    uri: str
    env: dict[str, str]
    outbox: TrackingOutbox
    tracker: Tracker | None = None
    run_id: str | None = None
    closed: bool = False  # its proxy is done with it: forgotten once nothing is pending
    error: BaseException | None = None  # a call the store refused (not an outage): the proxy's next wait raises it


class TrackingWriter:
    """Every trial's MLflow calls, made by one thread (see the module docstring)."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[], Any] | None, Future[Any] | None]] = queue.Queue()
        self._trials: dict[str, _Trial] = {}
        self._trackers: dict[tuple[str, str, str], Tracker] = {}
        self._down: dict[str, BaseException] = {}  # tracking URI -> the outage found by the latest attempt
        self._thread = threading.Thread(target=self._loop, name="tracking-writer", daemon=True)
        self._thread.start()

    # -- what the proxies call ------------------------------------------------------------------------------
    def open_trial(self, spec: dict[str, Any], trial_dir: str, *, uri: str, experiment: str, executor: str,
                   git: str, env: dict[str, str]) -> str | None:
        """The trial's run id (created, or found again as ``Tracker.ensure_run`` does); None when the store
        stayed away for the grace: then nothing may be submitted."""
        trial_spec = TrialSpec.model_validate(spec)
        td = TrialDir(trial_dir)
        kind = "evaluate" if trial_spec.evaluate_source else "train"

        def open_run(trial: _Trial) -> None:
            key = (uri, experiment, trial_spec.sweep)
            if key not in self._trackers:  # few attempts per call: the outbox tries again itself
                self._trackers[key] = Tracker(uri, experiment, trial_spec.sweep, connect_attempts=1)
            trial.run_id = self._trackers[key].ensure_run(trial_spec, td, executor=executor, git=git, kind=kind)
            trial.tracker = self._trackers[key]

        def open_() -> bool:
            trial = self._trials.get(trial_dir)
            if trial is None:  # a retried trial keeps its outbox: what it still owes goes first
                trial = self._trials[trial_dir] = _Trial(td, uri, dict(env), TrackingOutbox(
                    td.path.name, uri, note=lambda line: _note(td, line)))
            trial.env, trial.closed, trial.error = dict(env), False, None
            trial.outbox.keep("open", lambda: open_run(trial))
            return self._try_or_raise(trial)

        if self._in_thread(open_) or self._deliver(trial_dir, grace_seconds(env)):
            return self._trials[trial_dir].run_id
        return None

    def open_store(self, uri: str, experiment: str, sweep: str) -> None:
        """Open the sweep's store (on a fresh SQLite file: MLflow's tables; the experiment) before its first
        trial asks, while Ray starts that trial; if the store is away, the trial's ``open_trial`` deals with it."""
        def open_() -> None:
            if (uri, experiment, sweep) not in self._trackers:
                try:
                    self._trackers[uri, experiment, sweep] = Tracker(uri, experiment, sweep, connect_attempts=1)
                except Exception as exc:  # noqa: BLE001 - see the docstring
                    logger.info("opening %s ahead of the first trial failed (%s)", uri, exc)

        self._later(open_)

    def epochs(self, trial_dir: str) -> None:
        """New lines in the trial's ``metrics.jsonl``: log the epochs not logged yet."""
        def log() -> None:
            trial = self._trials[trial_dir]
            assert trial.tracker is not None and trial.run_id is not None
            tracker, run_id = trial.tracker, trial.run_id
            trial.outbox.keep("epochs", lambda: tracker.log_epochs(run_id, trial.td.read_metrics()))
            self._try(trial)

        self._later(log)

    def job(self, trial_dir: str, job_id: str, *, restarts: int = 0, log_path: str | None = None) -> None:
        """The trial's (latest) job and how often the scheduler restarted it (``Tracker.record_job``)."""
        def record() -> None:
            trial = self._trials[trial_dir]
            tracker, run_id = trial.tracker, trial.run_id
            assert tracker is not None and run_id is not None
            # a requeue's count must not replace the first call's log path while that is still pending
            name = "job" if log_path is not None else "requeue"
            trial.outbox.keep(name, lambda: tracker.record_job(run_id, job_id, restarts=restarts, log_path=log_path))
            self._try(trial)

        self._later(record)

    def end(self, trial_dir: str, status: str, error: str | None = None) -> None:
        """End the trial's run (KILLED or FAILED; ``finish`` ends it FINISHED) without waiting for the store."""
        def end_run() -> None:
            trial = self._trials.get(trial_dir)
            if trial is None or trial.tracker is None or trial.run_id is None:
                return  # ended twice (its proxy's finally, then its exit handler), or never opened
            tracker, run_id = trial.tracker, trial.run_id
            trial.outbox.keep("end", lambda: tracker.end(run_id, status, error))
            trial.closed = True
            self._try(trial)

        self._later(end_run)

    def finish(self, trial_dir: str) -> bool:
        """Record the summary and the analyses' files, end the run FINISHED; wait for the store up to the grace.
        False when it stayed away: the records stay in the trial directory for ``convsweep resume``."""
        def record_all(trial: _Trial) -> None:  # every step is idempotent: retried whole after an outage
            tracker, run_id = trial.tracker, trial.run_id
            assert tracker is not None and run_id is not None
            tracker.log_summary(run_id, trial.td.read_summary() or {})
            _driver_fault(trial.env, trial.td, "kill_after_summary")
            tracker.log_artifacts(run_id, trial.td.path / "analysis", "analysis")  # orchestrator.train.analysis's
            tracker.end(run_id, "FINISHED")

        def finish_() -> bool:
            trial = self._trials[trial_dir]
            if trial.error is not None:
                raise trial.error
            trial.outbox.keep("finish", lambda: record_all(trial))
            trial.closed = True
            return self._try_or_raise(trial)

        trial = self._trials[trial_dir]
        grace = grace_seconds(trial.env)
        if self._in_thread(finish_) or self._deliver(trial_dir, grace):
            return True
        trial.outbox.say(f"MLflow at {trial.uri} unreachable for {grace:.0f} s; the trial ends with its summary and "
                         f"its records stay in {trial.td.path}: `convsweep resume {trial.td.path.parent.name}` "
                         f"delivers them")
        return False

    def drain(self) -> int:
        """Make every call queued so far and try what is pending once more; the number of trials whose records
        still wait (the store is away: ``convsweep resume`` delivers them)."""
        def flush_all() -> int:
            for trial in list(self._trials.values()):
                if trial.outbox.pending:
                    self._try(trial, force=True)
            return sum(trial.outbox.pending for trial in self._trials.values())

        return self._in_thread(flush_all)

    def stop(self) -> None:
        done: Future[Any] = Future()
        self._calls.put((None, done))
        done.result()

    # -- the writer's thread ------------------------------------------------------------------------------
    def _in_thread(self, fn: Callable[[], T]) -> T:
        done: Future[T] = Future()
        self._calls.put((fn, done))
        return done.result()

    def _later(self, fn: Callable[[], Any]) -> None:
        self._calls.put((fn, None))

    def _deliver(self, trial_dir: str, grace: float) -> bool:
        """Wait until the trial's pending calls are in, at most ``grace`` seconds from the start of the outage."""
        trial = self._trials[trial_dir]
        while True:
            if self._in_thread(lambda: self._try_or_raise(trial)):
                return True
            outbox = trial.outbox
            if outbox.down_since is not None and time.monotonic() - outbox.down_since >= grace:
                return False
            time.sleep(RETRY_SECONDS)

    def _loop(self) -> None:
        while True:
            try:
                fn, done = self._calls.get(timeout=RETRY_SECONDS / 4)
            except queue.Empty:
                fn, done = (lambda: None), None
            if fn is None:
                if done is not None:
                    done.set_result(None)
                return
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the caller that waits, else logged
                if done is None:
                    logger.exception("tracking writer: a call failed")
                else:
                    done.set_exception(exc)
            else:
                if done is not None:
                    done.set_result(result)
            self._flush_due()

    def _try(self, trial: _Trial, force: bool = False) -> bool:
        """Try the trial's pending calls unless its store is known to be away; True when nothing is left."""
        down = self._down.get(trial.uri)
        if down is not None and not force:
            if trial.outbox.down_since is None:
                trial.outbox.went_down(down)
            return not trial.outbox.pending
        try:
            ok = trial.outbox.flush(force=True)
        except Exception as exc:  # noqa: BLE001 - the store refused a call: the trial's proxy is told
            trial.error = exc
            trial.outbox = TrackingOutbox(trial.outbox.trial_key, trial.uri, note=lambda line: _note(trial.td, line))
            logger.error("trial %s: MLflow refused a call (%s)", trial.td.path.name, exc)
            return False
        if ok:
            self._down.pop(trial.uri, None)
        elif trial.outbox.error is not None:
            self._down[trial.uri] = trial.outbox.error
        return ok

    def _try_or_raise(self, trial: _Trial) -> bool:
        ok = self._try(trial, force=True)
        if trial.error is not None:
            raise trial.error
        return ok

    def _flush_due(self) -> None:
        """Try what is due again: one trial per store while it is away (see the module docstring)."""
        tried: set[str] = set()
        for key, trial in list(self._trials.items()):
            if trial.outbox.due:
                probe = trial.uri in self._down and trial.uri not in tried
                tried.add(trial.uri)
                self._try(trial, force=probe)
            if trial.closed and not trial.outbox.pending:
                del self._trials[key]
