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
from orchestrator.run.executors.base import ExecutorBase
from slurm.handle import CANCEL_WAIT_S, SlurmJobHandle, never_starts, one_line
from slurm.params import PREEMPT_SIGNAL, sbatch_options, slurm_parameters
from slurm.queries import SlurmQueryError, query_job
from slurm.watcher import SlurmWatcher, watcher_for

# SlurmJobHandle and never_starts are re-exported: the executor's handles are this package's public face
__all__ = ["SlurmExecutor", "SlurmJobHandle", "never_starts"]

logger = logging.getLogger(__name__)


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
    return one_line(picked[-1])


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
                               f"{one_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?')}")
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
        left = self.watcher.cancel([h.job_id for h in handles], wait_s=CANCEL_WAIT_S)
        if left:
            logger.warning("SLURM job(s) %s still listed %.0f s after scancel", ", ".join(left), CANCEL_WAIT_S)
        for handle in handles:
            handle.cancelled()
