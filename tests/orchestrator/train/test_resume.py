"""Resuming a trial (orchestrator.train.resume) for real: after an injected crash (bit-equal to an uninterrupted
run), from prev.pt when last.pt is torn, from scratch when no checkpoint is intact, with a lost metrics line,
and with best.pt kept in step with the checkpoint resumed from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import TrialSpec
from orchestrator.train.faults import FAULT_ENV, InjectedFault
from orchestrator.train.trainer import Trainer, train

from trial_helpers import CPU, assert_same_weights, last_state, new_trial, tiny_spec, uninterrupted_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crash_after(epoch: int, spec: TrialSpec, trial: TrialDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train ``trial`` until the injected crash after ``epoch``; the fault is gone for the next ``train``."""
    monkeypatch.setenv(FAULT_ENV, f"crash:epoch={epoch}")
    with pytest.raises(InjectedFault):
        train(spec, CPU, trial)
    monkeypatch.delenv(FAULT_ENV)


def test_resume_after_crash_does_not_retrain_and_matches_uninterrupted(
    tmp_path: Path, uninterrupted: TrialDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial = new_trial(tmp_path, "crashy", tiny_spec())
    _crash_after(1, tiny_spec(), trial, monkeypatch)
    assert "InjectedFault" in trial.failure and not trial.is_done
    assert [r["epoch"] for r in trial.iter_metrics()] == [1]
    assert last_state(trial)["epoch"] == 1

    train(tiny_spec(), CPU, trial)
    assert [r["epoch"] for r in trial.iter_metrics()] == [1, 2, 3]  # epoch 1 was not trained again
    assert trial.is_done and trial.failure is None
    resumed, reference = last_state(trial), last_state(uninterrupted)
    assert resumed["epoch"] == 3 and resumed["scheduler"]["last_epoch"] == reference["scheduler"]["last_epoch"]
    assert_same_weights(resumed["model"], reference["model"])
    for mine, theirs in zip(trial.read_metrics(), uninterrupted.read_metrics()):
        assert (mine["train_loss"], mine["val_top1"], mine["lr"]) == (theirs["train_loss"], theirs["val_top1"],
                                                                      theirs["lr"])


def test_torn_last_checkpoint_falls_back_to_prev(
    tmp_path: Path, uninterrupted: TrialDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial = new_trial(tmp_path, "torn", tiny_spec())
    _crash_after(2, tiny_spec(), trial, monkeypatch)
    data = trial.last_checkpoint.read_bytes()
    trial.last_checkpoint.write_bytes(data[: len(data) // 3])  # a write cut short by a node failure
    train(tiny_spec(), CPU, trial)
    # epoch 2 ran again from prev.pt (epoch 1): its old record was dropped first, so each epoch is there once
    assert [r["epoch"] for r in trial.iter_metrics()] == [1, 2, 3]
    assert_same_weights(last_state(trial)["model"], last_state(uninterrupted)["model"])
    assert trial.read_metrics() == uninterrupted_metrics(uninterrupted, trial)

def test_no_intact_checkpoint_restarts_from_scratch_with_a_clean_history(
    tmp_path: Path, uninterrupted: TrialDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial = new_trial(tmp_path, "all-torn", tiny_spec())
    _crash_after(2, tiny_spec(), trial, monkeypatch)
    for path in (trial.last_checkpoint, trial.prev_checkpoint):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # still loads: only the checksum says the weights are not the saved ones
        path.write_bytes(bytes(data))
    with open(trial.metrics_path, "a", encoding="utf-8") as f:
        f.write('{"epoch": 3, "val_')  # and a line torn by the crash
    train(tiny_spec(), CPU, trial)
    assert [r["epoch"] for r in trial.iter_metrics()] == [1, 2, 3]  # epochs 1-2 trained again, written once
    assert_same_weights(last_state(trial)["model"], last_state(uninterrupted)["model"])
    assert trial.read_metrics() == uninterrupted_metrics(uninterrupted, trial)


def test_lost_metrics_line_is_recovered_and_eval_every_skips_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_spec(epochs=2, steps=1).model_copy(update={"eval_every": 2})
    trial = new_trial(tmp_path, "lost-line", spec)
    _crash_after(1, spec, trial, monkeypatch)
    line = trial.read_metrics()[0]
    assert "val_top1" not in line and "val_top5" not in line  # epoch 1 is not a validation epoch
    trial.metrics_path.unlink()  # as if the crash came between the checkpoint and its metrics line
    train(spec, CPU, trial)
    records = list(trial.iter_metrics())
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0] == line  # taken from the checkpoint, not trained again
    assert "val_top1" in records[1] and trial.read_summary()["best_epoch"] == 2


# lr x100 for the third epoch: it ends worse than the second (val_top1 10.56, 13.06, 11.67 on this CPU setup),
# so the best epoch's weights are not the last ones
DIVERGING = {"name": "multistep", "milestones": (2,), "gamma": 100.0}


@pytest.fixture(scope="module")
def diverging(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> TrialDir:
    spec = tiny_spec(schedule=DIVERGING)
    trial = new_trial(tmp_path_factory.mktemp("best"), "best", spec)
    train(spec, CPU, trial)
    return trial


def test_best_checkpoint_keeps_the_best_epochs_weights(diverging: TrialDir) -> None:
    summary = diverging.read_summary()
    assert summary["best_epoch"] == 2 and summary["final_val_top1"] < summary["best_val_top1"]
    best = torch.load(diverging.best_checkpoint, weights_only=True)
    assert best["epoch"] == 2 and best["val_top1"] == summary["best_val_top1"]
    assert TrialSpec.model_validate(best["spec"]) == tiny_spec(schedule=DIVERGING)
    assert_same_weights(best["model"], torch.load(diverging.prev_checkpoint, weights_only=True)["model"])  # epoch 2
    assert torch.load(diverging.prev_best_checkpoint, weights_only=True)["epoch"] == 1  # rotated like last/prev
    assert not [p.name for p in diverging.checkpoint_dir.iterdir() if ".tmp" in p.name]


def test_resume_puts_the_best_checkpoint_back_in_step(
    tmp_path: Path, diverging: TrialDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_spec(schedule=DIVERGING)
    trial = new_trial(tmp_path, "best-crash", spec)
    _crash_after(2, spec, trial, monkeypatch)
    assert [torch.load(p, weights_only=True)["epoch"] for p in (trial.best_checkpoint, trial.prev_best_checkpoint)] \
        == [2, 1]

    # last.pt damaged: the resume starts from prev.pt (epoch 1, the best so far) and best.pt is one epoch ahead
    last = trial.last_checkpoint.read_bytes()
    trial.last_checkpoint.write_bytes(last[: len(last) // 2])
    ahead = Trainer(spec, CPU, trial).checkpoints.resume()
    assert (ahead.start_epoch, ahead.best_epoch) == (2, 1)
    assert torch.load(trial.best_checkpoint, weights_only=True)["epoch"] == 1

    # which is also what a crash between epoch 2's last.pt and its best.pt leaves: best.pt one best epoch behind
    trial.last_checkpoint.write_bytes(last)
    train(spec, CPU, trial)  # epoch 3 is no better, so best.pt is put right by the resume alone
    resumed, reference = (torch.load(t.best_checkpoint, weights_only=True) for t in (trial, diverging))
    assert resumed["epoch"] == reference["epoch"] == 2
    assert_same_weights(resumed["model"], reference["model"])
