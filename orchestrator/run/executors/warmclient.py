"""The task client (see ``orchestrator.run.executors.warmstart``): what submitit's controller runs per rank.

It sends its environment, working directory and stdin/stdout/stderr to the warm server (``warmserver``),
forwards every signal it gets to the forked rank and exits with the rank's exit code. When no server can be
reached it turns into the cold command (``exec``): a warm start can only save time, never lose a job.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from orchestrator.run.executors.warmserver import FORWARDED_SIGNALS, MAX_MESSAGE, SOCKET_NAME

__all__ = ["cold_command", "run_task"]

_START_WAIT_SECONDS = 60.0  # how long a client waits for a server that is still importing


def cold_command(folder: str) -> list[str]:
    """What a rank runs without a warm server: submitit's own entry point."""
    return [sys.executable, "-u", "-m", "submitit.core._submit", folder]


def _connect(server_dir: Path) -> socket.socket | None:
    """The server's socket, waiting while a live server is still importing; None when there is none."""
    path = server_dir / SOCKET_NAME
    deadline = time.monotonic() + _START_WAIT_SECONDS
    while True:
        if path.exists():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
                return None
        if not server_dir.is_dir() or time.monotonic() > deadline or not _server_starting(server_dir):
            return None
        time.sleep(0.05)


def _server_starting(server_dir: Path) -> bool:
    # Before it listens the server has written nothing; it is starting as long as a process runs
    # `orchestrator.run.executors.warmstart serve <server_dir>`.
    import psutil  # only while a server starts: not on every rank's path (~30 ms)

    wanted = ["serve", str(server_dir)]
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []  # None: ended meanwhile, or not ours to read
        if any(args[i:i + 2] == wanted for i in range(len(args) - 1)):
            return True
    return False


def _wait_for_submission(folder: str, seconds: float = 5.0) -> None:
    # submitit renames the job's pickle to its final name only after the controller has started. A cold rank
    # is still importing torch by then; a forked one would find nothing and submitit would sleep a whole
    # second before looking again. (submitit keeps waiting on its own past this short wait.)
    job_id = os.environ.get("SUBMITIT_LOCAL_JOB_ID")
    if job_id is None:
        return
    pickle_path = Path(folder) / f"{job_id}_submitted.pkl"
    deadline = time.monotonic() + seconds
    while not pickle_path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def run_task(server_dir: Path, folder: str) -> int:
    """The client: one rank of a submitit local job, run by the warm server (or cold if it is unreachable)."""
    _wait_for_submission(folder)
    sock = _connect(server_dir)
    if sock is None:
        os.execv(sys.executable, cold_command(folder))
    request = {"folder": folder, "env": dict(os.environ), "cwd": os.getcwd(), "client_pid": os.getpid()}
    try:
        socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
        first = sock.recv(MAX_MESSAGE)
    except OSError:
        first = b""
    if not first:  # the server refused or died before forking: nothing has run yet
        sock.close()
        os.execv(sys.executable, cold_command(folder))
    message = json.loads(first)
    if "exit" in message:  # the rank ended before it could start (its traceback is in the log)
        return int(message["exit"])
    rank_pid = int(message["pid"])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(rank_pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    reply = sock.recv(MAX_MESSAGE)
    if not reply:
        print(f"warmstart: rank process {rank_pid} ended without an exit status (killed by a signal?)",
              file=sys.stderr)
        return 1
    return int(json.loads(reply)["exit"])
