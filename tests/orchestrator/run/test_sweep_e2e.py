"""End to end on the real stack: Ray Tune (local cluster), MLflow (SQLite), submitit local jobs, DDP over gloo.

Economical on purpose (2 cores): digits, ResNet-20, batch 16, 2 steps per epoch, 2 epochs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.spec.expand import expand
from orchestrator.run.executors.local import _group_alive
from orchestrator.run.driver import run_sweep
from orchestrator.spec.load import load_sweep
from orchestrator.dirs.trialdir import TrialDir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _write_sweep(path: Path, name: str, **changes: object) -> Path:
    data: dict = {
        "name": name,
        "tracking": {"uri": f"sqlite:///{path.parent / 'mlruns.db'}"},
        "storage": {"root": str(path.parent / "runs")},
        "base": {
            "model": "resnet20",
            "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
            "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
        },
        "grid": {"layer.method": ["stdconv", "s-gmconv"]},
        "seeds": [0],
        "resources": {"processes_per_node": 2},
        "tune": {"max_concurrent_trials": 2, "max_failures": 1},
    }
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def _runs(uri: str, sweep: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`convsweep.sweep` = '{sweep}'")


def _epoch_counts(td: TrialDir) -> Counter:
    return Counter(int(r["epoch"]) for r in td.iter_metrics())


@pytest.fixture(scope="module")
def ray_cluster():
    from orchestrator.run.tune import init_ray

    import ray

    started = init_ray()
    yield
    if started:
        ray.shutdown()


def test_two_trials_end_to_end_then_idempotent(tmp_path: Path, ray_cluster: None) -> None:
    path = _write_sweep(tmp_path / "two.yaml", "e2e-two")
    data = yaml.safe_load(path.read_text())
    data["base"]["analysis"] = {"erf": {"stage": "layers.1", "images": 16}}
    path.write_text(yaml.safe_dump(data))
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    trials = expand(spec)
    assert result.ok and sorted(result.finished) == sorted(t.trial_key for t in trials)
    uri = spec.tracking.uri
    runs = {r.data.tags["convsweep.trial_key"]: r for r in _runs(uri, "e2e-two")}
    assert len(runs) == 2
    client = MlflowClient(uri)
    for trial in trials:
        run = runs[trial.trial_key]
        assert run.info.status == "FINISHED"
        assert run.data.params == trial.flat_params()  # every resolved knob, world size included
        for key in ("layer.method", "layer.sigma_init", "layer.sigma_pattern", "layer.sa", "layer.skp", "layer.orth",
                    "layer.stnd", "layer.c1x1", "layer.kernel_size", "recipe.optimizer.lr", "seed", "world_size"):
            assert key in run.data.params, key
        assert run.data.params["world_size"] == "2"
        for metric in ("train_loss", "train_top1", "val_top1", "val_top5", "lr", "epoch_seconds", "images_per_second"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2], metric
        for metric in ("best_val_top1", "final_val_top1", "final_val_top5", "folded_params", "folded_flops"):
            assert metric in run.data.metrics, metric
        tags = run.data.tags
        assert tags["convsweep.executor"] == "local" and tags["convsweep.kind"] == "train"
        assert tags["convsweep.requeues"] == "0" and tags["convsweep.job_id"]
        assert TrialDir(tags["convsweep.trial_dir"]).is_done
        # the ERF analysis: maps and plots as artifacts beside the SQLite file, summaries as metrics
        artifacts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "analysis")}
        assert {"erf.npy", "erf.png", "erf_init.npy", "erf_init.png"} <= artifacts, artifacts
        assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
        assert {"erf_r50", "erf_r90", "erf_init_r90", "erf_r90_share"} <= set(run.data.metrics)
    sigma = [k for k in runs[trials[1].trial_key].data.metrics if k.startswith("sigma.")]
    assert sigma, "S-GMConv logs its sigmas per epoch"
    assert (Path(spec.storage.root) / "e2e-two" / "sweep.json").exists()

    jobs_dir = Path(spec.storage.root) / "e2e-two" / "jobs"
    jobs_before = sorted(p.name for p in jobs_dir.iterdir())
    again = run_sweep(path, show_progress=False)
    assert sorted(again.skipped) == sorted(t.trial_key for t in trials)
    assert again.finished == [] and again.failed == {}
    assert len(_runs(uri, "e2e-two")) == 2  # no new run
    assert sorted(p.name for p in jobs_dir.iterdir()) == jobs_before  # no job submitted


def test_crash_once_is_retried_from_its_checkpoint(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_sweep(tmp_path / "once.yaml", "e2e-once", grid={}, resources={"processes_per_node": 1})
    monkeypatch.setenv("CONVSWEEP_FAULT", "crash_once:epoch=1")
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    (trial,) = expand(spec)
    assert result.ok and result.finished == [trial.trial_key]
    (run,) = _runs(spec.tracking.uri, "e2e-once")
    assert run.info.status == "FINISHED"
    assert run.data.tags["convsweep.requeues"] == "1" and len(run.data.tags["convsweep.job_ids"].split(",")) == 2
    assert "convsweep.error" not in run.data.tags
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    assert _epoch_counts(td) == {1: 1, 2: 1}  # epoch 1 was not trained again
    steps = [m.step for m in MlflowClient(spec.tracking.uri).get_metric_history(run.info.run_id, "val_top1")]
    assert steps == [1, 2]


def test_always_crashing_trial_ends_failed_with_traceback(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_sweep(tmp_path / "crash.yaml", "e2e-crash", grid={}, resources={"processes_per_node": 1})
    # every attempt crashes after the epoch it trains: attempt 1 after epoch 1, the retry after epoch 2
    monkeypatch.setenv("CONVSWEEP_FAULT", "crash:epoch=1;crash:epoch=2")
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    (trial,) = expand(spec)
    assert not result.ok and list(result.failed) == [trial.trial_key]
    (run,) = _runs(spec.tracking.uri, "e2e-crash")
    assert run.info.status == "FAILED"
    error = run.data.tags["convsweep.error"]
    assert "InjectedFault" in error.splitlines()[0] and "Traceback" in error
    assert run.data.tags["convsweep.requeues"] == "1"  # max_failures=1: one retry
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    log = td.log_path.read_text()
    assert "Traceback" in log and "InjectedFault" in log
    assert not td.is_done


def test_asha_stops_the_worse_trial_and_ends_its_job(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ASHA on a metric known in advance (the reported lr): the second trial is below the rung's cutoff.

    The better trial only has to put its epoch 1 on the rung first, so it trains one epoch; the worse one has
    three, and is stopped after its first."""
    path = _write_sweep(
        tmp_path / "asha.yaml", "e2e-asha", grid={},
        zip=[{"recipe.optimizer.lr": [0.1, 0.01], "recipe.epochs": [1, 3]}],
        base={"model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
              "recipe": {"batch_size": 16, "max_steps_per_epoch": 1}},
        resources={"processes_per_node": 1},
        tune={"max_concurrent_trials": 1, "scheduler": "asha", "metric": "lr", "mode": "max", "grace_period": 1,
              "reduction_factor": 2, "max_failures": 0},
    )  # fmt: skip
    # Each epoch is followed by a pause long enough for Tune (slow on two busy cores) to process epoch 1 of the
    # worse trial and stop it while its job still runs (three pauses before its job could end on its own).
    monkeypatch.setenv("CONVSWEEP_FAULT", "sleep:seconds=12")
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    good, bad = expand(spec)
    assert result.finished == [good.trial_key] and result.stopped == [bad.trial_key] and result.ok
    runs = {r.data.tags["convsweep.trial_key"]: r for r in _runs(spec.tracking.uri, "e2e-asha")}
    assert runs[good.trial_key].info.status == "FINISHED"
    assert runs[bad.trial_key].info.status == "KILLED"
    assert runs[bad.trial_key].data.tags["convsweep.stopped"] == "scheduler"
    td = TrialDir.for_trial(spec.storage.root, spec.name, bad.trial_key)
    assert not td.is_done and max(_epoch_counts(td)) < 3
    job_id = json.loads((td.path / "job.json").read_text())["job_id"]
    assert not _group_alive(int(job_id))  # the stopped trial's processes were ended
    again = run_sweep(path, show_progress=False)  # a stopped trial is settled: not run again
    assert sorted(again.skipped) == sorted([good.trial_key, bad.trial_key])


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _warm_ranks_of(job_id: str) -> list[int]:
    """Ranks a warm process forked for local job ``job_id``: their stdout is the job's submitit log file."""
    ranks = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and re.search(rf"/{job_id}_\d+_log\.out$", os.readlink(entry / "fd" / "1")) \
                    and b"warmstart\0serve" in (entry / "cmdline").read_bytes():
                ranks.append(int(entry.name))
        except OSError:
            continue
    return ranks


