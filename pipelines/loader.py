"""`build_loader` and the `Loader` every backend returns.

A `Loader` yields `(images, labels)`: float32 NCHW normalised images and int64 labels on the requested
device, whatever the backend. It is driven by a `ShardPlan` (sharding.py), which also gives its length,
`num_samples` and the order for `set_epoch`. Its position is plain data: `state_dict()` returns
`{"epoch", "batches_done"}` and `load_state_dict()` makes the next iteration start after the batches already
consumed, without reading the skipped files (the sample order is restored exactly; the random augmentation
parameters of the resumed batches are drawn afresh).

Backends: `pytorch` (torchvision DataLoader, torch_loader.py), `dali-cpu` / `dali-gpu` (one DALI graph,
JPEG datasets only, dali.py), `synthetic` (synthetic.py) and `auto`: `dali-gpu` when `device` is CUDA, the
dataset is a JPEG one and DALI imports; `pytorch` otherwise.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import torch

from .constants import BACKENDS
from .datasets import JPEG_DATASETS, SPLITS, check_name, dataset_info, load_split
from .sharding import ShardPlan
from .transforms import check_eval_transform

__all__ = ["BACKENDS", "Loader", "build_loader", "resolve_backend"]

log = logging.getLogger(__name__)



class Loader:
    """Base class: epoch bookkeeping over a `ShardPlan`; subclasses implement `_iter_batches`."""

    backend: str = ""

    def __init__(self, plan: ShardPlan, device: torch.device) -> None:
        self.plan = plan
        self.device = device
        self._epoch = 0
        self._skip = 0
        self._done = 0

    @property
    def num_samples(self) -> int:
        return self.plan.num_samples

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows.

        A new epoch starts at its first batch; setting the epoch already selected keeps the position (so
        `load_state_dict(state)` followed by the trainer's usual `set_epoch(state["epoch"])` resumes).
        """
        if int(epoch) != self._epoch:
            self._epoch, self._skip, self._done = int(epoch), 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches_done": self._done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if not 0 <= done <= len(self):
            raise ValueError(f"state.batches_done: must be in [0, {len(self)}] (got {done!r})")
        self._epoch, self._skip, self._done = epoch, done, done

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        skip, self._skip = self._skip, 0
        self._done = skip
        batches = self.plan.batches(self._epoch)[skip:]
        for images, labels in self._iter_batches(batches):
            self._done += 1
            yield images, labels

    def _iter_batches(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, name: str, device: torch.device) -> str:
    """The concrete backend for `backend` ("auto" resolved); ValueError for impossible combinations."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown backend {backend!r} (allowed: {', '.join(BACKENDS)})")
    if backend == "auto":
        if _is_cuda(device) and name in JPEG_DATASETS:
            if dali_available():
                return "dali-gpu"
            log.warning("backend 'auto': DALI is not installed (pip install nvidia-dali-cuda120); using 'pytorch'")
        return "pytorch"
    if backend.startswith("dali") and name not in JPEG_DATASETS:
        raise ValueError(f"backend: {backend!r} reads the JPEG datasets ({', '.join(JPEG_DATASETS)}) only; for "
                         f"{name!r} use one of 'auto', 'pytorch', 'synthetic'")
    if backend == "dali-gpu" and not _is_cuda(device):
        raise ValueError(f"backend: 'dali-gpu' needs a CUDA device (got device {str(device)!r}); use 'dali-cpu'")
    return backend


def build_loader(name: str, root: str | None, split: str, *, batch_size: int, backend: str = "auto",
                 rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu", seed: int = 0,
                 num_workers: int = 2, eval_transform: str | None = None, augment: bool | None = None) -> Loader:
    """Build the loader of one split of one dataset for one rank (see the module docstring).

    `split="train"` shuffles per (seed, epoch) and gives every rank the same number of batches; `"val"`
    reads disjoint contiguous shards without padding. `num_workers` is the DataLoader worker count for
    `pytorch` and the thread count (at least 1) for `dali-*`. `eval_transform` (val only) is one of
    `EVAL_TRANSFORMS`. `augment` (train only) turns the train augmentation on or off; None keeps the
    dataset's default (`dataset_info(name).augment`, the papers' recipes; see transforms.py).
    """
    check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r} (allowed: {', '.join(SPLITS)})")
    check_eval_transform(eval_transform, split)
    if augment is not None and not isinstance(augment, bool):
        raise ValueError(f"augment: must be True, False or None (got {augment!r})")
    if augment and split != "train":
        raise ValueError(f"augment: True applies to split 'train' only (got split {split!r})")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive int (got {batch_size!r})")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers: must be an int >= 0 (got {num_workers!r})")
    dev = torch.device(device)
    resolved = resolve_backend(backend, name, dev)
    train = split == "train"
    if resolved == "synthetic":
        from .synthetic import SyntheticLoader

        return SyntheticLoader(name, train, batch_size=batch_size, rank=rank, world_size=world_size, device=dev,
                               seed=seed)
    data = load_split(name, root, split)
    plan = ShardPlan(len(data), batch_size, rank=rank, world_size=world_size, seed=seed, shuffle=train)
    info = dataset_info(name)
    if resolved == "pytorch":
        from .torch_loader import TorchLoader

        return TorchLoader(name, data, plan, train=train, device=dev, num_workers=num_workers, seed=seed,
                           eval_transform=eval_transform, mean=info.mean, std=info.std, augment=augment)
    from .dali import DaliLoader

    return DaliLoader(name, data, plan, train=train, device=dev, num_threads=max(1, num_workers), seed=seed,
                      eval_transform=eval_transform, mean=info.mean, std=info.std, augment=augment)
