"""Trials followed by the driver's own threads (``tune.proxies: threads``, ``orchestrator.run.pool``) on the real
stack without Ray processes: MLflow on a SQLite file, submitit local jobs, Tune's ASHA scheduler asked directly.

The jobs are the probe jobs of ``probejob.py`` (no torch), so what is tested is the driver's side: concurrency,
the scheduler's stops, retries, a stop by SIGINT, and every record reaching MLflow once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml
from e2e_sweeps import runs_of
from mlflow.tracking import MlflowClient

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.run.driver import run_sweep
from orchestrator.run.executors.local import _group_alive
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_sweep
from probejob import EPOCHS

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _sweep(tmp_path: Path, name: str, seeds: int, **tune: object) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}"},
        "storage": {"root": str(tmp_path / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
                 "recipe": {"epochs": EPOCHS}},
        "seeds": list(range(seeds)),
        "resources": {"processes_per_node": 1},
        "executor": {"local": {"warm_start": False}},
        "tune": {"proxies": "threads", "max_concurrent_trials": seeds, "max_failures": 0, **tune},
    }))  # fmt: skip
    return path


def _history(uri: str, run_id: str, key: str) -> Counter:
    return Counter(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_threads_run_a_sweep_without_ray_processes_and_record_each_epoch_once(tmp_path: Path) -> None:
    """Three concurrent trials through the CLI: the driver starts no Ray process (Tune's scheduler is asked in
    the driver itself) and leaves no Tune experiment; every epoch reaches MLflow once."""
    path = _sweep(tmp_path, "threads", 3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]),
           "CONVSWEEP_TRIAL_JOB": "probejob:ProbeJob"}
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", str(path), "--no-progress"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    while driver.poll() is None:  # Ray's processes (gcs_server, raylet, workers) would live as long as the sweep
        try:
            seen |= {child.name() for child in psutil.Process(driver.pid).children(recursive=True)}
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = driver.communicate()[0]
    assert driver.returncode == 0, out[-3000:]
    assert not {name for name in seen if "raylet" in name or "gcs_server" in name or name.startswith("ray::")}, seen
    assert not (tmp_path / "runs" / "threads" / "tune").exists()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    runs = runs_of(uri, "threads")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        for key in ("epoch", "train_loss", "val_top1"):
            assert _history(uri, run.info.run_id, key) == Counter(range(1, EPOCHS + 1)), key
        assert run.data.metrics["best_val_top1"] == 10.0 * EPOCHS and run.data.tags["convsweep.job_id"]


def test_asha_asked_by_the_threads_stops_the_worse_trial_and_ends_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One trial at a time; the second's val_top1 is below the first's at the first rung, so Tune's ASHA stops it
    after its first epoch, while its job still runs (it paces its epochs): the driver ends that job."""
    path = _sweep(tmp_path, "asha", 2, scheduler="asha", max_concurrent_trials=1, grace_period=1,
                  reduction_factor=2)
    monkeypatch.setenv("CONVSWEEP_TRIAL_JOB", "probejob:SlowProbeJob")  # the driver's jobs get it (run_trial)
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    good, bad = expand(spec)
    assert result.ok and result.finished == [good.trial_key] and result.stopped == [bad.trial_key]
    runs = {r.data.tags["convsweep.trial_key"]: r for r in runs_of(spec.tracking.uri, "asha")}
    assert runs[good.trial_key].info.status == "FINISHED"
    assert runs[bad.trial_key].info.status == "KILLED"
    assert runs[bad.trial_key].data.tags["convsweep.stopped"] == "scheduler"
    td = TrialDir.for_trial(spec.storage.root, spec.name, bad.trial_key)
    assert not td.is_done and max(int(r["epoch"]) for r in td.iter_metrics()) < EPOCHS
    assert not _group_alive(int(json.loads(td.job_path.read_text())["job_id"]))
    again = run_sweep(path, show_progress=False)  # a stopped trial is settled
    assert sorted(again.skipped) == sorted([good.trial_key, bad.trial_key])


def test_a_failed_attempt_is_retried_from_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_failures=1: the second attempt goes on from epoch 2 and MLflow has every epoch once; with
    max_failures=0 the same job ends the trial FAILED with its error."""
    monkeypatch.setenv("CONVSWEEP_TRIAL_JOB", "probejob:FailOnceProbeJob")
    path = _sweep(tmp_path, "retry", 1, max_failures=1)
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    (trial,) = expand(spec)
    assert result.ok and result.finished == [trial.trial_key]
    (run,) = runs_of(spec.tracking.uri, "retry")
    assert run.info.status == "FINISHED" and run.data.tags["convsweep.requeues"] == "1"
    assert _history(spec.tracking.uri, run.info.run_id, "val_top1") == Counter(range(1, EPOCHS + 1))

    failing = _sweep(tmp_path, "noretry", 1, max_failures=0)
    result = run_sweep(failing, show_progress=False, reuse=False)  # the same trial key finished in `retry`
    (trial,) = expand(load_sweep(failing))
    assert not result.ok and list(result.failed) == [trial.trial_key]
    assert "first attempt fails" in result.failed[trial.trial_key]
    (run,) = runs_of(spec.tracking.uri, "noretry")
    assert run.info.status == "FAILED" and "first attempt fails" in run.data.tags["convsweep.error"]


def test_sigint_ends_the_running_jobs_and_resume_finishes_the_sweep(tmp_path: Path) -> None:
    """SIGINT to the driver: its running job is cancelled, the trial that waited is not started, both runs are
    resumable; `convsweep resume` finishes them, the interrupted one from its last epoch."""
    path = _sweep(tmp_path, "int", 2, max_concurrent_trials=1, max_failures=1)
    spec = load_sweep(path)
    first, waiting = expand(spec)
    td = TrialDir.for_trial(spec.storage.root, spec.name, first.trial_key)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]),
           "CONVSWEEP_TRIAL_JOB": "probejob:SlowProbeJob"}
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", str(path), "--no-progress"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not td.metrics_path.exists():
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
        time.sleep(0.1)
    job = int(json.loads(td.job_path.read_text())["job_id"])
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=120)
    assert not _group_alive(job)
    assert "1 interrupted, 1 not started" in out, out
    (run,) = runs_of(spec.tracking.uri, "int")
    assert run.info.status == "KILLED" and "convsweep.error" not in run.data.tags

    resume = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", "int", "--root",
                             spec.storage.root, "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert td.is_done and Counter(int(r["epoch"]) for r in td.iter_metrics()) == Counter(range(1, EPOCHS + 1))
    assert TrialDir.for_trial(spec.storage.root, spec.name, waiting.trial_key).is_done
    assert {r.info.status for r in runs_of(spec.tracking.uri, "int")} == {"FINISHED"}
