"""What a trial's spec builds on one rank: its model (also how evaluation trials rebuild a checkpoint's model)
and its train and val loaders."""

from __future__ import annotations

from torch import nn

import layers
import pipelines
from orchestrator.spec.schema import TrialSpec
from orchestrator.train.distributed import DistInfo

__all__ = ["build_loaders", "build_trial_model"]


def build_trial_model(spec: TrialSpec) -> nn.Module:
    """The spec's model with its layer method, on the CPU, weights drawn from torch's current generator."""
    info = pipelines.dataset_info(spec.dataset.name)
    return layers.build_model(
        spec.model, info.num_classes, spec.layer.method, in_channels=info.in_channels, **spec.layer.build_knobs()
    )


def build_loaders(spec: TrialSpec, dist: DistInfo) -> tuple[pipelines.Loader, pipelines.Loader]:
    """This rank's train loader (augmented as ``dataset.augment`` says) and val loader, on the spec's backend
    (``auto`` resolved by ``pipelines``; each loader's ``backend`` names the one it runs on)."""
    ds = spec.dataset
    common = dict(batch_size=spec.recipe.batch_size, backend=ds.backend, rank=dist.rank,
                  world_size=dist.world_size, device=dist.device, seed=spec.seed, num_workers=ds.num_workers)
    train = pipelines.build_loader(ds.name, ds.root, "train", augment=ds.augment, **common)
    val = pipelines.build_loader(ds.name, ds.root, "val", **common)
    return train, val
