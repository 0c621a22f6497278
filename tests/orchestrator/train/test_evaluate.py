"""Evaluation trials on a real finished trial: which weights they re-evaluate (GMConv Table 4 rotates the best
epochs of Table 2's AlexNets: its Rotate 0 column equals Table 2's best top-1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.spec.schema import DatasetSpec, OptimizerSpec, RecipeSpec, SweepSpec, TrialSpec
from orchestrator.train.distributed import DistInfo
from orchestrator.train.evaluate import evaluate, load_best_model
from orchestrator.spec.expand import expand
from orchestrator.train.trainer import train
from orchestrator.dirs.trialdir import TrialDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device="cpu", backend=None)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    """A storage root holding one finished trial of sweep `src` whose best epoch (2) is not its last (3)."""
    root = tmp_path_factory.mktemp("storage")
    spec = TrialSpec(
        sweep="src",
        model="resnet20",
        dataset=DatasetSpec(name="digits", backend="pytorch", num_workers=0),
        recipe=RecipeSpec(
            optimizer=OptimizerSpec(lr=0.05, momentum=0.9, weight_decay=5e-4),
            schedule={"name": "multistep", "milestones": (2,), "gamma": 100.0},  # the last epoch diverges
            epochs=3, batch_size=16, max_steps_per_epoch=2,
        ),
        seed=3,
    )
    trial = TrialDir.for_trial(root, "src", spec.trial_key)
    trial.create()
    trial.write_spec(spec.model_dump(mode="json"))
    train(spec, CPU, trial)
    summary = trial.read_summary()
    assert summary["best_epoch"] == 2 and summary["best_val_top1"] != summary["final_val_top1"]
    return root


def rotation_sweep(root: Path, **evaluate: object) -> SweepSpec:
    return SweepSpec.model_validate({
        "name": "rot", "storage": {"root": str(root)},
        "evaluate": {"source_sweep": "src", "transforms": ["rot0", "rot90"], **evaluate},
    })


def run(trial: TrialSpec, root: Path) -> dict:
    return evaluate(trial, CPU, TrialDir.for_trial(root, trial.sweep, trial.trial_key))


def test_best_checkpoint_is_evaluated_when_asked(storage: Path) -> None:
    [best] = expand(rotation_sweep(storage, checkpoint="best"))
    [last] = expand(rotation_sweep(storage))
    assert (best.evaluate_checkpoint, last.evaluate_checkpoint) == ("best", "last")
    assert best.trial_key != last.trial_key  # other weights, another trial
    # the default is left out of the key: evaluation trials planned before the knob keep theirs
    assert "evaluate_checkpoint" not in last.model_dump(mode="json", exclude_defaults=True)

    source = TrialDir(best.evaluate_source).read_summary()
    on_best, on_last = run(best, storage), run(last, storage)
    # rot0 is the plain validation split: the source's best top-1 from best.pt, its final top-1/top-5 from last.pt
    assert on_best["rot0_top1"] == pytest.approx(source["best_val_top1"])
    assert on_last["rot0_top1"] == pytest.approx(source["final_val_top1"])
    assert on_last["rot0_top5"] == pytest.approx(source["final_val_top5"])
    assert on_best["rot0_top1"] != pytest.approx(on_last["rot0_top1"])
    assert on_best["data_backend"] == on_last["data_backend"] == "pytorch"  # `auto` on this CPU, for digits


def test_best_needs_a_checkpoint_of_the_recorded_best_epoch(storage: Path, tmp_path: Path) -> None:
    [trial] = expand(rotation_sweep(storage, checkpoint="best"))
    copy = TrialDir(tmp_path / "copy")
    shutil.copytree(trial.evaluate_source, copy.path)
    copy.prev_best_checkpoint.unlink()  # epoch 1's
    shutil.copy(copy.last_checkpoint, copy.best_checkpoint)  # a best.pt of epoch 3, not of the recorded best epoch
    with pytest.raises(ValueError, match="no readable checkpoint of the best epoch 2"):
        load_best_model(copy, "cpu")
    copy.best_checkpoint.unlink()  # a trial trained before convsweep kept best.pt
    with pytest.raises(ValueError, match="evaluate.checkpoint: last evaluates the final weights"):
        load_best_model(copy, "cpu")
