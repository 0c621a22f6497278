"""`build_loader`: the loader of one split of one dataset for one rank, on the backend asked for.

Backends (`pipelines.backends`): `pytorch` (torchvision DataLoader), `dali-cpu` / `dali-gpu` (one DALI graph,
JPEG datasets only), `synthetic` and `auto`: `dali-gpu` when `device` is CUDA, the dataset is a JPEG one and
DALI imports; `pytorch` otherwise. Every backend returns a `backends.base.Loader`; its `backend` attribute
names the one `auto` chose.
"""

from __future__ import annotations

import logging
import torch

from .backends import BACKENDS
from .backends.base import Loader
from .datasets import DATASETS, SPLITS, check_name, dataset_entry, dataset_info, load_split
from .sharding import ShardPlan
from .transforms import check_eval_transform

__all__ = ["BACKENDS", "Loader", "build_loader", "resolve_backend"]

log = logging.getLogger(__name__)



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
    jpeg = dataset_entry(name).jpeg
    if backend == "auto":
        if _is_cuda(device) and jpeg:
            if dali_available():
                return "dali-gpu"
            log.warning("backend 'auto': DALI is not installed (pip install nvidia-dali-cuda120); using 'pytorch'")
        return "pytorch"
    if backend.startswith("dali") and not jpeg:
        jpeg_names = ", ".join(n for n in DATASETS if dataset_entry(n).jpeg)
        raise ValueError(f"backend: {backend!r} reads the JPEG datasets ({jpeg_names}) only; for "
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
        from .backends.synthetic import SyntheticLoader

        return SyntheticLoader(name, train, batch_size=batch_size, rank=rank, world_size=world_size, device=dev,
                               seed=seed)
    data = load_split(name, root, split)
    plan = ShardPlan(len(data), batch_size, rank=rank, world_size=world_size, seed=seed, shuffle=train)
    info = dataset_info(name)
    if resolved == "pytorch":
        from .backends.pytorch import TorchLoader

        return TorchLoader(name, data, plan, train=train, device=dev, num_workers=num_workers, seed=seed,
                           eval_transform=eval_transform, mean=info.mean, std=info.std, augment=augment)
    from .backends.dali import DaliLoader

    return DaliLoader(name, data, plan, train=train, device=dev, num_threads=max(1, num_workers), seed=seed,
                      eval_transform=eval_transform, mean=info.mean, std=info.std, augment=augment)
