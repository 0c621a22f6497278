"""The state of a recorded sweep as the driver sees it: its executor, live jobs, the driver's own job or pid,
and which trials are settled -- the MLflow record held against the trial directories.

MLflow's FINISHED is a claim about a trial, and the trial directory is the evidence: a FINISHED run whose
folder has no DONE marker, no readable summary or a damaged newest checkpoint (a crash, a restore from an
old backup, a disk fault, a hand edit) is *inconsistent*. ``status`` shows it as such with the reason,
``sweep``/``resume`` run it again (its DONE marker removed first, so its job trains instead of reporting
the old end) and the table leaves its run out (``orchestrator.tables.build``). ``orchestrator.run.control``
turns this into ``convsweep status``'s rows.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

from orchestrator.dirs.trialdir import TrialDir, atomic_write_text, read_json_file
from orchestrator.run.executors.base import Executor, JobHandle, get_executor, live_job
from orchestrator.run.sweepdir import SweepDir
from orchestrator.spec.schema import SweepSpec, TrialSpec

__all__ = [
    "Audit", "audit", "driver_job", "driver_pid", "executor_of", "job_alive", "record_driver_job", "write_driver_pid",
]  # fmt: skip


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
        td = SweepDir.of(spec).trial(key)
        if key not in finished and not td.is_done:
            continue  # claims nothing: an ordinary unfinished trial
        why = td.contradiction(trains=trial.evaluate_source is None)
        if why is None:
            if key in finished:
                settled.add(key)
        else:
            inconsistent[key] = f"MLflow says FINISHED but {why}" if key in finished else f"DONE but {why}"
    return Audit(settled, inconsistent)


def executor_of(spec: SweepSpec) -> Executor:
    """The sweep's executor, keeping its bookkeeping in the sweep's ``jobs/`` folder."""
    return get_executor(spec.executor, SweepDir.of(spec).jobs)


def job_alive(spec: SweepSpec, td: TrialDir) -> JobHandle | None:
    """The handle of the trial's latest job (``job.json``) while it still runs, else None."""
    return _live(spec, td.read_job())


def record_driver_job(spec: SweepSpec, executor: str, job_id: str, log_path: str) -> None:
    """Record the job that runs the sweep's driver (``convsweep sweep --detach``)."""
    data = {"executor": executor, "job_id": str(job_id), "log_path": log_path}
    atomic_write_text(SweepDir.of(spec).driver_job, json.dumps(data, sort_keys=True) + "\n")


def driver_job(spec: SweepSpec) -> JobHandle | None:
    """The handle of the sweep's detached driver job while it still runs, else None."""
    path = SweepDir.of(spec).driver_job
    if not path.exists():
        return None
    return _live(spec, read_json_file(path, "delete it once the detached driver job has ended"))


def _live(spec: SweepSpec, record: object) -> JobHandle | None:
    # the executor is made only for a record of its own kind: `status` of a SLURM sweep that never submitted
    # works where there is no sbatch
    if not isinstance(record, dict) or record.get("executor") != spec.executor.kind:
        return None
    return live_job(executor_of(spec), record)


def driver_pid(spec: SweepSpec) -> int | None:
    """The pid of the sweep's driver if it runs on this host (the pid file names the host it runs on)."""
    try:
        fields = SweepDir.of(spec).driver_pid.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    if not fields or not fields[0].isdigit() or (len(fields) > 1 and fields[1] != socket.gethostname()):
        return None
    return int(fields[0])


def write_driver_pid(spec: SweepSpec, pid: int) -> None:
    """Record this host's driver while it runs (``driver_pid``)."""
    atomic_write_text(SweepDir.of(spec).driver_pid, f"{pid} {socket.gethostname()}\n")