def test_sigkill_driver_then_resume(tmp_path: Path) -> None:
    """Kill `convsweep sweep` mid-trial; `convsweep resume` finishes without retraining or duplicating."""
    path = _write_sweep(tmp_path / "kill.yaml", "e2e-kill", base={
        "model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
        "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
    }, tune={"max_concurrent_trials": 1, "max_failures": 1})  # fmt: skip
    spec = load_sweep(path)
    first, second = (TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key) for t in expand(spec))
    driver = _cli("sweep", str(path), "--no-progress", cwd=tmp_path, env={"CONVSWEEP_FAULT": "sleep:seconds=2"})
    try:
        deadline = time.monotonic() + 600
        while not (first.is_done and _epoch_counts(second)):
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
        killed_at = max(_epoch_counts(second))
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
    assert _epoch_counts(second) == {1: 1, 2: 1}  # nothing trained twice
    assert _epoch_counts(first) == {1: 1, 2: 1}
    assert (first.path / "job.json").read_text() == first_job  # the finished trial was not re-run
    log = second.log_path.read_text()
    assert f"resuming at epoch {killed_at + 1}" in log
    # The stale ranks were frozen by this test, so they could not see their job end: woken, they follow it.
    for rank in stale_ranks:
        os.kill(rank, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{rank}/cmdline").exists() and Path(f"/proc/{rank}/cmdline").read_bytes()
              for rank in stale_ranks):  # a zombie's cmdline is empty
        assert time.monotonic() < deadline, f"ranks {stale_ranks} of the ended job are still running"
        time.sleep(0.1)
    runs = _runs(spec.tracking.uri, "e2e-kill")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    by_key = {r.data.tags["convsweep.trial_key"]: r for r in runs}
    assert by_key[second.path.name].data.tags["convsweep.requeues"] == "1"
    history = MlflowClient(spec.tracking.uri).get_metric_history(by_key[second.path.name].info.run_id, "val_top1")
    assert sorted(m.step for m in history) == [1, 2]


