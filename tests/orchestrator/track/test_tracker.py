"""MLflow bookkeeping on a real SQLite store: one run per trial, params once, epochs never duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.spec.schema import LayerSpec, TrialSpec
from orchestrator.track.tracker import Tracker, absolute_tracking_uri
from orchestrator.dirs.trialdir import TrialDir


@pytest.fixture()
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns.db'}"


def _spec(seed: int = 0) -> TrialSpec:
    return TrialSpec(sweep="tsweep", model="resnet20", layer=LayerSpec(method="gmconv"), seed=seed)


def _record(epoch: int) -> dict:
    return {
        "epoch": epoch, "train_loss": 2.0 / epoch, "train_top1": 10.0 * epoch, "val_top1": 11.0 * epoch,
        "val_top5": 50.0 + epoch, "val_loss": 1.0 / epoch, "lr": 0.1, "epoch_seconds": 1.5, "images_per_second": 100.0,
        "sigma": {"gmconv.conv1": 5.0 - epoch / 10},
    }  # fmt: skip


def _trial_dir(tmp_path: Path, spec: TrialSpec) -> TrialDir:
    td = TrialDir.for_trial(tmp_path / "runs", spec.sweep, spec.trial_key)
    td.create()
    return td


def test_relative_sqlite_uri_is_pinned(tmp_path: Path) -> None:
    assert absolute_tracking_uri("sqlite:///mlruns.db", tmp_path) == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert absolute_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_run_created_once_with_params_and_tags(tmp_path: Path, uri: str) -> None:
    spec = _spec()
    td = _trial_dir(tmp_path, spec)
    tracker = Tracker(uri, "exp", "tsweep")
    run_id = tracker.ensure_run(spec, td, executor="local", git="abc123")
    assert td.read_run_id() == run_id
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.params == spec.flat_params()
    assert run.info.run_name == f"resnet20-gmconv-{spec.trial_key}"
    tags = run.data.tags
    assert tags["convsweep.sweep"] == "tsweep" and tags["convsweep.trial_key"] == spec.trial_key
    assert tags["convsweep.git_commit"] == "abc123" and tags["convsweep.executor"] == "local"
    assert tags["convsweep.trial_dir"] == str(td.path) and tags["convsweep.kind"] == "train"
    # re-used through the recorded id, and by trial key when the file is gone
    tracker.end(run_id, "KILLED")
    assert Tracker(uri, "exp", "tsweep").ensure_run(spec, td, executor="local", git="abc123") == run_id
    td.run_id_path.unlink()
    assert Tracker(uri, "exp", "tsweep").ensure_run(spec, td, executor="local", git="abc123") == run_id
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    runs = MlflowClient(uri).search_runs([tracker.experiment_id])
    assert len(runs) == 1
    # another trial gets its own run
    other = _spec(seed=1)
    assert tracker.ensure_run(other, _trial_dir(tmp_path, other), executor="local", git="x") != run_id


def test_epochs_logged_once_across_trackers(tmp_path: Path, uri: str) -> None:
    spec = _spec()
    td = _trial_dir(tmp_path, spec)
    tracker = Tracker(uri, "exp", "tsweep")
    run_id = tracker.ensure_run(spec, td, executor="local", git="g")
    td.append_metrics(_record(1))
    assert [r["epoch"] for r in tracker.sync(run_id, td)] == [1]
    assert tracker.sync(run_id, td) == []
    td.append_metrics(_record(2))
    td.append_metrics(_record(2))  # an epoch re-run after a crash appears twice in the file
    # a fresh driver (resume) must not log epoch 1 again
    fresh = Tracker(uri, "exp", "tsweep")
    assert [r["epoch"] for r in fresh.sync(run_id, td)] == [2]
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, "val_top1")
    assert sorted((m.step, m.value) for m in history) == [(1, 11.0), (2, 22.0)]
    assert [m.step for m in client.get_metric_history(run_id, "sigma.gmconv.conv1")] == [1, 2]
    for key in ("train_loss", "train_top1", "val_top5", "val_loss", "lr", "epoch_seconds", "images_per_second"):
        assert len(client.get_metric_history(run_id, key)) == 2, key


def test_status_summary_and_error(tmp_path: Path, uri: str) -> None:
    tracker = Tracker(uri, "exp", "tsweep")
    ok, bad = _spec(0), _spec(1)
    ok_id = tracker.ensure_run(ok, _trial_dir(tmp_path, ok), executor="local", git="g")
    bad_id = tracker.ensure_run(bad, _trial_dir(tmp_path, bad), executor="local", git="g")
    tracker.log_summary(ok_id, {"best_val_top1": 55.0, "final_val_top1": 50.0, "folded_params": 270000, "epochs": 3,
                                "data_backend": "dali-cpu"})
    tracker.end(ok_id, "FINISHED")
    trace = "Traceback (most recent call last):\n  File x\nRuntimeError: injected crash at epoch 1"
    tracker.end(bad_id, "FAILED", error=trace)
    client = MlflowClient(uri)
    ok_run, bad_run = client.get_run(ok_id), client.get_run(bad_id)
    assert ok_run.info.status == "FINISHED" and ok_run.data.metrics["best_val_top1"] == 55.0
    assert ok_run.data.metrics["folded_params"] == 270000
    assert ok_run.data.tags["convsweep.data_backend"] == "dali-cpu"  # the loader `auto` chose, as a tag
    assert bad_run.info.status == "FAILED"
    assert bad_run.data.tags["convsweep.error"].splitlines()[0] == "RuntimeError: injected crash at epoch 1"
    assert "Traceback" in bad_run.data.tags["convsweep.error"]
    assert tracker.finished_keys() == {ok.trial_key}
    with pytest.raises(ValueError, match="status"):
        tracker.end(ok_id, "DONE")


def test_job_ids_accumulate(tmp_path: Path, uri: str) -> None:
    tracker = Tracker(uri, "exp", "tsweep")
    spec = _spec()
    run_id = tracker.ensure_run(spec, _trial_dir(tmp_path, spec), executor="local", git="g")
    tracker.record_job(run_id, "101")
    tracker.record_job(run_id, "101")
    tracker.record_job(run_id, "202")
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["convsweep.job_id"] == "202" and tags["convsweep.job_ids"] == "101,202"
    assert tags["convsweep.requeues"] == "1"


def test_requeues_of_the_same_job_count(tmp_path: Path, uri: str) -> None:
    """A SLURM requeue keeps the job id: its restarts count as requeues, with resubmissions, and the log path is
    tagged."""
    tracker = Tracker(uri, "exp", "tsweep")
    spec = _spec()
    run_id = tracker.ensure_run(spec, _trial_dir(tmp_path, spec), executor="slurm", git="g")
    tracker.record_job(run_id, "7", log_path="/jobs/7_0_log.out")
    tracker.record_job(run_id, "7", restarts=2)  # requeued twice in place
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["convsweep.job_ids"] == "7" and tags["convsweep.requeues"] == "2"
    assert tags["convsweep.log_path"] == "/jobs/7_0_log.out"
    tracker.record_job(run_id, "8", restarts=1, log_path="/jobs/8_0_log.out")  # a retry, itself requeued once
    tracker.record_job(run_id, "8", restarts=0)  # an older poll never lowers the count
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["convsweep.job_ids"] == "7,8" and tags["convsweep.job_restarts"] == "2,1"
    assert tags["convsweep.requeues"] == "4" and tags["convsweep.job_id"] == "8"
    assert tags["convsweep.log_path"] == "/jobs/8_0_log.out"
