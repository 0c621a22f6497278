"""The state of a recorded sweep as the driver sees it: live jobs, the driver's own job or pid, one status
row per trial, and which trials are settled -- the MLflow record held against the trial directories.

MLflow's FINISHED is a claim about a trial, and the trial directory is the evidence: a FINISHED run whose
folder has no DONE marker, no readable summary or a damaged newest checkpoint (a crash, a restore from an
old backup, a disk fault, a hand edit) is *inconsistent*. ``status`` shows it as such with the reason,
``sweep``/``resume`` run it again (its DONE marker removed first, so its job trains instead of reporting
the old end) and the table leaves its run out (``orchestrator.tables.build``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.run.executors.base import get_executor
from orchestrator.spec.expand import expand
from orchestrator.run.sweepdir import load_recorded, sweep_dir
from orchestrator.dirs.trialdir import TrialDir, atomic_write_text, read_json_file

__all__ = [
    "DRIVER_JOB_FILE", "DRIVER_PID_FILE", "StatusRow", "Audit", "audit", "driver_job", "driver_pid", "job_alive",
    "record_driver_job", "status_rows",
]  # fmt: skip

logger = logging.getLogger(__name__)

DRIVER_PID_FILE = "driver.pid"  # "<pid> <host>" of the driver while it runs
DRIVER_JOB_FILE = "driver.json"  # {"executor": kind, "job_id": id} of a driver submitted as a job (--detach)
_TRIAL_KEY_TAG = "convsweep.trial_key"  # orchestrator.track.tracker tags each run with its trial key


@dataclass(frozen=True)
class Audit:
    settled: set[str]  # FINISHED and borne out by the folder, or (ASHA) stopped by the scheduler
    inconsistent: dict[str, str]  # trial key -> why its finish does not hold up (MLflow FINISHED or DONE)


def audit(spec: SweepSpec, trials: list[TrialSpec], finished: set[str], stopped: set[str] = frozenset()) -> Audit:
    """Which of ``trials`` are settled, given the keys MLflow calls ``finished`` (and ASHA ``stopped``)."""
    settled, inconsistent = set(stopped), {}
    for trial in trials:
        key = trial.trial_key
        if key in stopped:
            continue
        td = TrialDir.for_trial(spec.storage.root, spec.name, key)
        if key not in finished and not td.is_done:
            continue  # claims nothing: an ordinary unfinished trial
        why = td.contradiction(trains=trial.evaluate_source is None)
        if why is None:
            if key in finished:
                settled.add(key)
        else:
            inconsistent[key] = f"MLflow says FINISHED but {why}" if key in finished else f"DONE but {why}"
    return Audit(settled, inconsistent)


def job_alive(spec: SweepSpec, td: TrialDir) -> Any:
    """The handle of the trial's latest job (``job.json``) while it still runs, else None."""
    job = td.read_job()
    if job is None or job.get("executor") != spec.executor.kind:
        return None
    executor = get_executor(spec.executor, sweep_dir(spec) / "jobs")
    attach = getattr(executor, "attach", None)
    handle = attach(str(job["job_id"])) if attach is not None else None
    return handle if handle is not None and not handle.done() else None


def record_driver_job(spec: SweepSpec, executor: str, job_id: str, log_path: str) -> None:
    """Record the job that runs the sweep's driver (``convsweep sweep --detach``)."""
    data = {"executor": executor, "job_id": str(job_id), "log_path": log_path}
    atomic_write_text(sweep_dir(spec) / DRIVER_JOB_FILE, json.dumps(data, sort_keys=True) + "\n")


def driver_job(spec: SweepSpec) -> Any:
    """The handle of the sweep's detached driver job while it still runs, else None."""
    path = sweep_dir(spec) / DRIVER_JOB_FILE
    if not path.exists():
        return None
    data = read_json_file(path, "delete it once the detached driver job has ended")
    if not isinstance(data, dict) or data.get("executor") != spec.executor.kind:
        return None
    attach = getattr(get_executor(spec.executor, sweep_dir(spec) / "jobs"), "attach", None)
    handle = attach(str(data["job_id"])) if attach is not None else None
    return handle if handle is not None and not handle.done() else None


def driver_pid(spec: SweepSpec) -> int | None:
    """The pid of the sweep's driver if it runs on this host (the pid file names the host it runs on)."""
    path = sweep_dir(spec) / DRIVER_PID_FILE
    try:
        fields = path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    if not fields or not fields[0].isdigit() or (len(fields) > 1 and fields[1] != socket.gethostname()):
        return None
    return int(fields[0])


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
    rows = []
    for trial in trials:
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
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
        link = Path(spec.storage.root) / spec.name / trial.trial_key  # TrialDir resolves links: not td.path
        if link.is_symlink():  # orchestrator.run.reuse: the directory of the sweep that trained it
            label += f" (reused from {Path(os.readlink(link)).parent.name})"
        rows.append(StatusRow(trial.trial_key, label, state, epoch, trial.recipe.epochs, eta, note))
    return rows
