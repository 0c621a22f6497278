"""Small real jobs for the SLURM tests, and polling helpers.

The job callables are pickled by value (cloudpickle), so the job processes need nothing of the test tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
import submitit

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def ddp_probe(out_dir: str) -> None:
    """One DDP process: join the group from the SLURM environment, all-reduce, record where it ran."""
    import torch
    import torch.distributed as dist

    from orchestrator.train.distributed import setup_distributed, teardown_distributed

    info = setup_distributed(timeout_s=60)
    try:
        total = torch.tensor([float(info.rank + 1)])
        dist.all_reduce(total)
        nodes: list[Any] = [None] * info.world_size
        dist.all_gather_object(nodes, os.environ.get("SLURMD_NODENAME"))
        record = {
            "rank": info.rank,
            "local_rank": info.local_rank,
            "world_size": info.world_size,
            "node": os.environ.get("SLURMD_NODENAME"),
            "all_nodes": nodes,
            "sum": total.item(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "job_gpus": os.environ.get("SLURM_JOB_GPUS"),
        }
        Path(out_dir, f"rank{info.rank}.json").write_text(json.dumps(record))
    finally:
        teardown_distributed()


def fail_with(message: str) -> None:
    raise ValueError(message)


class CountingJob(submitit.helpers.Checkpointable):
    """Counts to ``steps``, one step per ``step_seconds``, checkpointing the count after every step.

    ``starts.log`` gets the count each start resumed from; ``steps.log`` every step done; ``pids.log`` the
    process of each start. A restarted job resumes from ``counter.json`` whatever restarted it (requeue,
    preemption, timeout), like the trainer.
    """

    def __init__(self, work_dir: str, steps: int, step_seconds: float) -> None:
        self.work_dir, self.steps, self.step_seconds = work_dir, steps, step_seconds

    def __call__(self) -> int:
        d = Path(self.work_dir)
        start = read_counter(d)
        with open(d / "starts.log", "a") as f:
            f.write(f"{start}\n")
        with open(d / "pids.log", "a") as f:
            f.write(f"{os.getpid()}\n")
        for step in range(start + 1, self.steps + 1):
            time.sleep(self.step_seconds)
            tmp = d / "counter.json.tmp"
            tmp.write_text(json.dumps({"done": step}))
            os.replace(tmp, d / "counter.json")
            with open(d / "steps.log", "a") as f:
                f.write(f"{step}\n")
        return self.steps


def read_counter(work_dir: Path) -> int:
    path = Path(work_dir) / "counter.json"
    return json.loads(path.read_text())["done"] if path.exists() else 0


def read_ints(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def counting_processes(work_dir: Path) -> list[int]:
    """The processes a ``CountingJob`` in ``work_dir`` started that still run (zombies and reused pids aside).

    The cluster's nodes are this machine, so the job's processes are visible here."""
    alive = []
    for pid in read_ints(Path(work_dir) / "pids.log"):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and "submitit" in " ".join(proc.cmdline()):
                alive.append(pid)
        except psutil.Error:  # gone
            continue
    return alive


def squeue_ids() -> set[str]:
    """Ids of every job squeue still lists (pending, running or completing)."""
    out = subprocess.run(["squeue", "--noheader", "--format", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
