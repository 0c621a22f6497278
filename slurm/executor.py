"""The ``slurm`` executor: each trial is one submitit job on a SLURM cluster (registered as ``slurm`` in the
``convsweep.executors`` entry-point group; the protocol is ``orchestrator.run.executors.base``).

A trial's job has ``resources.nodes x tasks_per_node`` processes (one per GPU), placed by ``srun``; every
process runs the pickled ``TrialJob`` and joins DDP from the SLURM environment (submitit's
``TorchDistributedEnvironment``). Settings are mapped in ``slurm.params``.

Interruptions, and how each ends in a correct resume:

* time limit: SLURM sends SIGUSR2 ``signal_delay_s`` before it; submitit calls ``TrialJob.checkpoint()`` and
  requeues the job itself;
* preemption (``PreemptMode=REQUEUE``) and ``scontrol requeue``: SLURM sends SIGTERM, which submitit ignores,
  kills the job after ``KillWait`` and starts it again from its batch script;

in each case the job keeps its id, and the trainer resumes from the trial directory's last per-epoch
checkpoint. A cancel (``scancel``) also sends SIGTERM: because the checkpoint signal is pinned to SIGUSR2 (not
``SUBMITIT_PREEMPT_SIGNAL=TERM``), a cancel is never turned into a requeue.

State, reason and restart count come from SLURM, not from submitit's result files: one watcher per sweep
(``slurm.watcher``) asks ``squeue --me`` (then ``sacct``) for all of the sweep's jobs once per
``executor.slurm.poll_seconds``, and every handle reads its snapshot; many jobs are cancelled with one ``scancel``
(``SlurmExecutor.cancel_all``). Each executor writes into a fresh submitit folder under its ``folder``: job ids start
again at 1 when a cluster's state is wiped, and a stale ``<id>_result.pkl`` must never describe a new job.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError

from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec
from orchestrator.run.executors.base import ExecutorBase, JobState
from slurm.params import PREEMPT_SIGNAL, sbatch_options, slurm_parameters
from slurm.queries import JobInfo, SlurmQueryError, query_job
from slurm.watcher import SlurmWatcher, watcher_for

__all__ = ["SlurmExecutor", "SlurmJobHandle", "never_starts"]

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
_CANCEL_WAIT_S = 120.0


def never_starts(reason: str | None) -> bool:
    """True for a pending ``Reason`` that means the job can never start (e.g. ``PartitionTimeLimit``)."""
    return bool(reason) and _NEVER.match(reason.split(",")[0]) is not None  # type: ignore[union-attr]


def _one_line(text: str) -> str:
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
        self._reason = _one_line(reason) if reason else None

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
        if self._watcher.cancel([self._job_id], wait_s=_CANCEL_WAIT_S):
            logger.warning("SLURM job %s still listed %.0f s after scancel", self._job_id, _CANCEL_WAIT_S)
        self.cancelled()

    def cancelled(self) -> None:
        """Take the job as ended by a cancel (``SlurmExecutor.cancel_all`` did it) unless it ended otherwise."""
        if not self.state().is_terminal:
            self._finish(JobState.CANCELLED, f"SLURM job {self._job_id} cancelled")

    def _watcher_says_gone(self) -> bool:
        seen, info = self._watcher.lookup(self._job_id) if self._watcher is not None else (True, None)
        return seen and (info is None or _STATES.get(info.state, JobState.RUNNING).is_terminal)


def _clean_environment() -> dict[str, str]:
    """This process's environment minus a surrounding SLURM job's variables (SLURM_CONF kept).

    A driver that itself runs as a SLURM job (``convsweep sweep --detach``) carries that job's SLURM_* and
    SBATCH_* variables; passed on, they would leak into the trial's job (srun reads them as options).
    """
    prefixes = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes) or k == "SLURM_CONF"}


class _Submitit(submitit.SlurmExecutor):
    """submitit's SLURM executor, submitting with a clean environment (``_clean_environment``) and the
    checkpoint signal pinned for the job (see the module docstring)."""

    def _make_submission_command(self, submission_file_path: Path) -> list[str]:
        unset = [arg for k in sorted(set(os.environ) - set(_clean_environment())) for arg in ("-u", k)]
        return ["env", *unset, f"SUBMITIT_PREEMPT_SIGNAL={PREEMPT_SIGNAL}", "sbatch", str(submission_file_path)]


def _sbatch_error(exc: FailedJobError) -> str:
    """sbatch's own complaint, one line (e.g. "Batch job submission failed: Requested node configuration ...")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if "sbatch:" in ln]
    errors = [ln.split("error:", 1)[1].strip() for ln in lines if "error:" in ln]
    failed = [e for e in errors if e.startswith("Batch job submission failed")]
    picked = failed or errors or lines or [str(exc)]
    return _one_line(picked[-1])


