"""Running and resuming a sweep: the library behind ``convsweep sweep | resume``.

``run_sweep`` validates everything first (a ``ConfigError`` before anything is submitted or recorded),
expands the trials, asks MLflow which trial keys are already settled (FINISHED and borne out by the trial
folder, or stopped early by the scheduler; ``orchestrator.run.state``) and runs only the others through Ray
Tune (``orchestrator.run.session``), so running a sweep twice starts no trial and creates no run. Before
anything else it stores the resolved sweep as ``<storage root>/<sweep>/sweep.json``
(``orchestrator.run.sweepdir``): ``resume``, ``status``, ``cancel`` and ``logs`` (``orchestrator.run.control``)
then need only the sweep's name.

``resume_sweep`` restores the sweep's Tune experiment when there is one (``tune.proxies: actors``) (Tune re-runs its unfinished trials,
and with ``restart_errored`` its errored ones), then runs whatever is still unsettled as a fresh Tune run:
a trial Tune's saved state calls ended but that is not settled (its folder damaged, its run KILLED) is
not Tune's to run again, so only this second run trains it -- and ``resume`` converges.
Either way a trial continues from its own checkpoints and MLflow run, and a job a killed driver left running
is ended first (``orchestrator.run.proxy``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.run.executors.base import available_executors
from orchestrator.run.session import SweepResult, run_pending
from orchestrator.run.state import audit
from orchestrator.run.sweepdir import SweepDir, load_recorded, sweep_dir
from orchestrator.run.sweepdir import record_sweep as _record
from orchestrator.spec.expand import expand
from orchestrator.run.preflight import load_sweep
from orchestrator.spec.errors import ConfigError, Problem
from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.track.lazytracker import LazyTracker
from orchestrator.track.store import absolute_tracking_uri, require_store
from orchestrator.track.sweepstatus import RunState, finished_keys, latest_by_key, run_states, stopped_keys

if TYPE_CHECKING:  # MLflow: opened off the way to the first trial (LazyTracker), never needed to plan the run
    from orchestrator.track.tracker import Tracker

# load_recorded, _record (record_sweep) and sweep_dir are re-exported: callers that run sweeps record and read
# them through this module
__all__ = ["SweepResult", "load_recorded", "prepare_sweep", "resume_sweep", "run_sweep", "sweep_dir", "_record"]

logger = logging.getLogger(__name__)


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


def _states(spec: SweepSpec, tracker: Tracker | LazyTracker) -> list[RunState]:
    """The sweep's runs, read without MLflow from a SQLite store (``orchestrator.track.sweepstatus``)."""
    return run_states(spec.tracking.uri, spec.experiment, spec.name,
                      tracker.get if isinstance(tracker, LazyTracker) else lambda: tracker)


def _settled(spec: SweepSpec, tracker: Tracker | LazyTracker, trials: list[TrialSpec], result: SweepResult) -> set[str]:
    """FINISHED trials their folders bear out, and under ASHA those the scheduler stopped; the rest is (re)run.

    A trial whose recorded finish does not hold up (``orchestrator.run.state.audit``) loses its DONE marker
    here, so that its job trains from the newest intact checkpoint instead of reporting the old end.
    """
    runs = _states(spec, tracker)
    stopped = stopped_keys(runs) if spec.tune.scheduler == "asha" else set()
    checked = audit(spec, trials, finished_keys(runs), stopped)
    for key, why in checked.inconsistent.items():
        if key not in result.rerun:
            logger.info("trial %s: %s; running it again", key, why)
        SweepDir.of(spec).trial(key).clear_markers()
        result.rerun.setdefault(key, why)
    return checked.settled


