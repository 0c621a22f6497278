"""SlurmExecutor on the real local SLURM: multi-node DDP, requeue and preemption ending in a correct resume,
cancel, and SLURM's one-line reason for jobs that fail or can never start."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from slurm_helpers import (CountingJob, counting_processes, ddp_probe, fail_with, read_counter, read_ints, squeue_ids,
                           wait_until)

from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec, SlurmSpec
from orchestrator.run.executors.base import Executor, JobHandle, JobState, get_executor
from slurm.executor import SlurmExecutor
from slurm.queries import query_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


def make_executor(folder: Path, **slurm: object) -> SlurmExecutor:
    return SlurmExecutor(folder, ExecutorSpec(kind="slurm", slurm=SlurmSpec(**slurm)), poll_interval=0.3)


def finish(handle: JobHandle, timeout: float = 90) -> JobState:
    wait_until(handle.done, timeout, f"job {handle.job_id} to end")
    return handle.state()


def test_found_through_the_entry_point_and_satisfies_the_protocol(tmp_path: Path) -> None:
    executor = get_executor(ExecutorSpec(kind="slurm"), tmp_path)
    assert isinstance(executor, SlurmExecutor) and isinstance(executor, Executor)
    assert executor.kind == "slurm"


def test_two_nodes_one_task_each_form_one_ddp_group(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    executor = make_executor(tmp_path / "jobs")
    resources = ResourcesSpec(nodes=2, gpus_per_node=2, processes_per_node=1)
    handle = executor.submit(lambda: ddp_probe(str(out)), name="ddp-probe", resources=resources)
    assert isinstance(handle, JobHandle) and handle.job_id.isdigit()
    assert finish(handle) == JobState.COMPLETED, handle.reason()
    assert handle.reason() is None
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["node"] for r in records} == {"node1", "node2"}
    assert all(r["world_size"] == 2 and r["local_rank"] == 0 for r in records)
    assert all(r["sum"] == 3.0 for r in records)  # 1 + 2: the all-reduce really crossed the two nodes
    assert records[0]["all_nodes"] == records[1]["all_nodes"] == ["node1", "node2"]
    # --gpus-per-node=2 reached each node through GRES (the fake devices)
    assert all(r["cuda_visible_devices"] == "0,1" and r["job_gpus"] == "0,1" for r in records)
    # the job is in the accounting database, as sacct (and submitit's watcher) see it. slurmdbd records the end a
    # moment after slurmctld, and under load sacct was seen to answer COMPLETED|node1 for a while before the
    # full node list: wait for the record to settle on both nodes, and report what it last said if it does not.
    seen: list[str] = []

    def sacct_final() -> bool:
        seen.append(subprocess.run(["sacct", "-n", "-P", "-X", "-j", handle.job_id, "-o", "State,NodeList"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        return seen[-1] == "COMPLETED|node[1-2]"

    deadline = time.monotonic() + 60
    while not sacct_final():
        assert time.monotonic() < deadline, f"sacct never recorded the job on both nodes: {seen[-3:]}"
        time.sleep(0.5)


def test_scontrol_requeue_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    executor = make_executor(tmp_path / "jobs")
    handle = executor.submit(CountingJob(str(tmp_path), steps=6, step_seconds=0.5), name="count-requeue",
                             resources=ResourcesSpec())
    wait_until(lambda: read_counter(tmp_path) >= 2, 60, "two checkpointed steps")
    subprocess.run(["scontrol", "requeue", handle.job_id], check=True)
    assert finish(handle, 120) == JobState.COMPLETED, handle.reason()
    starts = read_ints(tmp_path / "starts.log")
    steps = read_ints(tmp_path / "steps.log")
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2, starts  # resumed, not restarted
    assert sorted(set(steps)) == list(range(1, 7))
    assert len(steps) == 6, steps  # no step before the checkpoint was done twice
    assert handle.requeues == 1


def test_preemption_by_the_urgent_partition_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    # The trial takes both CPUs of node1; an urgent job that needs them preempts (requeues) it.
    executor = make_executor(tmp_path / "jobs", partition="debug", cpus_per_task=2,
                             additional_parameters={"nodelist": "node1"})
    handle = executor.submit(CountingJob(str(tmp_path), steps=6, step_seconds=0.5), name="count-preempt",
                             resources=ResourcesSpec())
    wait_until(lambda: read_counter(tmp_path) >= 2, 60, "two checkpointed steps")
    urgent = subprocess.run(
        ["sbatch", "--parsable", "--partition=urgent", "--nodelist=node1", "--cpus-per-task=2",
         f"--output={tmp_path}/urgent.out", "--wrap", "sleep 1"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert finish(handle, 120) == JobState.COMPLETED, handle.reason()
    starts = read_ints(tmp_path / "starts.log")
    steps = read_ints(tmp_path / "steps.log")
    assert len(starts) == 2 and starts[1] >= 2, starts
    assert sorted(set(steps)) == list(range(1, 7)) and len(steps) == 6, steps
    assert handle.requeues == 1
    history = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", handle.job_id, "-o", "State"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert history[0] == "PREEMPTED", history
    assert query_job(urgent).state == "COMPLETED"


def test_cancel_through_an_attached_handle_leaves_nothing_in_squeue(tmp_path: Path) -> None:
    handle = make_executor(tmp_path / "jobs").submit(
        CountingJob(str(tmp_path), steps=1000, step_seconds=0.2), name="count-cancel", resources=ResourcesSpec())
    wait_until(lambda: read_counter(tmp_path) >= 1, 60, "the job to run")
    assert handle.state() == JobState.RUNNING
    # another driver (`convsweep cancel` from a login shell) finds the job by its id and folder
    assert make_executor(tmp_path / "elsewhere").attach(handle.job_id) is None
    attached = make_executor(tmp_path / "jobs").attach(handle.job_id)
    assert attached is not None and attached.log_path == handle.log_path
    attached.cancel()
    assert handle.job_id not in squeue_ids()
    assert attached.state() == JobState.CANCELLED
    wait_until(lambda: handle.state() == JobState.CANCELLED, 10, "the first handle to see the cancel")
    assert read_ints(tmp_path / "pids.log") and not counting_processes(tmp_path)  # nothing left to count on


def test_more_gpus_than_a_node_has_is_failed_with_sbatchs_reason(tmp_path: Path) -> None:
    before = squeue_ids()
    handle = make_executor(tmp_path / "jobs").submit(lambda: None, name="too-many-gpus",
                                                      resources=ResourcesSpec(gpus_per_node=5, processes_per_node=1))
    assert handle.state() == JobState.FAILED and handle.done()
    reason = handle.reason()
    assert reason is not None and "\n" not in reason
    assert "Requested node configuration is not available" in reason, reason
    assert squeue_ids() == before


def test_one_process_per_gpu_beyond_a_nodes_cpus_is_failed_with_slurms_pending_reason(tmp_path: Path) -> None:
    # 5 GPUs -> 5 processes of 1 CPU on a 2-CPU node: sbatch accepts it, the job pends with PartitionConfig.
    handle = make_executor(tmp_path / "jobs").submit(lambda: None, name="five-processes",
                                                      resources=ResourcesSpec(gpus_per_node=5))
    assert handle.job_id.isdigit()
    assert finish(handle, 60) == JobState.FAILED
    reason = handle.reason()
    assert reason is not None and "\n" not in reason and "Reason=PartitionConfig" in reason, reason
    wait_until(lambda: handle.job_id not in squeue_ids(), 30, "the job to leave squeue")


def test_a_job_that_can_never_start_is_failed_and_cancelled(tmp_path: Path) -> None:
    # "urgent" has MaxTime=1:00:00: sbatch accepts the job, which then pends with Reason=PartitionTimeLimit.
    handle = make_executor(tmp_path / "jobs", partition="urgent", time="02:00:00").submit(
        lambda: None, name="never-starts", resources=ResourcesSpec())
    assert handle.job_id.isdigit()
    assert finish(handle, 60) == JobState.FAILED
    reason = handle.reason()
    assert reason is not None and "\n" not in reason and "PartitionTimeLimit" in reason, reason
    wait_until(lambda: handle.job_id not in squeue_ids(), 30, "the job to leave squeue")


def test_a_failing_job_reports_its_error_in_one_line(tmp_path: Path) -> None:
    handle = make_executor(tmp_path / "jobs").submit(lambda: fail_with("boom 42"), name="fails",
                                                      resources=ResourcesSpec())
    assert finish(handle) == JobState.FAILED
    reason = handle.reason()
    assert reason is not None and "\n" not in reason
    assert f"SLURM job {handle.job_id} ended FAILED" in reason and "ValueError: boom 42" in reason, reason
    assert "ValueError: boom 42" in handle.log_path.read_text()


def test_unknown_additional_parameter_is_refused_before_submitting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown sbatch option 'exclusivee'.*allowed: .*exclusive"):
        make_executor(tmp_path, additional_parameters={"exclusivee": ""})
    with pytest.raises(ValueError, match=r"additional_parameters.partition: .*executor.slurm.partition"):
        make_executor(tmp_path, additional_parameters={"partition": "debug"})


def test_jobs_submitted_from_inside_a_slurm_job_do_not_inherit_its_variables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detached driver runs as a SLURM job: its SLURM_*/SBATCH_* variables must not reach sbatch."""
    monkeypatch.setenv("SBATCH_PARTITION", "no-such-partition")  # sbatch would refuse every job
    monkeypatch.setenv("SLURM_JOB_ID", "99999")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "7")
    executor = make_executor(tmp_path / "jobs")
    trial = executor.submit(lambda: None, name="inside", resources=ResourcesSpec())
    probe = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
             "('SLURM_JOB_ID', 'SLURM_CPUS_PER_TASK', 'SLURM_JOB_PARTITION', 'SLURM_CONF')}))")
    driver = executor.submit_driver(["python3", "-c", probe], name="driver", log_path=tmp_path / "driver.log")
    assert finish(trial) == JobState.COMPLETED, trial.reason()
    assert finish(driver) == JobState.COMPLETED, driver.reason()
    seen = json.loads(driver.log_path.read_text().strip().splitlines()[-1])
    assert seen == {"SLURM_JOB_ID": driver.job_id, "SLURM_CPUS_PER_TASK": "2", "SLURM_JOB_PARTITION": "debug",
                    "SLURM_CONF": os.environ["SLURM_CONF"]}