class SlurmExecutor(ExecutorBase):
    """Submits each trial as one SLURM job through submitit (see the module docstring)."""

    kind = "slurm"

    def __init__(self, folder: Path, settings: ExecutorSpec, *, poll_interval: float | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.settings = settings
        self.poll_interval = settings.slurm.poll_seconds if poll_interval is None else poll_interval
        self._known_options = sbatch_options()  # refuses unknown additional_parameters before any submission
        slurm_parameters(settings.slurm, ResourcesSpec(), name="check", known_options=self._known_options)
        self._submitit_folder: Path | None = None

    def __repr__(self) -> str:
        return f"SlurmExecutor(folder={str(self.folder)!r})"

    @property
    def watcher(self) -> SlurmWatcher:
        """The one watcher of this folder's jobs in this process (see ``slurm.watcher``)."""
        return watcher_for(self.folder, self.poll_interval)

    @property
    def submitit_folder(self) -> Path:
        """This executor's own submitit folder, ``<folder>/<time>-<random>``, made on first use."""
        if self._submitit_folder is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self._submitit_folder = self.folder / f"{stamp}-{uuid.uuid4().hex[:8]}"
            self._submitit_folder.mkdir(parents=True, exist_ok=False)
        return self._submitit_folder

    def submit(self, job: Callable[[], Any], *, name: str, resources: ResourcesSpec) -> SlurmJobHandle:
        """Submit ``job`` as one SLURM job; a job sbatch refuses comes back FAILED with sbatch's reason."""
        params = slurm_parameters(self.settings.slurm, resources, name=name, known_options=self._known_options)
        executor = _Submitit(folder=self.submitit_folder)
        executor.update_parameters(**params)
        try:
            submitted = executor.submit(job)
        except FailedJobError as exc:
            reason = f"sbatch refused job {name!r}: {_sbatch_error(exc)}"
            logger.error("%s", reason)
            return SlurmJobHandle("rejected", self.submitit_folder / "rejected.log", None, rejected=reason)
        handle = SlurmJobHandle(submitted.job_id, submitted.paths.stdout, self.watcher)
        logger.info("SLURM job %s (%s): %d node(s) x %d process(es), %d GPU(s) per node", handle.job_id, name,
                    resources.nodes, resources.tasks_per_node, resources.gpus_per_node)
        return handle

    def submit_driver(self, argv: list[str], *, name: str, log_path: Path, cpus: int = 2,
                      time_limit: str | None = None) -> SlurmJobHandle:
        """Run ``argv`` (the sweep driver: ``convsweep sweep --detach``) as a small CPU job of this cluster.

        The job uses the sweep's partition/account/qos; its time limit is ``time_limit`` or the partition's
        default. Output is appended to ``log_path``.
        """
        slurm = self.settings.slurm
        log_path = Path(log_path).resolve()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        options = [f"--job-name={name}", "--nodes=1", "--ntasks=1", f"--cpus-per-task={cpus}",
                   f"--output={log_path}", "--open-mode=append", "--parsable", f"--chdir={os.getcwd()}"]
        options += [f"--{key}={value}" for key, value in
                    (("partition", slurm.partition), ("account", slurm.account), ("qos", slurm.qos),
                     ("time", time_limit)) if value is not None]
        proc = subprocess.run(["sbatch", *options, "--wrap", shlex.join(argv)], capture_output=True, text=True,
                              timeout=60, check=False, env=_clean_environment())
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch refused the driver job {name!r}: "
                               f"{_one_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?')}")
        job_id = proc.stdout.strip().split(";")[0]
        logger.info("driver job %s (%s): log %s", job_id, name, log_path)
        return SlurmJobHandle(job_id, log_path, self.watcher)

    def attach(self, job_id: str) -> SlurmJobHandle | None:
        """The handle of a job an earlier driver submitted from this folder, while SLURM still holds it."""
        if not job_id.isdigit():
            return None
        seen, info = self.watcher.lookup(job_id)  # a job of this sweep the watcher follows: no query of its own
        try:
            info = info if seen and info is not None and info.std_out else query_job(job_id)
        except SlurmQueryError as exc:
            logger.warning("cannot look up SLURM job %s: %s", job_id, exc)
            return None
        # Only a job whose log is in our folder is ours: ids repeat after a cluster's state is wiped.
        if info is None or info.std_out is None or not Path(info.std_out).resolve().is_relative_to(self.folder):
            return None
        return SlurmJobHandle(job_id, Path(info.std_out), self.watcher)

    def start_watching(self) -> None:
        """Make this process the sweep's SLURM poller (the driver: it lives as long as the sweep)."""
        self.watcher.start()

    def cancel_all(self, handles: list[SlurmJobHandle]) -> None:
        """End many jobs with one ``scancel`` and wait until SLURM lists none of them."""
        left = self.watcher.cancel([h.job_id for h in handles], wait_s=_CANCEL_WAIT_S)
        if left:
            logger.warning("SLURM job(s) %s still listed %.0f s after scancel", ", ".join(left), _CANCEL_WAIT_S)
        for handle in handles:
            handle.cancelled()
