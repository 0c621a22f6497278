"""The ``local`` executor: a trial's job as ``world_size`` processes on this machine, through submitit.

submitit's ``LocalExecutor`` starts a controller process that launches ``tasks_per_node`` copies of the
pickled job and exports the environment ``setup_distributed()`` reads (ranks, world size, master address),
exactly as on a SLURM node. Two things are changed on top of it:

* the controller starts in its own session, so its process group is the job's process group. Cancelling
  signals the whole group (controller and ranks); a job orphaned by a SIGKILLed driver can be found again
  by its id (the controller's pid = the group id) and ended before its trial is resubmitted
  (``attach``), so two jobs never write into one trial directory;
* the timeout defaults to a week instead of submitit's two minutes: a local trial is not time-boxed;
* ``MASTER_PORT`` is a port the kernel just handed out, not submitit's draw from the job id (which can hit a
  port in use and fail the rendezvous with EADDRINUSE);
* with ``executor.local.warm_start`` (the default) each task is forked from a warm process that has imported
  torch and the trainer (``orchestrator.run.executors.warmstart``) instead of starting a fresh interpreter.

The job id, log path, state and failure reason are read from submitit's own files
(``<folder>/<job id>_<task>_{log.out,result.pkl}``).
"""

from __future__ import annotations

import logging
import os
import pickle
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import submitit
from submitit.local import local as submitit_local

from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec
from orchestrator.run.executors.base import ExecutorBase, JobState
from orchestrator.run.executors.warmstart import WarmServer, task_command

