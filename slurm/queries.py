"""What SLURM says about one job: ``scontrol show job`` while slurmctld holds it, ``sacct`` after that.

slurmctld answers for pending, running and recently ended jobs (``MinJobAge``) and knows the pending
``Reason``, the restart count and the log path; the accounting database answers for everything older.
``sacct -D`` lists a requeued job once per start, so its restarts are counted there too. Both commands are
bounded by a timeout: a slow controller makes a poll fail (``SlurmQueryError``), it never hangs the driver.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

__all__ = ["JobInfo", "SlurmQueryError", "query_job", "run_slurm_command"]

_TIMEOUT_S = 30.0


class SlurmQueryError(RuntimeError):
    """A SLURM client command failed for another reason than "no such job"."""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # SLURM's base state word: PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, TIMEOUT, ...
    reason: str | None  # slurmctld's Reason (None when "None")
    exit_code: str | None  # "rc:signal"
    restarts: int  # how many times the job was requeued (scontrol requeue, preemption, submitit's timeout)
    nodes: str | None
    std_out: str | None  # the batch script's stdout path; only known while slurmctld holds the job
    source: str  # "scontrol" | "sacct"


def run_slurm_command(args: list[str], timeout: float = _TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SlurmQueryError(f"{args[0]} did not answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise SlurmQueryError(f"cannot run {args[0]}: {exc}") from exc


def _none(value: str | None) -> str | None:
    return None if value in (None, "", "None", "(null)", "Unknown") else value


def _from_scontrol(job_id: str) -> JobInfo | None:
    proc = run_slurm_command(["scontrol", "show", "job", "--oneliner", job_id])
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return None
        raise SlurmQueryError(f"scontrol show job {job_id}: {proc.stderr.strip() or proc.returncode}")
    line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    # key=value pairs separated by spaces: a value with spaces (a JobName) loses its tail, none read here has one
    fields = dict(item.partition("=")[::2] for item in line.split() if "=" in item)
    if "JobState" not in fields:
        raise SlurmQueryError(f"scontrol show job {job_id}: unexpected output {line[:200]!r}")
    return JobInfo(
        job_id=job_id,
        state=fields["JobState"],
        reason=_none(fields.get("Reason")),
        exit_code=_none(fields.get("ExitCode")),
        restarts=int(fields.get("Restarts", "0") or 0),
        nodes=_none(fields.get("NodeList")),
        std_out=_none(fields.get("StdOut")),
        source="scontrol",
    )


def _from_sacct(job_id: str) -> JobInfo | None:
    proc = run_slurm_command(
        ["sacct", "--noheader", "--parsable2", "--allocations", "--duplicates", "--jobs", job_id,
         "--format", "JobID,State,ExitCode,Reason,NodeList"]
    )
    if proc.returncode != 0:
        raise SlurmQueryError(f"sacct -j {job_id}: {proc.stderr.strip() or proc.returncode}")
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
    rows = [r for r in rows if len(r) >= 5 and r[0] == job_id]
    if not rows:
        return None
    _, state, exit_code, reason, nodes = rows[-1][:5]  # the latest start of the job comes last
    return JobInfo(
        job_id=job_id,
        state=state.split()[0],  # "CANCELLED by 0" -> "CANCELLED"
        reason=_none(reason),
        exit_code=_none(exit_code),
        restarts=len(rows) - 1,
        nodes=_none(nodes),
        std_out=None,
        source="sacct",
    )


_JOB_ID = re.compile(r"^\d+$")


def query_job(job_id: str) -> JobInfo | None:
    """Everything SLURM knows about ``job_id``; None when neither slurmctld nor accounting knows it."""
    if not _JOB_ID.match(job_id):
        raise ValueError(f"job_id: not a SLURM job id (got {job_id!r}; allowed: digits)")
    return _from_scontrol(job_id) or _from_sacct(job_id)
