"""Data pipelines for convsweep: the papers' datasets, read as users have them, behind one `build_loader`.

    from pipelines import build_loader, dataset_info, check_root, DATASETS, BACKENDS, EVAL_TRANSFORMS
    loader = build_loader("cifar10", "/data/cifar", "train", batch_size=128, rank=r, world_size=w,
                          device="cuda:0", seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels in loader:   # float32 NCHW normalised, int64, on the device
            ...

Modules: datasets (the registry: one entry per dataset with its constants and readers; `dataset_info`,
`check_root`, `register_dataset`), readers/ (on-disk formats), sharding (which indices each rank reads),
transforms (torchvision recipes, Table 4 evaluation transforms), loader (`build_loader`), backends/ (`Loader`
and the pytorch / dali / synthetic backends). This package imports nothing of convsweep's other packages.

Decisions: DALI serves the JPEG datasets (imagenet, tiny-imagenet); asking for `dali-*` on an array
dataset is a ValueError naming the backends that serve it (`auto` picks `pytorch` there, even on CUDA: the
arrays are in memory and their augmentation is cheap). An undecodable image fails the epoch with
`CorruptImageError` naming the file, on every backend. Resumption inside an epoch goes through
`Loader.state_dict()` / `load_state_dict()` on every backend.
"""

from importlib import import_module
from typing import Any

# numpy only: checking a sweep's dataset names and roots does not import torch
from .backends import BACKENDS
from .datasets import DATASETS, DatasetEntry, DatasetInfo, check_root, dataset_info, register_dataset
from .readers.folders import CorruptImageError

_LAZY = {"Loader": "backends.base", "build_loader": "loader", "EVAL_TRANSFORMS": "transforms"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # torch and the backends load on first use
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_loader", "dataset_info", "check_root", "register_dataset", "DATASETS", "BACKENDS", "EVAL_TRANSFORMS",
           "DatasetEntry", "DatasetInfo", "Loader", "CorruptImageError"]
