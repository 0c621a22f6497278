"""The `pytorch` backend: a torchvision `DataLoader` driven by the shared `ShardPlan`.

Workers decode and augment per sample into uint8 tensors (PIL for the JPEG datasets, tensor ops for the
array datasets); the main process moves the uint8 batch to the device and normalises it there. The
DataLoader is rebuilt for each epoch with that epoch's batches as its batch sampler and a generator seeded
from (seed, epoch, rank), so worker augmentation is reproducible for a given `num_workers > 0`.

A file that cannot be decoded raises `CorruptImageError` naming it (re-raised in the main process by the
DataLoader); nothing is skipped, so no label ever shifts.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..readers.arrays import ArraySplit
from ..readers.folders import FileSplit, read_image_file
from ..sharding import ShardPlan
from ..transforms import array_transform, image_transform, normalize
from .base import Loader

__all__ = ["TorchLoader", "SplitDataset"]


class SplitDataset(Dataset):
    """Map-style dataset over a FileSplit or ArraySplit: index -> (uint8 CHW tensor, int label)."""

    def __init__(self, name: str, data: FileSplit | ArraySplit, train: bool, eval_transform: str | None,
                 augment: bool | None = None) -> None:
        self.data = data
        self.is_files = isinstance(data, FileSplit)
        self.transform = (image_transform if self.is_files else array_transform)(name, train, eval_transform, augment)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.is_files:
            image = self.transform(read_image_file(self.data.paths[index]))
        else:
            image = self.transform(self.data.images[index])
        return image, int(self.data.labels[index])


def _mix_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.default_rng([seed, epoch, rank]).integers(2**62))


class TorchLoader(Loader):
    backend = "pytorch"

    def __init__(self, name: str, data: FileSplit | ArraySplit, plan: ShardPlan, *, train: bool,
                 device: torch.device, num_workers: int, seed: int, eval_transform: str | None,
                 mean: tuple[float, ...], std: tuple[float, ...], augment: bool | None = None) -> None:
        super().__init__(plan, device)
        self.dataset = SplitDataset(name, data, train, eval_transform, augment)
        self.num_workers, self.seed, self.mean, self.std = num_workers, seed, mean, std
        self.classes = data.classes

    def _iter_batches(self, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not batches:
            return
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, self.plan.rank))
        loader = DataLoader(self.dataset, batch_sampler=[b.tolist() for b in batches],
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                            generator=generator, persistent_workers=False)
        for images, labels in loader:
            yield (normalize(images, self.mean, self.std, self.device),
                   labels.to(self.device, non_blocking=True))
