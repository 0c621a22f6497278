"""The driver under signals, end to end through the CLI: SIGKILL mid-trial then `convsweep resume`, and SIGINT
(what `convsweep cancel` sends) cancelling the driver's jobs (``orchestrator.run.session``), on the real stack.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from e2e_sweeps import epoch_counts, runs_of, write_sweep
from mlflow.tracking import MlflowClient

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.run.executors.local import _group_alive
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_sweep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _warm_ranks_of(job_id: str) -> list[int]:
    """Ranks a warm process forked for local job ``job_id``: their stdout is the job's submitit log file."""
    ranks = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if "orchestrator.run.executors.warmstart" not in args or "serve" not in args:
            continue
        try:
            if any(f.fd == 1 and re.search(rf"/{job_id}_\d+_log\.out$", f.path) for f in proc.open_files()):
                ranks.append(proc.pid)
        except psutil.Error:
            continue
    return ranks


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_driver_then_resume(tmp_path: Path) -> None:
    """Kill `convsweep sweep` mid-trial; `convsweep resume` finishes without retraining or duplicating."""
    path = write_sweep(tmp_path / "kill.yaml", "e2e-kill", base={
        "model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
        "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
    }, tune={"max_concurrent_trials": 1, "max_failures": 1, "proxies": "actors"})  # fmt: skip
    spec = load_sweep(path)
    first, second = (TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key) for t in expand(spec))
    driver = _cli("sweep", str(path), "--no-progress", cwd=tmp_path, env={"CONVSWEEP_FAULT": "sleep:seconds=2"})
    try:
        deadline = time.monotonic() + 600
        while not (first.is_done and epoch_counts(second)):
            assert driver.poll() is None, driver.communicate()[0]
            assert time.monotonic() < deadline, "the sweep did not reach the second trial"
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # The killed driver's job keeps running. Freeze it, so that it is surely still alive (not finished on
        # its own) when `resume` starts: resume must end it, and train the rest in a job of its own.
        stale_job = json.loads((second.path / "job.json").read_text())["job_id"]
        os.killpg(int(stale_job), signal.SIGSTOP)
        stale_ranks = _warm_ranks_of(stale_job)  # forked by the warm process: in sessions of their own
        for rank in stale_ranks:
            os.kill(rank, signal.SIGSTOP)
        killed_at = max(epoch_counts(second))
        assert not second.is_done and killed_at < 2
        first_job = (first.path / "job.json").read_text()

        resume = _cli("resume", "e2e-kill", "--root", spec.storage.root, "--no-progress", cwd=tmp_path)
        out, _ = resume.communicate(timeout=600)
        assert resume.returncode == 0, out
        assert "resumed from Ray Tune's saved experiment state" in out
    finally:
        for proc in (driver,):  # Ray processes the killed driver left behind, in its session
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert first.is_done and second.is_done
    assert not _group_alive(int(stale_job))  # the orphaned job was ended, not left to race the new one
    assert epoch_counts(second) == {1: 1, 2: 1}  # nothing trained twice
    assert epoch_counts(first) == {1: 1, 2: 1}
    assert (first.path / "job.json").read_text() == first_job  # the finished trial was not re-run
    log = second.log_path.read_text()
    assert f"resuming at epoch {killed_at + 1}" in log
    # The stale ranks were frozen by this test, so they could not see their job end: woken, they follow it.
    for rank in stale_ranks:
        os.kill(rank, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while any(_running(rank) for rank in stale_ranks):
        assert time.monotonic() < deadline, f"ranks {stale_ranks} of the ended job are still running"
        time.sleep(0.1)
    runs = runs_of(spec.tracking.uri, "e2e-kill")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    by_key = {r.data.tags["convsweep.trial_key"]: r for r in runs}
    assert by_key[second.path.name].data.tags["convsweep.requeues"] == "1"
    history = MlflowClient(spec.tracking.uri).get_metric_history(by_key[second.path.name].info.run_id, "val_top1")
    assert sorted(m.step for m in history) == [1, 2]


@pytest.mark.parametrize("proxies", ["threads", "actors"])
def test_sigint_driver_cancels_its_jobs_and_resume_reruns_them(tmp_path: Path, proxies: str) -> None:
    """SIGINT to `convsweep sweep` (what `convsweep cancel` sends): the driver cancels the running job itself,
    promptly; the interrupted trial is not taken for one the scheduler stopped, so `resume` runs it again. The
    summary counts the trial that never started (one at a time: the second waits), and Ray's own advice to
    call Tuner.restore does not reach the user."""
    path = write_sweep(tmp_path / "int.yaml", "e2e-int", resources={"processes_per_node": 1},
                        tune={"max_concurrent_trials": 1, "max_failures": 1, "proxies": proxies})
    spec = load_sweep(path)
    trial, waiting = expand(spec)
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    driver = _cli("sweep", str(path), "--no-progress", cwd=tmp_path, env={"CONVSWEEP_FAULT": "sleep:seconds=30"})
    try:
        deadline = time.monotonic() + 600
        while not epoch_counts(td):
            assert driver.poll() is None, driver.communicate()[0]
            assert time.monotonic() < deadline, "no epoch"
            time.sleep(0.2)
        job = int(json.loads(td.job_path.read_text())["job_id"])
        assert _group_alive(job)
        driver.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        while _group_alive(job):  # the job sleeps 30 s after each epoch: only a cancel ends it this soon
            assert time.monotonic() - signalled < 20, "the driver did not cancel its job on SIGINT"
            time.sleep(0.2)
        out, _ = driver.communicate(timeout=300)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # Ray processes the driver left behind, in its session
        except ProcessLookupError:
            pass
    assert "0 stopped early" in out and f"1 interrupted, 1 not started (convsweep resume e2e-int --root " \
        f"{Path(spec.storage.root).resolve()} continues them)" in out, out
    assert "Tuner.restore" not in out and "Trials did not complete" not in out, out
    assert not td.is_done
    (run,) = runs_of(spec.tracking.uri, "e2e-int")
    assert run.info.status == "KILLED" and "convsweep.stopped" not in run.data.tags
    assert "convsweep.error" not in run.data.tags  # a cancel is not a failure (and was not retried)
    assert len(run.data.tags["convsweep.job_ids"].split(",")) == 1

    resume = _cli("resume", "e2e-int", "--root", spec.storage.root, "--no-progress", cwd=tmp_path)
    out, _ = resume.communicate(timeout=600)
    assert resume.returncode == 0, out
    assert td.is_done and epoch_counts(td) == {1: 1, 2: 1}  # continued from its checkpoint
    assert TrialDir.for_trial(spec.storage.root, spec.name, waiting.trial_key).is_done
    assert {run.info.status for run in runs_of(spec.tracking.uri, "e2e-int")} == {"FINISHED"}
