"""A sweep's trials followed by threads of the driver (``tune.proxies: threads``), not by Ray actors.

Under Tune's runtime every running trial is a Ray actor, and a Ray worker process costs about 120 MB of a login
node's memory even when it only sleeps (``tests/bench/scale_floor.py``): 200 concurrent trials need 24 GB. Here
each running trial is a thread of the driver that runs the same proxy (``orchestrator.run.proxy.run_trial``), all
of them writing through one in-process MLflow writer, and Tune's trial scheduler (FIFO or ASHA, built as for
Tune's runtime, ``orchestrator.run.tune.SchedulerDecisions``) decides after each reported epoch whether a trial
goes on. No Ray process is started, so nothing of Ray's start-up stands before the first job either.

What Tune's runtime did and this loop does itself: at most ``max_concurrent`` trials at once, in the sweep's
order; a failed trial is tried again up to ``tune.max_failures`` times, from its checkpoints, reporting only the
epochs the scheduler has not seen; a stop (SIGINT/SIGTERM through ``orchestrator.run.session``, which sends
SIGUSR1 as it does to Tune) starts no further trial and ends the running ones' jobs. What it does not: restore a
saved Tune experiment: ``convsweep resume`` runs what is unsettled again, each trial from its own checkpoints,
and the scheduler is first given every epoch the sweep's trials have on disk (``history``), so that ASHA's rungs
hold what they held before; the verdicts on those epochs were given then, only newer epochs are judged.

This module imports no Ray: the scheduler is passed in.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.run.progress import ProgressSink
from orchestrator.run.proxy import TrialContext, TrialFailed, cancel_live_jobs, run_trial
from orchestrator.spec.schema import SweepSpec, TrialSpec

if TYPE_CHECKING:  # MLflow: imported by the writer's own thread, off the way to the first job
    from orchestrator.track.writer import TrackingWriter

__all__ = ["TrialOutcome", "Decisions", "max_concurrent", "replay", "run_in_threads", "start_writer_early"]

logger = logging.getLogger(__name__)

_STOP_SWEEP_SECONDS = 2.0  # after a stop, how often the running trials' jobs are ended again (late submissions)


@dataclass(frozen=True)
class TrialOutcome:
    trial_key: str
    ok: bool
    last_epoch: int
    error: str | None


class Decisions(Protocol):
    """A trial scheduler's verdicts, asked from several threads (the caller serialises the calls)."""

    def add(self, key: str) -> None: ...
    def result(self, key: str, metrics: dict[str, Any]) -> bool: ...  # False: the scheduler stops the trial
    def complete(self, key: str, metrics: dict[str, Any]) -> None: ...


