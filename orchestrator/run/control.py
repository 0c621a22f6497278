"""Acting on a recorded sweep from any shell: its status, cancelling it, a trial's log -- the library behind
``convsweep status | cancel | logs``. Each needs only the sweep's name (and storage root): the sweep is read
back from ``sweep.json`` (``orchestrator.run.sweepdir``).

``cancel_sweep`` writes ``STOPPING`` first (no proxy submits anything more, and a job that ends cancelled is
not taken for a failure), then stops the driver (SIGINT on this host; a detached driver's job is cancelled),
cancels every job recorded in the trials' ``job.json`` itself (through the executor's ``attach``; it does not
rely on the driver, which may be gone) and marks the runs still RUNNING KILLED. ``end_jobs`` is also what a
driver stopped by SIGINT/SIGTERM runs (``orchestrator.run.session``).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from orchestrator.dirs.trialdir import atomic_write_text
from orchestrator.run.state import audit, driver_job, driver_pid, executor_of, job_alive
from orchestrator.run.sweepdir import SweepDir, load_recorded
from orchestrator.spec.expand import expand
from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.track.store import require_store

__all__ = ["StatusRow", "cancel_sweep", "end_jobs", "status_rows", "trial_log"]

logger = logging.getLogger(__name__)

_TRIAL_KEY_TAG = "convsweep.trial_key"  # orchestrator.track.tracker tags each run with its trial key


# -- status ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    trial_key: str
    label: str
    state: str  # done | running | failed | inconsistent | interrupted | pending
    epoch: int
    epochs: int
    eta_seconds: float | None
    note: str = ""  # why an inconsistent trial is one


def _finished_in_mlflow(spec: SweepSpec) -> set[str]:
    """The trial keys MLflow calls FINISHED; empty (with a warning) when the tracking store cannot be read.

    Reads only: a SQLite file or an experiment that does not exist yet means no runs, and is not created.
    """
    from orchestrator.track.query import fetch_runs

    uri = spec.tracking.uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return set()
    try:
        runs = fetch_runs(uri, spec.experiment, spec.name)
    except ValueError:  # no such experiment: the sweep never reached MLflow
        return set()
    except Exception as exc:  # noqa: BLE001 - status still shows the folders when MLflow is out of reach
        logger.warning("status: MLflow at %s unreadable (%s); trial folders only", uri,
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return set()
    return {r.data.tags[_TRIAL_KEY_TAG] for r in runs if _TRIAL_KEY_TAG in r.data.tags}


def status_rows(name: str, root: str = "runs") -> list[StatusRow]:
    """One row per trial, read from the trial directories, MLflow's FINISHED runs and the executor."""
    spec, _ = load_recorded(name, root)
    trials = expand(spec)
    checked = audit(spec, trials, _finished_in_mlflow(spec))
    folder = SweepDir.of(spec)
    rows = []
    for trial in trials:
        td = folder.trial(trial.trial_key)
        records = td.read_metrics()
        epoch = int(records[-1]["epoch"]) if records else 0
        note = checked.inconsistent.get(trial.trial_key, "")
        if td.is_done and not note:
            state = "done"
        elif job_alive(spec, td) is not None:
            state = "running"
        elif note:
            state = "inconsistent"
        elif td.failure is not None:
            state = "failed"
        else:
            state = "interrupted" if epoch else "pending"
        seconds = [float(r["epoch_seconds"]) for r in records if isinstance(r.get("epoch_seconds"), (int, float))]
        eta = (trial.recipe.epochs - epoch) * (sum(seconds) / len(seconds)) if seconds and state != "done" else None
        label = f"{trial.model}/{trial.layer.method}/seed{trial.seed}"
        link = folder.trial_link(trial.trial_key)  # TrialDir resolves links: not td.path
        if link.is_symlink():  # orchestrator.run.reuse: the directory of the sweep that trained it
            label += f" (reused from {Path(os.readlink(link)).parent.name})"
        rows.append(StatusRow(trial.trial_key, label, state, epoch, trial.recipe.epochs, eta, note))
    return rows


# -- cancel ------------------------------------------------------------------------------------------------
def end_jobs(spec: SweepSpec, trials: list[TrialSpec] | None = None) -> int:
    """Cancel every still-running job recorded in the trials' ``job.json`` (all at once); returns how many."""
    folder = SweepDir.of(spec)
    handles = []
    for trial in expand(spec) if trials is None else trials:
        handle = job_alive(spec, folder.trial(trial.trial_key))
        if handle is not None:
            handles.append(handle)
    if handles:
        executor_of(spec).cancel_all(handles)  # SLURM: one scancel for all
        logger.warning("cancelled job(s) %s", ", ".join(h.job_id for h in handles))
    return len(handles)


def cancel_sweep(name: str | os.PathLike[str], root: str | os.PathLike[str] = "runs", *, grace: float = 30.0) -> int:
    """Stop the sweep: its jobs are cancelled at once, its driver is stopped (SIGINT on this host; a detached
    driver's job is cancelled) and runs still RUNNING end KILLED. Returns how many trial jobs were ended."""
    spec, _ = load_recorded(name, root)
    # first: no proxy submits anything more, and a cancelled job is not taken for a failure
    atomic_write_text(SweepDir.of(spec).stopping, f"cancel {os.getpid()}\n")
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
        while time.monotonic() < deadline and psutil.pid_exists(pid):
            time.sleep(0.2)
    ended += end_jobs(spec)  # a job submitted while the first round ran
    # the jobs are ended whatever the store says; only marking their runs KILLED needs it
    require_store(spec.tracking.uri, spec.name, f"{ended} job{'s' * (ended != 1)} ended, but their runs could not "
                  f"be marked KILLED; `convsweep resume {spec.name}` or `cancel` again once it is back")
    from orchestrator.track.tracker import Tracker  # imports MLflow: only now, not for `status` or `logs`

    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    runs = tracker.status_by_key()
    for trial in expand(spec):
        run = runs.get(trial.trial_key)
        if run is not None and run.info.status == "RUNNING":
            tracker.end(run.info.run_id, "KILLED")
    return ended


# -- logs --------------------------------------------------------------------------------------------------
def trial_log(name: str | os.PathLike[str], root: str | os.PathLike[str], trial: str) -> Path:
    """The log of the sweep's one trial whose key starts with ``trial``; ValueError naming the trials otherwise."""
    spec, _ = load_recorded(name, root)
    present = SweepDir.of(spec).trials()
    matches = [td for td in present if td.path.name.startswith(trial)]
    if len(matches) != 1:
        known = ", ".join(td.path.name for td in present)
        raise ValueError(f"TRIAL: {'no' if not matches else 'more than one'} trial matches {trial!r} "
                         f"(allowed: {known or 'none yet'})")
    td = matches[0]
    if not td.log_path.exists():
        raise ValueError(f"TRIAL: trial {td.path.name} has no log yet (no {td.log_path})")
    return td.log_path
