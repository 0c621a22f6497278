"""Warm start for local jobs: each rank is forked from a process that has already imported torch and the trainer.

A rank started as a fresh interpreter spends ~3 s of CPU on imports before its first step: torch itself, then
torch._dynamo, which the first call into ``torch.optim`` pulls in. For short trials (smoke sweeps, the demo,
ablations of a few epochs on small data) that is more than the training, and the local executor pays it for
every rank of every trial. So the local executor keeps one warm process per driver-side process and lets it fork
the ranks; the job is still submitit's local job (its controller, task environment, log files, result pickles,
timeouts and requeue code are unchanged), only the program each task runs is the small client below instead of
``python -m submitit.core._submit FOLDER``.

Three parts:

* ``WarmServer`` (in the executor's process) starts ``python -m orchestrator.run.executors.warmstart serve DIR PARENT_PID`` in a
  private (0700) directory and stops it with the process. The server imports, then listens on ``DIR/socket``,
  forks one child per request and exits when its parent is gone.
* ``task_command`` is what submitit's controller runs per rank: ``python -u -m orchestrator.run.executors.warmstart
  submitit-task DIR FOLDER``. The client sends its environment, working directory and stdin/stdout/stderr to the
  server, forwards every signal it gets to the forked rank and exits with the rank's exit code. The rank watches
  the client: when the client dies (the job's process group was SIGKILLed) the rank kills itself, so cancelling
  a job ends its ranks as before. (SIGSTOP to the job's group stops the clients, not the ranks.)
* If the server cannot be reached, the client turns into the cold command (``exec``): a warm start can only save
  time, never lose a job.

What the fork shares with the server is what was imported and nothing else: the rank takes the client's
environment, working directory and stdio, and seeds its own RNGs (the trainer does). The server never touches
CUDA, so forked ranks initialise it themselves, as fresh processes do.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

__all__ = ["WarmServer", "task_command", "PRELOADED_MODULES"]

# What a rank would import before its first step. torch._dynamo is on the list because torch.optim imports it
# on the optimiser's first call (its methods are wrapped to stay out of torch.compile), ~1.4 s on its own.
# layers and pipelines load their torch modules on first use (validation imports the packages without torch):
# name those modules, or every rank would import them after the fork.
PRELOADED_MODULES = ("torch", "torch._dynamo", "torch.distributed", "layers.models", "layers.summary", "layers.fold",
                     "layers.erf", "layers.orth", "pipelines.loader", "pipelines.backends.pytorch",
                     "orchestrator.train.trainer", "orchestrator.train.evaluate", "orchestrator.train.job", "submitit.core.submission")

SOCKET_NAME = "socket"
PID_NAME = "server.pid"
_MAX_MESSAGE = 1 << 20
_START_WAIT_SECONDS = 60.0  # how long a client waits for a server that is still importing
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCONT)


def task_command(server_dir: str | Path, folder: str | Path) -> list[str]:
    """The per-rank command for submitit's controller. "submitit" in it lets the executor recognise the process."""
    return [sys.executable, "-u", "-m", "orchestrator.run.executors.warmstart", "submitit-task", str(server_dir), str(folder)]


def _cold_command(folder: str) -> list[str]:
    return [sys.executable, "-u", "-m", "submitit.core._submit", folder]


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
    for path in Path(tempfile.gettempdir()).glob("convsweep-warm-*"):
        try:
            if path.stat().st_uid != os.getuid():
                continue
            pid_file = path / PID_NAME
            if pid_file.exists():
                if Path(f"/proc/{pid_file.read_text().strip()}").exists():
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


# ----------------------------------------------------------------------------------------------- server side


def serve(server_dir: Path, parent_pid: int) -> None:
    """Import, listen, fork a rank per request; return when the parent process is gone or on SIGTERM."""
    for name in PRELOADED_MODULES:
        __import__(name)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    staging = server_dir / f".{SOCKET_NAME}.{os.getpid()}"
    listener.bind(str(staging))
    listener.listen(64)
    os.rename(staging, server_dir / SOCKET_NAME)  # clients see the socket only once it accepts
    (server_dir / PID_NAME).write_text(str(os.getpid()))
    listener.settimeout(0.5)
    try:
        while not stop and os.getppid() == parent_pid:
            _reap_children()
            try:
                conn, _ = listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            try:
                _fork_rank(conn, listener)
            except Exception:  # one bad request must not end the server
                traceback.print_exc()
            finally:
                conn.close()
    finally:
        listener.close()
        shutil.rmtree(server_dir, ignore_errors=True)  # socket, pid file and log: nothing outlives the server


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_rank(conn: socket.socket, listener: socket.socket) -> None:
    uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[2]
    if uid != os.getuid():
        raise PermissionError(f"warm start request from uid {uid} refused")
    conn.settimeout(10)
    data, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
    request = json.loads(data)
    if len(fds) != 3:
        raise ValueError(f"warm start request with {len(fds)} file descriptors (expected stdin, stdout, stderr)")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid != 0:
        for fd in fds:
            os.close(fd)
        return
    # the rank
    code = 1
    try:
        listener.close()
        conn.settimeout(None)
        code = _run_rank(conn, request, fds)
    except BaseException:  # noqa: BLE001 (a forked child must never return into the server's loop)
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.send(json.dumps({"exit": code}).encode())
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


def _run_rank(conn: socket.socket, request: dict, fds: list[int]) -> int:
    os.setsid()  # out of the server's process group: stopping the server never signals a rank
    for sig in _FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.stdout.reconfigure(line_buffering=True)  # as `python -u`: log lines reach submitit's files at once
    conn.send(json.dumps({"pid": os.getpid()}).encode())
    _follow_client(int(request["client_pid"]))
    sys.argv = ["submitit.core._submit", request["folder"]]
    from submitit.core.submission import process_job

    try:
        process_job(request["folder"])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 (submitit has written the error to the result pickle already)
        traceback.print_exc()
        return 1
    return 0


def _follow_client(client_pid: int) -> None:
    """Kill this rank the moment its client exits: the client is what the job's process group contains.

    Signals the client can catch it forwards; SIGKILL (what ending a job comes down to) it cannot, so the rank
    watches for the client's exit. SIGSTOP to the job's group stops the clients but not the ranks: a rank that
    stopped itself could no longer watch, and would outlive a client killed while it was stopped.
    """
    try:
        pidfd = os.pidfd_open(client_pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="warmstart-client-watch", daemon=True).start()


# ----------------------------------------------------------------------------------------------- client side


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
    needle = f"serve\0{server_dir}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
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
        os.execv(sys.executable, _cold_command(folder))
    request = {"folder": folder, "env": dict(os.environ), "cwd": os.getcwd(), "client_pid": os.getpid()}
    try:
        socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
        first = sock.recv(_MAX_MESSAGE)
    except OSError:
        first = b""
    if not first:  # the server refused or died before forking: nothing has run yet
        sock.close()
        os.execv(sys.executable, _cold_command(folder))
    message = json.loads(first)
    if "exit" in message:  # the rank ended before it could start (its traceback is in the log)
        return int(message["exit"])
    rank_pid = int(message["pid"])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(rank_pid, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    reply = sock.recv(_MAX_MESSAGE)
    if not reply:
        print(f"warmstart: rank process {rank_pid} ended without an exit status (killed by a signal?)",
              file=sys.stderr)
        return 1
    return int(json.loads(reply)["exit"])


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "serve":
        serve(Path(argv[1]), int(argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "submitit-task":
        return run_task(Path(argv[1]), argv[2])
    print("usage: python -m orchestrator.run.executors.warmstart serve DIR PARENT_PID | submitit-task DIR FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