def test_sigint_driver_cancels_its_jobs_and_resume_reruns_them(tmp_path: Path) -> None:
    """SIGINT to `convsweep sweep` (what `convsweep cancel` sends): the driver cancels the running job itself,
    promptly; the interrupted trial is not taken for one the scheduler stopped, so `resume` runs it again. The
    summary counts the trial that never started (one at a time: the second waits), and Ray's own advice to
    call Tuner.restore does not reach the user."""
    path = _write_sweep(tmp_path / "int.yaml", "e2e-int", resources={"processes_per_node": 1},
                        tune={"max_concurrent_trials": 1, "max_failures": 1})
    spec = load_sweep(path)
    trial, waiting = expand(spec)
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    driver = _cli("sweep", str(path), "--no-progress", cwd=tmp_path, env={"CONVSWEEP_FAULT": "sleep:seconds=30"})
    try:
        deadline = time.monotonic() + 600
        while not _epoch_counts(td):
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
    (run,) = _runs(spec.tracking.uri, "e2e-int")
    assert run.info.status == "KILLED" and "convsweep.stopped" not in run.data.tags
    assert "convsweep.error" not in run.data.tags  # a cancel is not a failure (and was not retried)
    assert len(run.data.tags["convsweep.job_ids"].split(",")) == 1

    resume = _cli("resume", "e2e-int", "--root", spec.storage.root, "--no-progress", cwd=tmp_path)
    out, _ = resume.communicate(timeout=600)
    assert resume.returncode == 0, out
    assert td.is_done and _epoch_counts(td) == {1: 1, 2: 1}  # continued from its checkpoint
    assert TrialDir.for_trial(spec.storage.root, spec.name, waiting.trial_key).is_done
    assert {run.info.status for run in _runs(spec.tracking.uri, "e2e-int")} == {"FINISHED"}
