"""The sweep's one MLflow writer (``orchestrator.track.writer``), in-process on a real SQLite store: many trials'
proxies (threads here, Ray workers in a sweep) hand it their records, which all arrive, each once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import LayerSpec, TrialSpec
from orchestrator.track.writer import TrackingWriter

EPOCHS = 3


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for the module: creating MLflow's tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('writer') / 'mlruns.db'}"


def _proxy(writer: TrackingWriter, spec: TrialSpec, td: TrialDir, uri: str, start: threading.Barrier) -> None:
    """What ``orchestrator.run.proxy.run_trial`` asks of the writer, in its order; every epoch announced twice
    (a proxy tells the writer on every change of the file, and again at the job's end)."""
    start.wait()
    run_id = writer.open_trial(spec.model_dump(mode="json"), str(td.path), uri=uri, experiment="exp",
                               executor="local", git="abc", env={})
    assert run_id is not None and td.read_run_id() == run_id
    writer.job(str(td.path), f"job-{spec.seed}", log_path=str(td.log_path))
    for epoch in range(1, EPOCHS + 1):
        td.append_metrics({"epoch": epoch, "train_loss": 1.0 / epoch, "val_top1": 10.0 * epoch, "lr": 0.1,
                           "sigma": {"gmconv.conv1": 5.0 - epoch / 10}})
        writer.epochs(str(td.path))
        writer.epochs(str(td.path))
    td.write_summary({"best_val_top1": 10.0 * EPOCHS, "final_val_top1": 10.0 * EPOCHS, "epochs": EPOCHS})
    td.mark_done()
    assert writer.finish(str(td.path))


def test_many_trials_records_arrive_once_through_one_writer(tmp_path: Path, uri: str) -> None:
    specs = [TrialSpec(sweep="wsweep", model="resnet20", layer=LayerSpec(method="gmconv"), seed=s) for s in range(6)]
    dirs = [TrialDir.for_trial(tmp_path / "runs", s.sweep, s.trial_key) for s in specs]
    for td in dirs:
        td.create()
    writer = TrackingWriter()
    start = threading.Barrier(len(specs))
    errors: list[BaseException] = []

    def proxy(spec: TrialSpec, td: TrialDir) -> None:
        try:
            _proxy(writer, spec, td, uri, start)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=proxy, args=(s, td)) for s, td in zip(specs, dirs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert writer.drain() == 0
    writer.stop()

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id], "tags.`convsweep.sweep` = 'wsweep'")
    assert sorted(r.data.tags["convsweep.trial_key"] for r in runs) == sorted(s.trial_key for s in specs)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["convsweep.job_ids"].startswith("job-") and run.data.params["model"] == "resnet20"
        for key in ("epoch", "train_loss", "val_top1", "sigma.gmconv.conv1"):
            steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == Counter(range(1, EPOCHS + 1)), (key, steps)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "best_val_top1")] == [EPOCHS]
    assert not writer._thread.is_alive()  # stopped: every call above was made by that one thread


def test_a_trial_retried_after_its_failure_keeps_its_run(tmp_path: Path, uri: str) -> None:
    spec = TrialSpec(sweep="wretry", model="resnet20", layer=LayerSpec(method="stdconv"), seed=0)
    td = TrialDir.for_trial(tmp_path / "runs", spec.sweep, spec.trial_key)
    td.create()
    writer = TrackingWriter()
    opened = dict(uri=uri, experiment="exp", executor="local", git="abc", env={})
    first = writer.open_trial(spec.model_dump(mode="json"), str(td.path), **opened)
    writer.end(str(td.path), "FAILED", "Traceback ...\nRuntimeError: boom")
    assert writer.drain() == 0
    client = MlflowClient(uri)
    run = client.get_run(first)
    assert run.info.status == "FAILED" and "boom" in run.data.tags["convsweep.error"]
    # Tune's retry: the same run, RUNNING again, then FINISHED without the old error
    assert writer.open_trial(spec.model_dump(mode="json"), str(td.path), **opened) == first
    td.write_summary({"best_val_top1": 1.0, "epochs": 0})
    assert writer.finish(str(td.path))
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and "convsweep.error" not in run.data.tags
    writer.stop()


def test_open_store_creates_the_store_and_experiment_ahead_of_the_first_trial(tmp_path: Path) -> None:
    """What the driver asks while Ray starts its first trial; a store that is away is left to ``open_trial``."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    writer = TrackingWriter()
    writer.open_store(uri, "ahead", "s")
    writer.open_store(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}", "ahead", "s")  # logged, not raised
    writer.stop()  # after the calls queued before it
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("ahead") is not None
