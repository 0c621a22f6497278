"""What SLURM says about jobs: ``scontrol show job`` (one job) or ``squeue --me`` (all of the user's jobs, one
RPC) while slurmctld holds them, ``sacct`` after that.

slurmctld answers for pending, running and recently ended jobs (``MinJobAge``) and knows the pending
``Reason``, the restart count and the log path; the accounting database answers for everything older.
``sacct -D`` lists a requeued job once per start, so its restarts are counted there too. Both commands are
bounded by a timeout: a slow controller makes a poll fail (``SlurmQueryError``), it never hangs the driver.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

__all__ = ["JobInfo", "SlurmQueryError", "query_job", "run_slurm_command", "sacct_jobs", "squeue_jobs"]

_TIMEOUT_S = 30.0
_JOB_ID = re.compile(r"^\d+$")


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
    source: str  # "scontrol" | "squeue" | "sacct"


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


def sacct_jobs(job_ids: list[str]) -> dict[str, JobInfo]:
    """What the accounting database knows about ``job_ids``, in one ``sacct`` call; unknown ids are absent."""
    if not job_ids:
        return {}
    proc = run_slurm_command(
        ["sacct", "--noheader", "--parsable2", "--allocations", "--duplicates", "--jobs", ",".join(job_ids),
         "--format", "JobID,State,ExitCode,Reason,NodeList"]
    )
    if proc.returncode != 0:
        raise SlurmQueryError(f"sacct -j {','.join(job_ids)[:80]}: {proc.stderr.strip() or proc.returncode}")
    starts: dict[str, list[list[str]]] = {}
    for line in proc.stdout.splitlines():
        row = line.split("|")
        if len(row) >= 5 and row[0] in job_ids:
            starts.setdefault(row[0], []).append(row)
    infos = {}
    for job_id, rows in starts.items():
        _, state, exit_code, reason, nodes = rows[-1][:5]  # the latest start of the job comes last
        infos[job_id] = JobInfo(
            job_id=job_id,
            state=state.split()[0],  # "CANCELLED by 0" -> "CANCELLED"
            reason=_none(reason),
            exit_code=_none(exit_code),
            restarts=len(rows) - 1,
            nodes=_none(nodes),
            std_out=None,
            source="sacct",
        )
    return infos


def _from_sacct(job_id: str) -> JobInfo | None:
    return sacct_jobs([job_id]).get(job_id)


# squeue's long format: "Field:suffix" appends the suffix, so "|" separates the columns (StdOut, a path, last).
_SQUEUE_FIELDS = ("JobID", "State", "Reason", "RestartCnt", "exit_code", "NodeList", "STDOUT")
_SQUEUE_FORMAT = ",".join(f"{f}:|" for f in _SQUEUE_FIELDS[:-1]) + f",{_SQUEUE_FIELDS[-1]}:"


def squeue_jobs() -> dict[str, JobInfo]:
    """Every job of this user that slurmctld holds (pending, running, or ended within ``MinJobAge``), in one
    ``squeue`` call: one RPC to slurmctld however many jobs there are."""
    proc = run_slurm_command(["squeue", "--me", "--states=all", "--noheader", "--Format", _SQUEUE_FORMAT])
    if proc.returncode != 0:
        raise SlurmQueryError(f"squeue --me: {proc.stderr.strip() or proc.returncode}")
    infos = {}
    for line in proc.stdout.splitlines():
        row = [cell.strip() for cell in line.split("|", len(_SQUEUE_FIELDS) - 1)]
        if len(row) != len(_SQUEUE_FIELDS) or not _JOB_ID.match(row[0]):
            continue  # array and heterogeneous jobs ("12_3", "12+1") are none of ours
        job_id, state, reason, restarts, exit_code, nodes, std_out = row
        infos[job_id] = JobInfo(
            job_id=job_id,
            state=state.split()[0],
            reason=_none(reason),
            exit_code=_none(exit_code),
            restarts=int(restarts) if restarts.isdigit() else 0,
            nodes=_none(nodes),
            # squeue prints the --output pattern as given; sbatch expands %j to the id (submitit uses only %j)
            std_out=_none(std_out.replace("%j", job_id)) if std_out else None,
            source="squeue",
        )
    return infos



def query_job(job_id: str) -> JobInfo | None:
    """Everything SLURM knows about ``job_id``; None when neither slurmctld nor accounting knows it."""
    if not _JOB_ID.match(job_id):
        raise ValueError(f"job_id: not a SLURM job id (got {job_id!r}; allowed: digits)")
    return _from_scontrol(job_id) or _from_sacct(job_id)
