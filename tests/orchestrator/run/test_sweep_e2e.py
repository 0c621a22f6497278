"""End to end on the real stack: the driver (its threads asking Ray Tune's scheduler; one test also under Tune's
runtime on a Ray local cluster), MLflow (SQLite), submitit local jobs, DDP over gloo.

Economical on purpose (2 cores): digits, ResNet-20, batch 16, 2 steps per epoch, 2 epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from e2e_sweeps import epoch_counts, runs_of, write_sweep
from mlflow.tracking import MlflowClient

from orchestrator.spec.expand import expand
from orchestrator.run.executors.local import _group_alive
from orchestrator.run.driver import run_sweep
from orchestrator.spec.load import load_sweep
from orchestrator.dirs.trialdir import TrialDir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_cluster():
    from orchestrator.run.tune import init_ray

    import ray

    started = init_ray()
    yield
    if started:
        ray.shutdown()


def test_two_trials_end_to_end_then_idempotent(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "two.yaml", "e2e-two")
    data = yaml.safe_load(path.read_text())
    data["base"]["analysis"] = {"erf": {"stage": "layers.1", "images": 16}}
    path.write_text(yaml.safe_dump(data))
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    trials = expand(spec)
    assert result.ok and sorted(result.finished) == sorted(t.trial_key for t in trials)
    uri = spec.tracking.uri
    runs = {r.data.tags["convsweep.trial_key"]: r for r in runs_of(uri, "e2e-two")}
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
    assert len(runs_of(uri, "e2e-two")) == 2  # no new run
    assert sorted(p.name for p in jobs_dir.iterdir()) == jobs_before  # no job submitted


def test_crash_once_is_retried_from_its_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_sweep(tmp_path / "once.yaml", "e2e-once", grid={}, resources={"processes_per_node": 1})
    monkeypatch.setenv("CONVSWEEP_FAULT", "crash_once:epoch=1")
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    (trial,) = expand(spec)
    assert result.ok and result.finished == [trial.trial_key]
    (run,) = runs_of(spec.tracking.uri, "e2e-once")
    assert run.info.status == "FINISHED"
    assert run.data.tags["convsweep.requeues"] == "1" and len(run.data.tags["convsweep.job_ids"].split(",")) == 2
    assert "convsweep.error" not in run.data.tags
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    assert epoch_counts(td) == {1: 1, 2: 1}  # epoch 1 was not trained again
    steps = [m.step for m in MlflowClient(spec.tracking.uri).get_metric_history(run.info.run_id, "val_top1")]
    assert steps == [1, 2]


def test_always_crashing_trial_ends_failed_with_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_sweep(tmp_path / "crash.yaml", "e2e-crash", grid={}, resources={"processes_per_node": 1})
    # every attempt crashes after the epoch it trains: attempt 1 after epoch 1, the retry after epoch 2
    monkeypatch.setenv("CONVSWEEP_FAULT", "crash:epoch=1;crash:epoch=2")
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    (trial,) = expand(spec)
    assert not result.ok and list(result.failed) == [trial.trial_key]
    (run,) = runs_of(spec.tracking.uri, "e2e-crash")
    assert run.info.status == "FAILED"
    error = run.data.tags["convsweep.error"]
    assert "InjectedFault" in error.splitlines()[0] and "Traceback" in error
    assert run.data.tags["convsweep.requeues"] == "1"  # max_failures=1: one retry
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    log = td.log_path.read_text()
    assert "Traceback" in log and "InjectedFault" in log
    assert not td.is_done


@pytest.mark.parametrize("proxies", ["threads", "actors"])
def test_asha_stops_the_worse_trial_and_ends_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, proxies: str
) -> None:
    """ASHA on a metric known in advance (the reported lr): the second trial is below the rung's cutoff.

    The better trial only has to put its epoch 1 on the rung first, so it trains one epoch; the worse one has
    three, and is stopped after its first."""
    if proxies == "actors":
        request.getfixturevalue("ray_cluster")
    path = write_sweep(
        tmp_path / "asha.yaml", "e2e-asha", grid={},
        zip=[{"recipe.optimizer.lr": [0.1, 0.01], "recipe.epochs": [1, 3]}],
        base={"model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
              "recipe": {"batch_size": 16, "max_steps_per_epoch": 1}},
        resources={"processes_per_node": 1},
        tune={"max_concurrent_trials": 1, "scheduler": "asha", "metric": "lr", "mode": "max", "grace_period": 1,
              "reduction_factor": 2, "max_failures": 0, "proxies": proxies},
    )  # fmt: skip
    # Each epoch is followed by a pause long enough for Tune (slow on two busy cores) to process epoch 1 of the
    # worse trial and stop it while its job still runs (three pauses before its job could end on its own).
    monkeypatch.setenv("CONVSWEEP_FAULT", "sleep:seconds=12")
    result = run_sweep(path, show_progress=False)
    spec = load_sweep(path)
    good, bad = expand(spec)
    assert result.finished == [good.trial_key] and result.stopped == [bad.trial_key] and result.ok
    runs = {r.data.tags["convsweep.trial_key"]: r for r in runs_of(spec.tracking.uri, "e2e-asha")}
    assert runs[good.trial_key].info.status == "FINISHED"
    assert runs[bad.trial_key].info.status == "KILLED"
    assert runs[bad.trial_key].data.tags["convsweep.stopped"] == "scheduler"
    td = TrialDir.for_trial(spec.storage.root, spec.name, bad.trial_key)
    assert not td.is_done and max(epoch_counts(td)) < 3
    job_id = json.loads((td.path / "job.json").read_text())["job_id"]
    assert not _group_alive(int(job_id))  # the stopped trial's processes were ended
    again = run_sweep(path, show_progress=False)  # a stopped trial is settled: not run again
    assert sorted(again.skipped) == sorted([good.trial_key, bad.trial_key])


