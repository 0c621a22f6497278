"""A SLURM job as the driver sees it (``SlurmJobHandle``): state, reason and restart count from the sweep's watcher
snapshot (``slurm.watcher``), never from a SLURM query of its own; a pending reason that no waiting can fix
(``never_starts``) ends the job FAILED with that reason; ``cancel`` is one ``scancel`` that waits until SLURM no
longer lists the job. The executor that submits and attaches these handles is ``slurm.executor``.
"""

from __future__ import annotations

import logging
import pickle
import re
import time
from pathlib import Path

from orchestrator.run.executors.base import JobState
from slurm.queries import JobInfo
from slurm.watcher import SlurmWatcher

__all__ = ["CANCEL_WAIT_S", "SlurmJobHandle", "never_starts", "one_line"]

logger = logging.getLogger(__name__)

_STATES: dict[str, JobState] = {
    **dict.fromkeys(["PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT"],
                    JobState.PENDING),
    **dict.fromkeys(["RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED",
                     "STOPPED"], JobState.RUNNING),
    "COMPLETED": JobState.COMPLETED,
    **dict.fromkeys(["CANCELLED", "REVOKED"], JobState.CANCELLED),
    **dict.fromkeys(["FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"],
                    JobState.FAILED),
}
# Pending reasons that no waiting can fix: the job as submitted can never start on this cluster
# (PartitionConfig: more of something per node than the partition's nodes have, e.g. 5 tasks on 2 CPUs).
_NEVER = re.compile(
    r"^(BadConstraints|DependencyNeverSatisfied|InvalidAccount|InvalidQOS|PartitionConfig|PartitionNodeLimit"
    r"|PartitionTimeLimit"
    r"|(QOS|Assoc)(Max|Min)\w*PerJob\w*|QOSMaxWallDurationPerJobLimit)$"
)
_NEVER_CONFIRM_S = 3.0  # such a reason must hold this long: slurmctld may set a coarse one first (see below)
_UNKNOWN_GRACE_S = 60.0  # a job SLURM does not know this long after its submission is reported FAILED
CANCEL_WAIT_S = 120.0


def never_starts(reason: str | None) -> bool:
    """True for a pending ``Reason`` that means the job can never start (e.g. ``PartitionTimeLimit``)."""
    return bool(reason) and _NEVER.match(reason.split(",")[0]) is not None  # type: ignore[union-attr]


def one_line(text: str) -> str:
    return " ".join(text.split())


class SlurmJobHandle:
    """One trial's SLURM job. ``state()`` reads the sweep's watcher snapshot (no SLURM call of its own)."""

    def __init__(self, job_id: str, log_path: Path, watcher: SlurmWatcher | None, *,
                 rejected: str | None = None) -> None:
        self._job_id = job_id
        self._log_path = Path(log_path)
        self._watcher = watcher
        self._created = time.monotonic()
        self._state = JobState.PENDING
        self._final: JobState | None = None
        self._reason: str | None = rejected
        self._restarts = 0
        self._never: tuple[str, float] | None = None  # (never-start reason, when first seen)
        if rejected is not None or watcher is None:
            self._final = JobState.FAILED
        else:
            watcher.register(job_id)

    def __repr__(self) -> str:
        return f"SlurmJobHandle(job_id={self._job_id!r}, state={self._state.value})"

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def log_path(self) -> Path:
        """Rank 0's stdout+stderr (submitit's ``<id>_0_log.out``; appended to across requeues)."""
        return self._log_path

    @property
    def requeues(self) -> int:
        """How many times SLURM started the job again (requeue, preemption, timeout), as of the last poll."""
        return self._restarts

    def state(self) -> JobState:
        if self._final is not None or self._watcher is None:
            return self._final or self._state
        now = time.monotonic()
        seen, info = self._watcher.lookup(self._job_id)
        if not seen:
            return self._state
        if info is None:
            if now - self._created > _UNKNOWN_GRACE_S:
                self._finish(JobState.FAILED, f"SLURM job {self._job_id} is unknown to slurmctld and to sacct")
            return self._state
        self._restarts = info.restarts
        self._state = _STATES.get(info.state, JobState.RUNNING)
        if self._state == JobState.PENDING and never_starts(info.reason):
            # Right after submission a job over a partition's time limit shows PartitionConfig, then
            # PartitionTimeLimit: report the reason once it has held for a while.
            if self._never is None or self._never[0] != info.reason:
                self._never = (str(info.reason), now)
            elif now - self._never[1] >= _NEVER_CONFIRM_S:
                self._cancel_quietly()
                self._finish(JobState.FAILED, f"SLURM job {self._job_id} can never start: Reason={info.reason} "
                                              f"(cancelled)")
            return self._state
        self._never = None
        if self._state.is_terminal:
            self._finish(self._state, self._explain(info))
        return self._state

    def _finish(self, state: JobState, reason: str | None) -> None:
        self._state = self._final = state
        self._reason = one_line(reason) if reason else None

    def _explain(self, info: JobInfo) -> str | None:
        if info.state == "COMPLETED":
            return None
        text = f"SLURM job {self._job_id} ended {info.state}"
        details = [f"exit code {info.exit_code}"] if info.exit_code and info.exit_code != "0:0" else []
        if info.reason:
            details.append(f"Reason={info.reason}")
        if details:
            text += f" ({', '.join(details)})"
        error = self._submitit_error()
        return f"{text}: {error}" if error else text

    def _submitit_error(self) -> str | None:
        """The last line of the exception rank 0 raised, from submitit's result file (our own pickle)."""
        path = self._log_path.with_name(f"{self._job_id}_0_result.pkl")
        try:
            with open(path, "rb") as f:
                outcome, payload = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
            return None
        lines = [ln for ln in str(payload).strip().splitlines() if ln.strip()] if outcome == "error" else []
        return lines[-1].strip() if lines else None

    def done(self) -> bool:
        return self.state().is_terminal

    def reason(self) -> str | None:
        """SLURM's reason in one line when the job failed, was cancelled or can never start; else None."""
        self.state()
        return self._reason

    def _cancel_quietly(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel([self._job_id], wait_s=0)

    def cancel(self) -> None:
        """``scancel`` the job and wait until SLURM no longer lists it as pending, running or completing."""
        if self._watcher is None or not self._job_id.isdigit():  # refused by sbatch: there is no job
            return
        if self._final is not None and self._final != JobState.CANCELLED and self._watcher_says_gone():
            return
        if self._watcher.cancel([self._job_id], wait_s=CANCEL_WAIT_S):
            logger.warning("SLURM job %s still listed %.0f s after scancel", self._job_id, CANCEL_WAIT_S)
        self.cancelled()

    def cancelled(self) -> None:
        """Take the job as ended by a cancel (``SlurmExecutor.cancel_all`` did it) unless it ended otherwise."""
        if not self.state().is_terminal:
            self._finish(JobState.CANCELLED, f"SLURM job {self._job_id} cancelled")

    def _watcher_says_gone(self) -> bool:
        seen, info = self._watcher.lookup(self._job_id) if self._watcher is not None else (True, None)
        return seen and (info is None or _STATES.get(info.state, JobState.RUNNING).is_terminal)
