"""The sweep's one SLURM watcher on the real local SLURM: the RPCs slurmctld receives per interval (counted by
slurmctld itself, ``sdiag``) do not grow with the number of jobs, and many jobs end with one ``scancel``."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from slurm_helpers import CountingJob, counting_processes, read_counter, squeue_ids, wait_until

from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec, SlurmSpec
from orchestrator.run.executors.base import JobState
from slurm.executor import SlurmExecutor

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

INTERVAL = 1.0


def job_info_rpcs() -> int:
    """slurmctld's count of job-state queries received so far (squeue, scontrol show job, ...)."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    by_type = out.split("Remote Procedure Call statistics by message type", 1)[1].split("by user", 1)[0]
    return sum(int(n) for n in re.findall(r"^\s*REQUEST_JOB_INFO\S*\s+\(\s*\d+\)\s+count:(\d+)", by_type, re.M))


def test_job_queries_per_interval_do_not_grow_with_the_number_of_jobs(tmp_path: Path) -> None:
    executor = SlurmExecutor(tmp_path / "jobs", ExecutorSpec(kind="slurm", slurm=SlurmSpec(poll_seconds=INTERVAL)))
    before = job_info_rpcs()
    start = time.monotonic()
    handles = [executor.submit(lambda: __import__("time").sleep(2.0), name=f"nap-{i}", resources=ResourcesSpec()) for i in range(8)]
    states: dict[str, JobState] = {}

    def follow(handle) -> None:  # noqa: ANN001 -- as a proxy does: ask for the state many times a second
        while not handle.done():
            time.sleep(0.05)
        states[handle.job_id] = handle.state()

    threads = [threading.Thread(target=follow, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.monotonic() - start
    rpcs = job_info_rpcs() - before
    assert states == {h.job_id: JobState.COMPLETED for h in handles}, [h.reason() for h in handles]
    # 8 jobs (two waves on the cluster's 4 CPUs), each followed 20 times a second: still one squeue per interval
    bound = elapsed / INTERVAL + 2
    assert rpcs <= bound, f"{rpcs} job queries reached slurmctld in {elapsed:.1f} s (bound {bound:.0f})"
    calls = executor.watcher.calls
    assert calls["squeue"] <= bound and calls["sacct"] == 0 and set(calls) <= {"squeue", "sacct"}, calls


def test_many_jobs_end_with_one_scancel(tmp_path: Path) -> None:
    executor = SlurmExecutor(tmp_path / "jobs", ExecutorSpec(kind="slurm", slurm=SlurmSpec(poll_seconds=INTERVAL)))
    dirs = [tmp_path / f"count{i}" for i in range(4)]
    handles = []
    for d in dirs:
        d.mkdir()
        handles.append(executor.submit(CountingJob(str(d), steps=1000, step_seconds=0.2), name=d.name,
                                       resources=ResourcesSpec()))
    wait_until(lambda: all(read_counter(d) >= 1 for d in dirs), 60, "the four jobs to run")
    executor.cancel_all(handles)
    assert executor.watcher.calls["scancel"] == 1
    assert not {h.job_id for h in handles} & squeue_ids()
    assert [h.state() for h in handles] == [JobState.CANCELLED] * 4
    assert not [pid for d in dirs for pid in counting_processes(d)]  # the processes are gone, none counts on
