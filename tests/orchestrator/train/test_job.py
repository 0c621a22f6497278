"""TrialJob: what gets pickled, requeue, crash_once retry, rank-prefixed logs, a DDP job, evaluation trials."""

from __future__ import annotations

import json
from pathlib import Path

import cloudpickle
import pytest
import submitit
import torch

from orchestrator.spec.schema import DatasetSpec, RecipeSpec, ResourcesSpec, TrialSpec
from orchestrator.train.job import TrialJob
from orchestrator.train.faults import CRASH_ONCE_MARKER, FAULT_ENV
from orchestrator.dirs.trialdir import TrialDir


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # TrialJob sets cpus_per_process threads in-process


def spec_for(world_size: int = 1, epochs: int = 2, **extra) -> TrialSpec:
    return TrialSpec(
        sweep="test-job",
        model="resnet20",
        dataset=DatasetSpec(name="digits", backend="pytorch", num_workers=0),
        recipe=RecipeSpec(epochs=epochs, batch_size=16, max_steps_per_epoch=2),
        seed=1,
        resources=ResourcesSpec(processes_per_node=world_size),
        **extra,
    )


def new_trial(root: Path, spec: TrialSpec) -> TrialDir:
    trial = TrialDir.for_trial(root, spec.sweep, spec.trial_key)
    trial.create()
    trial.write_spec(spec.model_dump(mode="json"))
    return trial


def test_only_the_path_is_pickled_and_checkpoint_resubmits_a_fresh_job(tmp_path: Path) -> None:
    job = TrialJob(str(tmp_path))
    clone = cloudpickle.loads(cloudpickle.dumps(job))
    assert vars(clone) == {"trial_dir": str(tmp_path)}
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, TrialJob) and delayed.function is not job
    assert vars(delayed.function) == {"trial_dir": str(tmp_path)} and delayed.args == () and delayed.kwargs == {}


def test_bad_spec_marks_failed_before_training(tmp_path: Path) -> None:
    trial = TrialDir(tmp_path / "bad")
    trial.create()
    trial.write_spec({"sweep": "x", "model": "resnet20", "recipe": {"epochs": 0}})
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        TrialJob(str(trial.path))()
    assert "recipe.epochs" in trial.failure


def test_crash_once_is_retried_in_process_and_logs_are_rank_prefixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("SUBMITIT_EXECUTOR", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(FAULT_ENV, "crash_once:epoch=1")
    trial = new_trial(tmp_path, spec_for())
    with pytest.raises(RuntimeError, match="injected crash_once after epoch 1"):
        TrialJob(str(trial.path))()
    assert (trial.path / CRASH_ONCE_MARKER).exists() and "InjectedFault" in trial.failure
    summary = TrialJob(str(trial.path))()  # the retry: same environment, the fault does not fire again
    assert trial.is_done and trial.failure is None
    assert [r["epoch"] for r in trial.iter_metrics()] == [1, 2]
    assert summary == trial.read_summary()
    log_lines = trial.log_path.read_text().splitlines()
    assert log_lines and all("[rank 0]" in line for line in log_lines if line[:2] == "20")
    assert any("resuming at epoch 2" in line for line in log_lines)
    # a job started again after the end does nothing but return the summary
    assert TrialJob(str(trial.path))() == summary
    assert len(list(trial.iter_metrics())) == 2


@pytest.mark.slow
def test_ddp_trial_job_then_an_evaluation_trial(tmp_path: Path) -> None:
    spec = spec_for(world_size=2, epochs=1)
    trial = new_trial(tmp_path, spec)
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(tasks_per_node=spec.world_size, timeout_min=10)
    results = executor.submit(TrialJob(str(trial.path))).results()
    assert len(results) == 2 and trial.is_done
    summary = json.loads(trial.summary_path.read_text())
    assert results[0] == summary  # rank 0 returns what it wrote
    log = trial.log_path.read_text()
    assert "[rank 0]" in log and "[rank 1]" in log and "world_size=2" in log

    # Evaluation trial on the finished run's final weights, in-process (single rank).
    evaluation = spec_for(evaluate_source=str(trial.path), transforms=("rot0", "rot90", "flip_ud"))
    eval_trial = new_trial(tmp_path, evaluation)
    out = TrialJob(str(eval_trial.path))()
    assert set(out) == {f"{t}_{k}" for t in ("rot0", "rot90", "flip_ud") for k in ("top1", "top5")} | {"data_backend"}
    assert out["data_backend"] == "pytorch"
    assert eval_trial.read_summary() == out and eval_trial.is_done
    # rot0 is the plain validation split: same weights, same images, same count as the 2-rank evaluation
    assert out["rot0_top1"] == pytest.approx(summary["final_val_top1"])
    assert out["rot0_top5"] == pytest.approx(summary["final_val_top5"])
