"""`convsweep ... --executor slurm` end to end on the real local SLURM: every trial a SLURM job seen in sacct
and tagged on its MLflow run; a job requeued mid-training resumes from its last checkpoint (no epoch trained
twice, one run per trial); `convsweep cancel` empties squeue and `convsweep resume` finishes the trials. One test: a driver's start-up
takes a minute on two busy cores. A real preemption by the urgent partition ends in the same resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from slurm_helpers import squeue_ids, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

CONVSWEEP = [sys.executable, "-m", "orchestrator.cli"]
SWEEP = """
name: {name}
tracking: {{uri: "sqlite:///{root}/mlruns.db"}}
storage: {{root: {root}/runs}}
base:
  model: resnet20
  dataset: {{name: digits, backend: pytorch, num_workers: 0}}
  recipe:
    optimizer: {{name: sgd, lr: 0.05}}
    schedule: {{name: constant}}
    epochs: {epochs}
    batch_size: 16
    max_steps_per_epoch: 1
grid:
  layer.method: {methods}
seeds: [0]
resources: {{nodes: 1, gpus_per_node: 0, processes_per_node: 1, cpus_per_process: 1}}
executor: {{kind: local, slurm: {{time: "00:10:00", poll_seconds: 2}}}}
tune: {{max_concurrent_trials: 2}}
"""


def write_sweep(root: Path, name: str, methods: list[str], epochs: int) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, root=root, methods=json.dumps(methods), epochs=epochs))
    return path


def cli(*args: str, root: Path, background: bool = False, fault: str | None = None):  # noqa: ANN201
    env = {k: v for k, v in os.environ.items() if k != "CONVSWEEP_FAULT"}
    if fault:
        env["CONVSWEEP_FAULT"] = fault
    cmd = [*CONVSWEEP, *args]
    if background:
        log = open(root / "driver.log", "a")  # noqa: SIM115 -- closed by the caller through proc.log
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        proc.log = log  # type: ignore[attr-defined]
        return proc
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)


def trial_dirs(root: Path, name: str) -> list[Path]:
    return sorted(p for p in (root / "runs" / name).iterdir() if (p / "spec.json").exists())


def job_id(trial: Path) -> str | None:
    path = trial / "job.json"
    return json.loads(path.read_text())["job_id"] if path.exists() else None


def epochs(trial: Path) -> list[int]:
    path = trial / "metrics.jsonl"
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()] if path.exists() else []


def sacct(job: str, fields: str) -> list[str]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", job, "-o", fields], capture_output=True,
                         text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]  # "CANCELLED by 0" -> CANCELLED


def runs(root: Path, name: str):  # noqa: ANN201
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlruns.db")
    return mlflow.search_runs(experiment_names=[name])


def first_with_epoch(root: Path, name: str, epoch: int, only: Path | None = None) -> Path | None:
    if not (root / "runs" / name).exists():
        return None
    return next((t for t in trial_dirs(root, name) if (only is None or t == only) and epoch in epochs(t)), None)


def test_requeue_cancel_and_resume_of_a_two_trial_sweep(tmp_path: Path) -> None:
    """One driver run: a trial's job is requeued after epoch 1 and resumes at epoch 2; then `convsweep cancel`
    ends the sweep; `convsweep resume` (no fault) finishes both trials on their MLflow runs."""
    name = "slurm-e2e"
    sweep = write_sweep(tmp_path, name, ["stdconv", "gmconv"], epochs=3)
    # Each epoch is followed by a 60 s pause: time to requeue, and to cancel while a job still runs (the
    # driver takes tens of seconds to stop on two busy cores before `convsweep cancel` ends its jobs).
    driver = cli("sweep", str(sweep), "--executor", "slurm", "--no-progress", root=tmp_path, background=True,
                 fault="sleep:seconds=60")
    try:
        trial = wait_until(lambda: first_with_epoch(tmp_path, name, 1), 300, "a trial's first epoch")
        requeued = job_id(trial)
        subprocess.run(["scontrol", "requeue", requeued], check=True)
        wait_until(lambda: first_with_epoch(tmp_path, name, 2, only=trial), 120, "epoch 2 after the requeue")
        live = {job_id(t) for t in trial_dirs(tmp_path, name)} & squeue_ids()
        assert requeued in live
        # The jobs leave squeue promptly: `cancel` ends them itself, and the driver cancels them on SIGINT,
        # neither waits for Ray to stop its trials.
        cancel = cli("cancel", name, "--root", str(tmp_path / "runs"), root=tmp_path, background=True)
        wait_until(lambda: not live & squeue_ids(), 25, "the sweep's jobs to leave squeue after `cancel`")
        assert cancel.wait(timeout=120) == 0, (tmp_path / "driver.log").read_text()
        cancel.log.close()  # type: ignore[attr-defined]
        cancelled = {t.name: job_id(t) for t in trial_dirs(tmp_path, name)}
        assert not set(cancelled.values()) & squeue_ids()  # nothing of the sweep left in squeue
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.log.close()  # type: ignore[attr-defined]
    assert not (trial / "DONE").exists()
    assert job_id(trial) == requeued  # requeued in place: the same SLURM job
    assert sacct(requeued, "State") == ["REQUEUED", "CANCELLED"]
    assert epochs(trial) == [1, 2]  # resumed at epoch 2 after the requeue: epoch 1 not trained again
    assert "resuming at epoch 2" in (trial / "job.log").read_text()

    resume = cli("resume", name, "--root", str(tmp_path / "runs"), "--no-progress", root=tmp_path)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    trials = trial_dirs(tmp_path, name)
    assert len(trials) == 2 and all((t / "DONE").exists() for t in trials), resume.stdout + resume.stderr
    assert all(epochs(t) == [1, 2, 3] for t in trials), [epochs(t) for t in trials]  # nothing trained twice
    table = runs(tmp_path, name)
    assert len(table) == 2 and set(table["status"]) == {"FINISHED"}  # one run per trial, kept across resume
    final = {t.name: job_id(t) for t in trials}
    assert dict(zip(table["tags.convsweep.trial_key"], table["tags.convsweep.job_id"])) == final
    assert set(table["tags.convsweep.executor"]) == {"slurm"}
    for key, job in final.items():  # every trial's job is a real SLURM job, in the accounting database
        assert sacct(job, "JobName")[-1] == f"{name}-{key}" and sacct(job, "State")[-1] == "COMPLETED"
    ids = dict(zip(table["tags.convsweep.trial_key"], table["tags.convsweep.job_ids"]))
    assert requeued in ids[trial.name].split(",") and final[trial.name] != requeued
    # the requeue kept the job id, and still counts: 1 restart of the requeued job + 1 resubmission by resume
    requeues = dict(zip(table["tags.convsweep.trial_key"], table["tags.convsweep.requeues"]))
    restarts = dict(zip(table["tags.convsweep.trial_key"], table["tags.convsweep.job_restarts"]))
    assert requeues[trial.name] == "2" and restarts[trial.name].split(",")[0] == "1", (requeues, restarts)
    logs = dict(zip(table["tags.convsweep.trial_key"], table["tags.convsweep.log_path"]))
    assert logs[trial.name].endswith(f"{final[trial.name]}_0_log.out") and Path(logs[trial.name]).exists()


def test_a_trial_preempted_by_the_urgent_partition_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A real preemption mid-training: an urgent job takes the trial's node after epoch 1; SLURM requeues the
    trial's job, which resumes at epoch 2 on the same MLflow run and finishes (no epoch trained twice)."""
    name = "slurm-preempt"
    sweep = write_sweep(tmp_path, name, ["stdconv"], epochs=3)
    driver = cli("sweep", str(sweep), "--executor", "slurm", "--no-progress", root=tmp_path, background=True,
                 fault="sleep:seconds=20")
    try:
        trial = wait_until(lambda: first_with_epoch(tmp_path, name, 1), 300, "the trial's first epoch")
        job = job_id(trial)
        node = subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert node in ("node1", "node2"), node
        # both CPUs of the trial's node, in the higher-PriorityTier partition: slurmctld preempts (requeues)
        urgent = subprocess.run(
            ["sbatch", "--parsable", "--partition=urgent", f"--nodelist={node}", "--cpus-per-task=2",
             f"--output={tmp_path}/urgent.out", "--wrap", "sleep 2"],
            capture_output=True, text=True, check=True).stdout.strip()
        assert driver.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.log.close()  # type: ignore[attr-defined]
    assert "PREEMPTED" in sacct(job, "State")  # the trial's own job was preempted ...
    assert sacct(urgent, "State")[-1] == "COMPLETED"  # ... by the urgent job, which ran
    assert job_id(trial) == job and (trial / "DONE").exists()  # requeued in place, then finished
    assert epochs(trial) == [1, 2, 3]  # epoch 1 not trained again
    assert "resuming at epoch 2" in (trial / "job.log").read_text()
    table = runs(tmp_path, name)
    assert len(table) == 1 and list(table["status"]) == ["FINISHED"]  # one run, kept across the preemption
    assert int(table["tags.convsweep.requeues"].iloc[0]) >= 1