def _settled_or_reused(spec: SweepSpec, trials: list[TrialSpec], tracker: LazyTracker, result: SweepResult,
                       reuse: bool) -> set[str]:
    """The settled trial keys (``_settled``); the trials that finished in another sweep are linked now
    (``orchestrator.run.reuse``) into ``result.reused``. Without ``reuse`` the sweep's earlier links are dropped
    and their trials trained again."""
    from orchestrator.run.reuse import find_sources, link_reused, unlink_reused

    if not reuse:
        dropped = unlink_reused(spec, tracker)
        if dropped:
            logger.warning("--no-reuse: %d reused trial(s) will be trained in this sweep", len(dropped))
        return _settled(spec, tracker, trials, result)
    settled = _settled(spec, tracker, trials, result)
    # reuse.reuse_finished, with the sources looked up without MLflow on a SQLite store: the tracker is opened
    # only to link one
    candidates = {t.trial_key: t for t in trials if t.trial_key not in settled}
    sources = find_sources(spec, list(candidates.values()))
    for key, source in sources.items():
        link_reused(spec, candidates[key], source, tracker.get())
    result.reused = {key: source.sweep for key, source in sources.items()}
    return settled


def _start_early(spec: SweepSpec, trials: list[TrialSpec]) -> LazyTracker:
    """The sweep's tracker, opened when first used: after Tune unless a trial is reused or the store is not a
    SQLite file. Unless every trial is DONE on disk (then no Tune runs), Ray is started now in the background,
    and the sweep's writer actor opens the store in its own process (MLflow's imports, a fresh store's tables)
    while this one starts Tune; with ``tune.proxies: threads`` no Ray, the driver's own writer opens it. (The MLflow check that follows is the authority on what runs; this only decides
    what starts ahead.)"""
    tracker = LazyTracker(spec.tracking.uri, spec.experiment, spec.name)
    if any(not SweepDir.of(spec).trial(t.trial_key).is_done for t in trials):
        store = (spec.tracking.uri, spec.experiment, spec.name)
        if spec.tune.proxies == "threads":  # no Ray: the writer is the driver's own (orchestrator.run.pool)
            from orchestrator.run.pool import start_writer_early

            start_writer_early(store)
        else:
            from orchestrator.run.tune import start_ray_early  # imports ray

            start_ray_early(store)
    return tracker


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
    tracker = _start_early(spec, trials)
    result = SweepResult(spec, len(trials), source_file=source)
    settled = _settled_or_reused(spec, trials, tracker, result, reuse)
    pending = [t for t in trials if t.trial_key not in settled and t.trial_key not in result.reused]
    result.skipped = [t.trial_key for t in trials if t.trial_key in settled]
    if pending:
        run_pending(spec, trials, pending, tracker, result, show_progress=show_progress)
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
                  f"{spec.name}` again; the trial directories under {SweepDir.of(spec).path} keep everything")
    tracker = _start_early(spec, trials)
    result = SweepResult(spec, len(trials), source_file=source)
    settled = _settled_or_reused(spec, trials, tracker, result, reuse) | set(result.reused)
    result.skipped = [t.trial_key for t in trials if t.trial_key in settled and t.trial_key not in result.reused]
    if can_restore(spec):
        pending = [t for t in trials if t.trial_key not in settled]
        if pending:
            logger.info("restoring the Tune experiment of sweep %s", spec.name)
            result.restored = True
            run_pending(spec, trials, pending, tracker, result, restore=True, restart_errored=restart_errored,
                        show_progress=show_progress)
        settled = _settled(spec, tracker, trials, result)
    errored = set() if restart_errored else _failed_keys(spec, tracker) | set(result.failed)
    rest = [t for t in trials if t.trial_key not in settled and t.trial_key not in errored]
    if rest and not result.halted:  # a resume stopped while restoring stays stopped
        run_pending(spec, trials, rest, tracker, result, show_progress=show_progress)
    return result


def _failed_keys(spec: SweepSpec, tracker: Tracker | LazyTracker) -> set[str]:
    return {k for k, r in latest_by_key(_states(spec, tracker)).items() if r.status == "FAILED"}