__all__ = ["LocalExecutor", "LocalJobHandle", "DEFAULT_TIMEOUT_MIN"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MIN = 7 * 24 * 60
_GRACE_SECONDS = 10.0


def _group_alive(pgid: int) -> bool:
    """True when some process of group ``pgid`` still runs a submitit command line (zombies do not count).

    The command-line check guards against an unrelated process group that re-used the id after ours ended.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != pgid or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if any("submitit" in arg for arg in proc.cmdline()):
                return True
        except (ProcessLookupError, psutil.Error):  # ended meanwhile
            continue
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _end_group(pgid: int, grace: float = _GRACE_SECONDS) -> None:
    """SIGINT the group (submitit's controller then stops its ranks), SIGKILL whatever is left after ``grace``."""
    _signal_group(pgid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.1)


class LocalJobHandle:
    """A submitted local job. Its id is the controller's pid, which is also its process-group id."""

    def __init__(
        self,
        folder: Path,
        job_id: str,
        ntasks: int,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._folder = folder
        self._job_id = job_id
        self._ntasks = ntasks
        self._process = process
        self._cancelled = False
        self._final: JobState | None = None
        self._reason: str | None = None

    def __repr__(self) -> str:
        return f"LocalJobHandle(job_id={self._job_id!r}, ntasks={self._ntasks})"

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def log_path(self) -> Path:
        """Rank 0's combined stdout/stderr as captured by submitit."""
        return self._folder / f"{self._job_id}_0_log.out"

    @property
    def requeues(self) -> int:
        """Always 0: a local job is never restarted under its id (a resubmission is a new job)."""
        return 0

    def _running(self) -> bool:
        if self._process is not None and self._process.poll() is None:
            return True
        # The ranks may outlive a controller that was killed on its own: the group decides.
        return _group_alive(int(self._job_id))

    def state(self) -> JobState:
        if self._final is not None:
            return self._final
        if self._running():
            return JobState.RUNNING
        self._final, self._reason = self._outcome()
        return self._final

    def _outcome(self) -> tuple[JobState, str | None]:
        errors: list[str] = []
        missing = 0
        for task in range(self._ntasks):
            path = self._folder / f"{self._job_id}_{task}_result.pkl"
            if not path.exists():
                missing += 1
                continue
            with open(path, "rb") as f:
                outcome, payload = pickle.load(f)
            if outcome != "success":
                errors.append(f"rank {task}: {str(payload).strip().splitlines()[-1] if payload else outcome}")
        if errors:
            return JobState.FAILED, errors[0]
        if missing == 0:
            return JobState.COMPLETED, None
        if self._cancelled:
            return JobState.CANCELLED, "cancelled"
        code = self._process.returncode if self._process is not None else None
        return JobState.FAILED, f"{missing} of {self._ntasks} ranks ended without a result (exit code {code})"

    def done(self) -> bool:
        return self.state().is_terminal

    def cancel(self) -> None:
        """End every process of the job and wait for them (SIGINT, then SIGKILL after a grace period)."""
        if self._final is not None:
            return
        self._cancelled = True
        _end_group(int(self._job_id))
        if self._process is not None:
            try:
                self._process.wait(timeout=_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("local job %s: controller did not exit after SIGKILL", self._job_id)
        self.state()

    def reason(self) -> str | None:
        self.state()
        return self._reason


class _SessionLocalExecutor(submitit.LocalExecutor):
    """submitit's local executor with the controller in a new session (see the module docstring)."""

    warm_server: WarmServer | None = None

    def _submit_command(self, command: str) -> submitit_local.LocalJob[Any]:
        if self.warm_server is not None:
            command = shlex.join(task_command(self.warm_server.dir, self.folder))
        ntasks = self.parameters.get("tasks_per_node", 1)
        env = dict(os.environ)
        env.update(
            SUBMITIT_LOCAL_NTASKS=str(ntasks),
            SUBMITIT_LOCAL_COMMAND=command,
            SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * self.parameters.get("timeout_min", DEFAULT_TIMEOUT_MIN))),
            SUBMITIT_LOCAL_SIGNAL_DELAY_S=str(int(self.parameters.get("signal_delay_s", 30))),
            SUBMITIT_LOCAL_NODEID="0",
            SUBMITIT_LOCAL_JOB_NUM_NODES="1",
            SUBMITIT_STDERR_TO_STDOUT="1",
            SUBMITIT_EXECUTOR="local",
            CUDA_VISIBLE_DEVICES=",".join(str(k) for k in range(self.parameters.get("gpus_per_node", 0))),
            SUBMITIT_LOCAL_WITH_SHELL="",
            # submitit draws the DDP port from the job id, which can hit a port in use (Ray holds many):
            # hand the ranks one the kernel just gave out instead.
            MASTER_PORT=str(_free_port()),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "submitit.local._local", str(self.folder)], env=env, start_new_session=True
        )
        return submitit_local.LocalJob(
            folder=self.folder, job_id=str(process.pid), process=process, tasks=list(range(ntasks))
        )


class LocalExecutor(ExecutorBase):
    """Runs each trial as ``world_size`` local processes (one node only); no watcher (each handle asks the
    kernel), and ``cancel_all`` is ``ExecutorBase``'s: every job's group ended at once."""

    kind = "local"

    def __init__(self, folder: Path, settings: ExecutorSpec, *, timeout_min: float = DEFAULT_TIMEOUT_MIN) -> None:
        self.folder = Path(folder).resolve()
        self.settings = settings
        self.timeout_min = timeout_min

    def submit(self, job: Callable[[], Any], *, name: str, resources: ResourcesSpec) -> LocalJobHandle:
        if resources.nodes != 1:
            raise ValueError(
                f"resources.nodes: the local executor runs one node (got {resources.nodes!r}; allowed: 1)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        executor = _SessionLocalExecutor(folder=self.folder)
        if self.settings.local.warm_start:
            executor.warm_server = WarmServer.get()
        executor.update_parameters(
            name=name,
            tasks_per_node=resources.tasks_per_node,
            gpus_per_node=resources.gpus_per_node,
            timeout_min=self.timeout_min,
        )
        submitted = executor.submit(job)
        process = submitted._process  # the controller; submitit keeps no public accessor for it
        logger.info("local job %s (%s): %d processes", submitted.job_id, name, resources.tasks_per_node)
        return LocalJobHandle(self.folder, submitted.job_id, resources.tasks_per_node, process)

    def attach(self, job_id: str, *, ntasks: int = 1) -> LocalJobHandle | None:
        """The handle of an earlier job of this executor that is still running (e.g. of a killed driver)."""
        if not job_id.isdigit() or not _group_alive(int(job_id)):
            return None
        return LocalJobHandle(self.folder, job_id, ntasks)
