"""The dataset registry: names, `dataset_info`, `check_root` and `load_split` (dispatch to the readers).

JPEG datasets (imagenet, tiny-imagenet) are read as lists of files (`folders.py`) and decoded per batch;
array datasets (cifar10, cifar100, mnist, fashion-mnist, digits; `arrays.py`), MNIST-cluttered
(`cluttered.py`) and LFW-Faces (`lfw.py`, decoded once from its JPEGs) are read whole into memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

from . import arrays, cluttered, folders, lfw
from .constants import DEFAULT_AUGMENT, IMAGE_SHAPE, IMAGE_SIZE, IN_CHANNELS, MEAN_STD, NUM_CLASSES

__all__ = ["DATASETS", "JPEG_DATASETS", "ARRAY_DATASETS", "SPLITS", "DEFAULT_ROOTS", "DatasetInfo", "dataset_info",
           "check_root", "check_name", "default_root", "load_split", "Split"]

DATASETS = ("imagenet", "tiny-imagenet", "cifar10", "cifar100", "mnist", "fashion-mnist", "digits", "mnist-cluttered",
            "lfw-faces")
JPEG_DATASETS = ("imagenet", "tiny-imagenet")
ARRAY_DATASETS = ("cifar10", "cifar100", "mnist", "fashion-mnist", "digits", "mnist-cluttered", "lfw-faces")
SPLITS = ("train", "val")

Split = Union[folders.FileSplit, arrays.ArraySplit]

# Datasets a machine can have without a download: where to read them when no root is given (the environment
# variable first). Debian's package dataset-fashion-mnist installs the original Fashion-MNIST files there
# (`pipelines/install_fashion_mnist.sh`).
DEFAULT_ROOTS = {"fashion-mnist": ("FASHION_MNIST_ROOT", "/usr/share/datasets/fashion-mnist")}


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    image_size: int  # the side of square images; the height otherwise
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_shape: tuple[int, int]  # (height, width) of what the loaders yield
    augment: bool  # whether the train split is augmented by default


def check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"name: unknown dataset {name!r} (allowed: {', '.join(DATASETS)})")


def dataset_info(name: str) -> DatasetInfo:
    """Shape and normalisation of what the loaders yield for `name` (no disk access)."""
    check_name(name)
    mean, std = MEAN_STD[name]
    return DatasetInfo(NUM_CLASSES[name], IMAGE_SIZE[name], IN_CHANNELS[name], mean, std, IMAGE_SHAPE[name],
                       DEFAULT_AUGMENT[name])


def default_root(name: str, root: str | None) -> str | None:
    """`root`, or for a dataset with a default location (`DEFAULT_ROOTS`) its variable or path when unset."""
    if (root is None or str(root) == "") and name in DEFAULT_ROOTS:
        variable, path = DEFAULT_ROOTS[name]
        return os.environ.get(variable) or path
    return root


def check_root(name: str, root: str | None) -> None:
    """Raise ValueError naming the expected layout when `root` does not hold `name` (digits ignores root).

    Cheap: looks at folders and file names only, never decodes an image.
    """
    check_name(name)
    if name == "digits":
        return
    root = default_root(name, root)
    if root is None or str(root) == "":
        raise ValueError(f"root: dataset {name!r} needs a root folder (got {root!r}; only 'digits' needs none)")
    root = str(root)
    if name == "imagenet":
        folders.check_imagefolder(root)
    elif name == "tiny-imagenet":
        folders.check_tiny_imagenet(root)
    elif name in arrays.CIFAR_FILES:
        arrays.find_cifar_dir(name, root)
    elif name == "mnist-cluttered":
        cluttered.find_cluttered_file(root)
    elif name == "lfw-faces":
        lfw.find_lfw_dir(root)
    else:
        arrays.find_idx_dir(name, root)


def load_split(name: str, root: str | None, split: str) -> Split:
    """Read the file list (JPEG datasets) or the arrays (the others) of one split."""
    check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r} (allowed: {', '.join(SPLITS)})")
    root = default_root(name, root)
    check_root(name, root)
    if name == "digits":
        return arrays.load_digits(split)
    root = str(root)
    if name == "imagenet":
        return folders.read_imagefolder(root, split)
    if name == "tiny-imagenet":
        return folders.read_tiny_imagenet(root, split)
    if name in arrays.CIFAR_FILES:
        return arrays.read_cifar(name, root, split)
    if name == "mnist-cluttered":
        return cluttered.read_cluttered(root, split)
    if name == "lfw-faces":
        return lfw.read_lfw(root, split)
    return arrays.read_idx_dataset(name, root, split)
