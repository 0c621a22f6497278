"""The `synthetic` backend: random tensors of the dataset's shape, for throughput work without data.

One batch of standard-normal images and uniform labels is made on the device from the seed and yielded at
every step (the last batch of an epoch sliced to its planned size), so the loader costs nothing. The epoch
follows the `ShardPlan` of the published dataset's size (`DatasetInfo.nominal_sizes`), with the same batch
counts per rank as real data would give. Nothing is read from disk.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..datasets import dataset_info
from ..sharding import ShardPlan
from .base import Loader

__all__ = ["SyntheticLoader"]


class SyntheticLoader(Loader):
    backend = "synthetic"

    def __init__(self, name: str, train: bool, *, batch_size: int, rank: int, world_size: int,
                 device: torch.device, seed: int) -> None:
        n = dataset_info(name).nominal_sizes[0 if train else 1]
        super().__init__(ShardPlan(n, batch_size, rank=rank, world_size=world_size, seed=seed, shuffle=train), device)
        info = dataset_info(name)
        g = torch.Generator().manual_seed(seed * 7919 + rank)
        shape = (batch_size, info.in_channels, *info.image_shape)
        self._images = torch.randn(shape, generator=g).to(device)
        self._labels = torch.randint(info.num_classes, (batch_size,), generator=g).to(device)

    def _iter_batches(self, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in batches:
            yield self._images[:len(batch)], self._labels[:len(batch)]