def max_concurrent(sweep: SweepSpec, specs: list[TrialSpec]) -> int:
    """``tune.max_concurrent_trials``, bounded for local jobs by this machine's cores and by the trials' count."""
    bound = sweep.tune.max_concurrent_trials
    if sweep.executor.kind == "local" and specs:
        need = max(s.world_size * s.resources.cpus_per_process for s in specs)
        bound = min(bound, max(1, (os.cpu_count() or 1) // need))
    return max(1, min(bound, len(specs) or 1))


def reported_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one ``metrics.jsonl`` record, as a scheduler and Tune's results take them."""
    metrics = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics["epoch"] = int(record["epoch"])
    return metrics


# -- the writer, started ahead --------------------------------------------------------------------------------
_EARLY: Future[TrackingWriter] | None = None
_EARLY_LOCK = threading.Lock()


def start_writer_early(store: tuple[str, str, str]) -> None:
    """Construct the sweep's writer in a thread now (MLflow's import, a fresh store's tables, the experiment),
    while the driver decides what runs; ``run_in_threads`` takes it over."""
    global _EARLY
    with _EARLY_LOCK:
        if _EARLY is not None:
            return
        _EARLY = future = Future()

    def start() -> None:
        try:
            from orchestrator.track.writer import TrackingWriter

            writer = TrackingWriter()
            writer.open_store(*store)
            future.set_result(writer)
        except BaseException as exc:  # noqa: BLE001 - handed to run_in_threads, which raises it
            future.set_exception(exc)

    threading.Thread(target=start, name="writer-start", daemon=True).start()


def _take_writer() -> TrackingWriter:
    global _EARLY
    with _EARLY_LOCK:
        early, _EARLY = _EARLY, None
    if early is not None:
        return early.result()
    from orchestrator.track.writer import TrackingWriter

    return TrackingWriter()


# -- the loop ---------------------------------------------------------------------------------------------------
class _StoppedByScheduler(Exception):
    """Raised from a trial's report into its proxy, whose ``finally`` then ends the job and the run (KILLED)."""


class _Loop:
    def __init__(self, specs: list[TrialSpec], ctx: TrialContext, writer: TrackingWriter, decisions: Decisions,
                 max_failures: int, progress: ProgressSink | None, on_complete: Callable[[str], None] | None,
                 reported: dict[str, dict[str, Any]]) -> None:
        self.ctx, self.writer, self.decisions, self.max_failures = ctx, writer, decisions, max_failures
        self.progress, self.on_complete, self.reported = progress, on_complete, reported
        self.queue = deque(specs)
        self.outcomes: dict[str, TrialOutcome] = {}
        self.lock = threading.Lock()  # the scheduler, the progress bars, the queue, the outcomes
        self.stop = threading.Event()

    def work(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                if not self.queue:
                    return
                spec = self.queue.popleft()
            outcome = self._trial(spec)
            with self.lock:
                self.outcomes[spec.trial_key] = outcome

    def _trial(self, spec: TrialSpec) -> TrialOutcome:
        key = spec.trial_key
        last = dict(self.reported.get(key, {"epoch": 0}))  # the scheduler has seen up to this epoch
        with self.lock:
            self.decisions.add(key)

        def report(record: dict[str, Any]) -> None:
            metrics = reported_metrics(record)
            with self.lock:
                last.clear()
                last.update(metrics)
                if self.progress is not None:
                    self.progress.epoch(key, metrics["epoch"], metrics)
                go_on = self.decisions.result(key, metrics)
            if not go_on:
                logger.info("trial %s stopped by the scheduler at epoch %d", key, metrics["epoch"])
                raise _StoppedByScheduler(key)

        failures = 0
        while True:
            try:
                run_trial(spec, self.ctx, report, int(last["epoch"]), writer=self.writer)
            except _StoppedByScheduler:
                pass
            except Exception as exc:  # noqa: BLE001 - as Tune's runtime: any error of the proxy fails the attempt
                failures += 1
                lines = [line for line in str(exc).strip().splitlines() if line.strip()]
                error = lines[-1] if isinstance(exc, TrialFailed) and lines else f"{type(exc).__name__}: {exc}"
                if failures <= self.max_failures and not self.stop.is_set():
                    logger.warning("trial %s failed (%s); trying again (%d of %d)", key, error, failures,
                                   self.max_failures)
                    continue
                if not isinstance(exc, TrialFailed):
                    logger.error("trial %s failed", key, exc_info=exc)
                with self.lock:
                    if self.progress is not None:
                        self.progress.trial_end(key, False)
                return TrialOutcome(key, False, int(last["epoch"]), error)
            with self.lock:
                self.decisions.complete(key, dict(last))
                if self.on_complete is not None:
                    self.on_complete(key)
                if self.progress is not None:
                    self.progress.trial_end(key, True)
            return TrialOutcome(key, True, int(last["epoch"]), None)


def replay(decisions: Decisions, history: dict[str, list[dict[str, Any]]], running: set[str]) -> dict[str, Any]:
    """Give the scheduler every epoch of ``history`` (trial key -> its reported metrics, in order), its verdicts
    ignored (they were given when the epochs were new); the trials not in ``running`` are completed. Returns the
    last metrics replayed of each trial that is."""
    last = {}
    for key, records in history.items():
        decisions.add(key)
        for metrics in records:
            decisions.result(key, metrics)
        if key in running:
            last[key] = records[-1]
        else:
            decisions.complete(key, records[-1])
    return last


def run_in_threads(specs: list[TrialSpec], ctx: TrialContext, decisions: Decisions, *, concurrency: int,
                   max_failures: int, history: dict[str, list[dict[str, Any]]] | None = None,
                   progress: ProgressSink | None = None,
                   on_complete: Callable[[str], None] | None = None) -> list[TrialOutcome]:
    """Run ``specs`` to their end, ``concurrency`` at a time; one outcome per trial started, in the sweep's order.

    ``history``: the epochs on disk of the sweep's trials, replayed to the scheduler first (``replay``); a trial
    of ``specs`` then reports only newer epochs. ``on_complete(trial_key)`` is called whenever a trial ends
    without an error (finished, or stopped by the scheduler). SIGUSR1 (sent by the driver's SIGINT/SIGTERM
    handler) stops the sweep.
    """
    reported = replay(decisions, history or {}, {s.trial_key for s in specs})
    writer = _take_writer()
    loop = _Loop(specs, ctx, writer, decisions, max_failures, progress, on_complete, reported)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGUSR1, lambda signum, frame: loop.stop.set())
    threads = [threading.Thread(target=loop.work, name=f"trials-{i}", daemon=True)
               for i in range(min(concurrency, len(specs)))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # joined in steps: the main thread must go on handling signals
                thread.join(0.25 if not loop.stop.is_set() else _STOP_SWEEP_SECONDS)
                if loop.stop.is_set():
                    # the driver's handler cancels the jobs it finds in job.json; a job submitted just after
                    # that is ended here, so that no trial follows a job to its end after a stop
                    cancel_live_jobs()
    finally:
        if previous is not None:
            signal.signal(signal.SIGUSR1, previous)
        try:  # the trials that still owe records (the store is away) are counted by the driver
            writer.drain()
        finally:
            writer.stop()
    order = {s.trial_key: i for i, s in enumerate(specs)}
    return sorted(loop.outcomes.values(), key=lambda o: order[o.trial_key])
