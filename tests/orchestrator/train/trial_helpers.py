"""Helpers of the trainer's tests: a tiny CIFAR ResNet-20 trial on digits (a few steps per epoch, on the CPU),
its trial directory, and comparisons of checkpoints and histories."""

from __future__ import annotations

from pathlib import Path

import torch

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import DatasetSpec, LayerSpec, OptimizerSpec, RecipeSpec, ResourcesSpec, TrialSpec
from orchestrator.train.distributed import DistInfo

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device="cpu", backend=None)


def tiny_spec(epochs: int = 3, steps: int = 2, layer: LayerSpec | None = None, lr: float = 0.05,
              grad_clip: float | None = None, world_size: int = 1, batch_size: int = 16,
              schedule: dict | None = None) -> TrialSpec:
    return TrialSpec(
        sweep="test-trainer",
        model="resnet20",
        dataset=DatasetSpec(name="digits", backend="pytorch", num_workers=0),
        layer=layer or LayerSpec(),
        recipe=RecipeSpec(
            optimizer=OptimizerSpec(lr=lr, momentum=0.9, weight_decay=5e-4),
            schedule=schedule or {"name": "multistep", "milestones": (2,), "gamma": 0.2},
            epochs=epochs, batch_size=batch_size, max_steps_per_epoch=steps, grad_clip=grad_clip,
        ),
        seed=3,
        resources=ResourcesSpec(processes_per_node=world_size),
    )


def new_trial(tmp_path: Path, name: str, spec: TrialSpec) -> TrialDir:
    trial = TrialDir(tmp_path / name)
    trial.create()
    trial.write_spec(spec.model_dump(mode="json"))
    trial.write_run_id(f"run-{name}")
    return trial


def last_state(trial: TrialDir) -> dict:
    return torch.load(trial.last_checkpoint, weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def uninterrupted_metrics(reference: TrialDir, trial: TrialDir) -> list[dict]:
    """The reference's records with this trial's timings: what a resume must leave in metrics.jsonl."""
    timed = {"epoch_seconds", "images_per_second"}
    return [{**r, **{k: mine[k] for k in timed}} for r, mine in zip(reference.read_metrics(), trial.read_metrics())]
