"""``orchestrator.run.proxy.run_trial`` in this process, without Ray: a real local job (``probejob.ProbeJob``,
which writes the trial-directory protocol without training), the sweep's real MLflow writer on SQLite."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.run.proxy import TrialContext, run_trial
from orchestrator.run.sweepdir import SweepDir
from orchestrator.spec.schema import TrialSpec
from orchestrator.track.writer import TrackingWriter
from probejob import EPOCHS


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """run_trial gives the jobs the driver's CONVSWEEP_* settings by setting them in this process's environment:
    left there, CONVSWEEP_TRIAL_JOB would make every later test's jobs probe jobs."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def ctx(tmp_path: Path) -> TrialContext:
    root = tmp_path / "runs"
    return TrialContext(storage_root=str(root), tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}", experiment="exp",
                        executor={"kind": "local", "local": {"warm_start": False}},
                        executor_folder=str(root / "psweep" / "jobs"), git="abc", poll_seconds=0.1,
                        env={"CONVSWEEP_TRIAL_JOB": "probejob:ProbeJob"})  # the driver's CONVSWEEP_* reach the proxy so


def _run(ctx: TrialContext) -> Any:
    runs = MlflowClient(ctx.tracking_uri).search_runs(
        [MlflowClient(ctx.tracking_uri).get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1, runs
    return runs[0]


def test_a_trial_is_run_reported_once_per_epoch_and_recorded(ctx: TrialContext) -> None:
    spec = TrialSpec(sweep="psweep", model="resnet20", seed=1)
    writer, reports = TrackingWriter(), []
    try:
        summary = run_trial(spec, ctx, reports.append, writer=writer)
        td = TrialDir.for_trial(ctx.storage_root, "psweep", spec.trial_key)
        job = td.read_job()
        assert summary["best_val_top1"] == 10.0 * EPOCHS and td.is_done
        assert [r["epoch"] for r in reports] == list(range(1, EPOCHS + 1))
        # the job ended while no driver followed it: a proxy of a later driver records it without a new job
        assert run_trial(spec, ctx, reports.append, reported_epoch=EPOCHS, writer=writer) == summary
        assert td.read_job() == job and len(reports) == EPOCHS
    finally:
        writer.stop()
    run = _run(ctx)
    assert run.info.status == "FINISHED" and run.data.tags["convsweep.job_ids"] == job["job_id"]
    history = MlflowClient(ctx.tracking_uri).get_metric_history(run.info.run_id, "val_top1")
    assert Counter(m.step for m in history) == Counter(range(1, EPOCHS + 1))


def test_a_stopping_sweep_submits_nothing_and_ends_the_run_killed(ctx: TrialContext) -> None:
    spec = TrialSpec(sweep="psweep", model="resnet20", seed=2)
    stopping = SweepDir(ctx.storage_root, "psweep").stopping
    stopping.parent.mkdir(parents=True)
    stopping.touch()
    writer = TrackingWriter()
    try:
        assert run_trial(spec, ctx, lambda _: None, writer=writer) == {}
        assert writer.drain() == 0
    finally:
        writer.stop()
    assert TrialDir.for_trial(ctx.storage_root, "psweep", spec.trial_key).read_job() is None
    assert _run(ctx).info.status == "KILLED"
