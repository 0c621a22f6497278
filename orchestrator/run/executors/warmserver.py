"""The warm server (see ``orchestrator.run.executors.warmstart``): imports what a rank needs, listens on
``DIR/socket`` and forks one rank per request of a task client (``warmclient``).

A forked rank leaves the server's session, takes the client's environment, working directory and stdio, runs
submitit's job code and reports its exit code; it kills itself when its client exits, so ending the job's
process group (which holds the clients, not the ranks) still ends every rank.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path

__all__ = ["PID_NAME", "PRELOADED_MODULES", "SOCKET_NAME", "serve"]

# What a rank would import before its first step. torch._dynamo is on the list because torch.optim imports it
# on the optimiser's first call (its methods are wrapped to stay out of torch.compile), ~1.4 s on its own.
# layers and pipelines load their torch modules on first use (validation imports the packages without torch):
# name those modules, or every rank would import them after the fork.
PRELOADED_MODULES = ("torch", "torch._dynamo", "torch.distributed", "layers.models", "layers.summary", "layers.fold",
                     "layers.erf", "layers.orth", "pipelines.loader", "pipelines.backends.pytorch",
                     "orchestrator.train.trainer", "orchestrator.train.evaluate", "orchestrator.train.job",
                     "submitit.core.submission")

SOCKET_NAME = "socket"
PID_NAME = "server.pid"
MAX_MESSAGE = 1 << 20
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCONT)


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
    data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
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
    for sig in FORWARDED_SIGNALS:
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
