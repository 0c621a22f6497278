"""Warm start for local jobs: each rank is forked from a process that has already imported torch and the trainer.

A rank started as a fresh interpreter spends ~3 s of CPU on imports before its first step: torch itself, then
torch._dynamo, which the first call into ``torch.optim`` pulls in. For short trials (smoke sweeps, the demo,
ablations of a few epochs on small data) that is more than the training, and the local executor pays it for
every rank of every trial. So the local executor keeps one warm process per driver-side process and lets it fork
the ranks; the job is still submitit's local job (its controller, task environment, log files, result pickles,
timeouts and requeue code are unchanged), only the program each task runs is a small client instead of
``python -m submitit.core._submit FOLDER``.

Three parts, one module each:

* ``WarmServer`` (here, in the executor's process) starts ``python -m orchestrator.run.executors.warmstart serve DIR PARENT_PID`` in a
  private (0700) directory and stops it with the process. The server imports, then listens on ``DIR/socket``,
  forks one child per request and exits when its parent is gone.
  The server's side is ``warmserver``.
* ``task_command`` (here) is what submitit's controller runs per rank: ``python -u -m orchestrator.run.executors.warmstart
  submitit-task DIR FOLDER``. The client sends its environment, working directory and stdin/stdout/stderr to the
  server, forwards every signal it gets to the forked rank and exits with the rank's exit code. The rank watches
  the client: when the client dies (the job's process group was SIGKILLed) the rank kills itself, so cancelling
  a job ends its ranks as before. (SIGSTOP to the job's group stops the clients, not the ranks.) The client's
  side is ``warmclient``.
* If the server cannot be reached, the client turns into the cold command (``exec``): a warm start can only save
  time, never lose a job.

What the fork shares with the server is what was imported and nothing else: the rank takes the client's
environment, working directory and stdio, and seeds its own RNGs (the trainer does). The server never touches
CUDA, so forked ranks initialise it themselves, as fresh processes do.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from orchestrator.run.executors.warmserver import PID_NAME

__all__ = ["WarmServer", "task_command"]


def task_command(server_dir: str | Path, folder: str | Path) -> list[str]:
    """The per-rank command for submitit's controller. "submitit" in it lets the executor recognise the process."""
    return [sys.executable, "-u", "-m", "orchestrator.run.executors.warmstart", "submitit-task", str(server_dir), str(folder)]


class WarmServer:
    """The warm process of this (driver-side) process: started on first use, restarted if it died."""

    _current: WarmServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        _remove_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix="convsweep-warm-"))  # 0700: only this user may ask for forks
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.run.executors.warmstart", "serve", str(self.dir), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()

    @classmethod
    def get(cls) -> WarmServer:
        with cls._lock:
            if cls._current is None or cls._current.process.poll() is not None:
                cls._current = cls()
            return cls._current

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _remove_stale_dirs() -> None:
    """Directories of this user's servers that were killed before they could clean up (e.g. SIGKILL)."""
    import psutil  # here, not at the top: every rank's task client imports this module (~30 ms)

    for path in Path(tempfile.gettempdir()).glob("convsweep-warm-*"):
        try:
            if path.stat().st_uid != os.getuid():
                continue
            pid_file = path / PID_NAME
            if pid_file.exists():
                if psutil.pid_exists(int(pid_file.read_text().strip())):
                    continue
            elif time.time() - path.stat().st_mtime < 3600:  # a server may still be importing
                continue
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _stop_current() -> None:
    if WarmServer._current is not None:
        WarmServer._current.stop()


atexit.register(_stop_current)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "serve":
        from orchestrator.run.executors.warmserver import serve

        serve(Path(argv[1]), int(argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "submitit-task":
        from orchestrator.run.executors.warmclient import run_task

        return run_task(Path(argv[1]), argv[2])
    print("usage: python -m orchestrator.run.executors.warmstart serve DIR PARENT_PID | submitit-task DIR FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
