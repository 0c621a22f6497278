"""Warm start of local jobs: ranks forked from a warm process behave as fresh ones (results, logs, exit codes,
cancellation) and a job never depends on the warm process being there."""

from __future__ import annotations

import os
import pickle
import signal
import shutil
import socket
import subprocess
import tempfile
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cloudpickle

from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec
from orchestrator.run.executors.base import JobState
from orchestrator.run.executors.local import LocalExecutor, _SessionLocalExecutor
from orchestrator.run.executors.warmserver import PID_NAME, SOCKET_NAME
from orchestrator.run.executors.warmstart import WarmServer, _remove_stale_dirs

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the jobs cannot import this test module


def _probe(out: str) -> dict[str, object]:
    print(f"rank {os.environ['SUBMITIT_LOCAL_GLOBALID']} says hello", flush=True)
    Path(out, f"pid{os.environ['SUBMITIT_LOCAL_GLOBALID']}").write_text(str(os.getpid()))
    return {"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "marker": os.environ.get("WARM_TEST"),
            "rank": os.environ["SUBMITIT_LOCAL_GLOBALID"], "preloaded": "torch._dynamo" in sys.modules}


def _fail() -> None:
    raise RuntimeError("the job failed on purpose")


def _sleep_ignoring_sigint(out: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the SIGKILL that follows can end it
    Path(out, f"pid{os.environ['SUBMITIT_LOCAL_GLOBALID']}").write_text(str(os.getpid()))
    time.sleep(600)


def _wait(handle, seconds: float = 120) -> JobState:
    deadline = time.monotonic() + seconds
    while not handle.done():
        assert time.monotonic() < deadline, "job did not end"
        time.sleep(0.05)
    return handle.state()


def _results(folder: Path, job_id: str, ntasks: int) -> list[tuple[str, object]]:
    return [pickle.loads((folder / f"{job_id}_{k}_result.pkl").read_bytes()) for k in range(ntasks)]


def _wait_for_pids(out: Path, ntasks: int) -> list[int]:
    deadline = time.monotonic() + 60
    while len(list(out.glob("pid*"))) < ntasks:
        assert time.monotonic() < deadline, "ranks did not start"
        time.sleep(0.05)
    time.sleep(0.2)
    return [int((out / f"pid{k}").read_text()) for k in range(ntasks)]


def test_ranks_are_forked_from_the_warm_process_with_the_jobs_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WARM_TEST", "from-the-driver")
    monkeypatch.chdir(tmp_path)
    executor = LocalExecutor(tmp_path / "jobs", ExecutorSpec())
    server = WarmServer.get()
    handle = executor.submit(lambda: _probe(str(tmp_path)), name="warm", resources=ResourcesSpec(processes_per_node=2))
    assert _wait(handle) == JobState.COMPLETED, handle.reason()
    results = [payload for outcome, payload in _results(tmp_path / "jobs", handle.job_id, 2) if outcome == "success"]
    assert len(results) == 2
    assert {r["rank"] for r in results} == {"0", "1"}
    assert all(r["ppid"] == server.process.pid for r in results)  # forked by the server, not started fresh
    assert all(r["preloaded"] and r["marker"] == "from-the-driver" and r["cwd"] == str(tmp_path) for r in results)
    assert "rank 0 says hello" in handle.log_path.read_text()  # stdout reaches submitit's per-task log
    # the same warm process serves the next job
    again = executor.submit(lambda: _probe(str(tmp_path)), name="warm", resources=ResourcesSpec())
    assert _wait(again) == JobState.COMPLETED
    assert _results(tmp_path / "jobs", again.job_id, 1)[0][1]["ppid"] == server.process.pid


def test_a_failing_rank_reports_its_error_and_exit_code(tmp_path):
    executor = LocalExecutor(tmp_path / "jobs", ExecutorSpec())
    handle = executor.submit(_fail, name="warm-fail", resources=ResourcesSpec())
    assert _wait(handle) == JobState.FAILED
    assert "the job failed on purpose" in (handle.reason() or "")
    assert "RuntimeError: the job failed on purpose" in handle.log_path.read_text()


def test_cancel_ends_forked_ranks_that_ignore_sigint(tmp_path):
    executor = LocalExecutor(tmp_path / "jobs", ExecutorSpec())
    handle = executor.submit(lambda: _sleep_ignoring_sigint(str(tmp_path)), name="warm-cancel",
                             resources=ResourcesSpec(processes_per_node=2))
    pids = _wait_for_pids(tmp_path, 2)
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    handle.cancel()  # SIGINT to the job's group, SIGKILL after the grace period: the clients die, then the ranks
    assert handle.state() == JobState.CANCELLED
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
        assert time.monotonic() < deadline, f"forked ranks {pids} outlived their cancelled job"
        time.sleep(0.1)


def test_directories_of_killed_servers_are_removed():
    bystander = subprocess.Popen(["sleep", "60"])
    live, dead = (Path(tempfile.mkdtemp(prefix="convsweep-warm-")) for _ in range(2))
    try:
        (live / PID_NAME).write_text(str(bystander.pid))
        (dead / PID_NAME).write_text(str(2**22 + 1))  # above pid_max's default range: no such process
        _remove_stale_dirs()
        assert live.exists() and not dead.exists()
    finally:
        bystander.kill()
        bystander.wait()
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rindex(")") + 2:].split()[0]


def test_without_a_reachable_server_the_task_runs_cold(tmp_path):
    """A server that died and left its socket file behind: the client becomes the cold submitit command."""
    stale = tmp_path / "dead-server"
    stale.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(stale / SOCKET_NAME))
    listener.close()  # the file stays, nobody listens: connect() is refused
    executor = _SessionLocalExecutor(folder=tmp_path / "jobs")
    executor.warm_server = SimpleNamespace(dir=stale)  # only its directory is read
    executor.update_parameters(tasks_per_node=1, timeout_min=10)
    job = executor.submit(_probe, str(tmp_path))
    payload = job.result()
    assert payload["ppid"] == int(job.job_id)  # started by submitit's controller, not forked by a server


def test_warm_start_off_starts_fresh_interpreters(tmp_path):
    executor = LocalExecutor(tmp_path / "jobs", ExecutorSpec(local={"warm_start": False}))
    handle = executor.submit(lambda: _probe(str(tmp_path)), name="cold", resources=ResourcesSpec())
    assert _wait(handle) == JobState.COMPLETED
    payload = _results(tmp_path / "jobs", handle.job_id, 1)[0][1]
    assert payload["ppid"] == int(handle.job_id)  # a child of submitit's controller


def test_the_server_ends_with_the_process_that_started_it(tmp_path):
    script = ("import sys, time\nfrom orchestrator.run.executors.warmstart import WarmServer\n"
              "s = WarmServer.get()\nprint(s.process.pid, s.dir, flush=True)\n"
              "while not (s.dir / 'socket').exists(): time.sleep(0.05)\n"
              "import os; os._exit(0)\n")  # no atexit: the server must notice on its own
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    pid, server_dir = out.stdout.split()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _state(int(pid)) != "Z":
        assert time.monotonic() < deadline, "the warm server outlived its parent"
        time.sleep(0.1)
    assert not Path(server_dir).exists()  # it removed its socket directory
