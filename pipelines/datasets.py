"""The dataset registry: one `DatasetEntry` per dataset, everything known about it in one place.

An entry names its geometry (classes, channels, the size the loaders yield), its normalisation, the published
split sizes (the epoch length of the `synthetic` backend), whether its train split is augmented by default
(the papers' recipes), where a machine may already hold it, and the two reader functions that check and read
its files (`pipelines.readers`). `dataset_info`, `check_root` and `load_split` dispatch through the entry;
`register_dataset` adds one, and every name list (`DATASETS`, the sweep schema's allowed values) follows.

Constants. Means and standard deviations are per channel on the [0, 1] scale: the torchvision backend
normalises uint8 batches with them on the device; the DALI graph scales them by 255 for
`crop_mirror_normalize`. ImageNet's values are the ones torchvision's reference recipes use (Tiny-ImageNet
shares them); CIFAR's are the training-set statistics; MNIST/Fashion-MNIST's the usual single-channel values.
The `digits` values are the statistics of our own train split (8x8 digits upscaled to 32x32, see
`readers.arrays.load_digits`); a test recomputes them from the data. The ACONV datasets: the paper feeds
MNIST-cluttered unnormalised (mean 0, std 1 here) and centres LFW-Faces by the training mean image; per-channel
constants cannot express a mean image and we hold no copy of LFW to measure its statistics, so LFW-Faces is
scaled to [-1, 1] (0.5, 0.5). Both networks put batch normalisation right after the first conv, which absorbs
the input's affine scale (only the zero padding's value relative to the image differs).

JPEG datasets (imagenet, tiny-imagenet) are read as lists of files and decoded per batch; the others are read
whole into memory (LFW-Faces decoded once from its JPEGs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Union, overload

from .readers import arrays, cluttered, folders, lfw

__all__ = ["DATASETS", "SPLITS", "DatasetEntry", "DatasetInfo", "register_dataset", "dataset_entry", "dataset_info",
           "check_root", "check_name", "default_root", "load_split", "Split"]

SPLITS = ("train", "val")

Split = Union[folders.FileSplit, arrays.ArraySplit]


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and normalisation of what the loaders yield (no disk access needed)."""

    num_classes: int
    image_size: int  # the side of square images; the height otherwise
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_shape: tuple[int, int]  # (height, width) of what the loaders yield
    augment: bool  # whether the train split is augmented by default
    nominal_sizes: tuple[int, int] = (0, 0)  # (train, val) images of the published dataset


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: what `DatasetInfo` says, plus how its files are found and read."""

    name: str
    info: DatasetInfo
    check: Callable[[str], object]  # root -> raises ValueError naming the expected layout
    load: Callable[[str, str], Split]  # (root, split) -> the split's files or arrays
    jpeg: bool = False  # decoded per batch (the DALI backends serve these)
    val_resize: int | None = None  # JPEG datasets: shorter side before the validation centre crop
    needs_root: bool = True
    default_root: tuple[str, str] | None = None  # (environment variable, path) where a machine may hold it


_REGISTRY: dict[str, DatasetEntry] = {}


class _Names(Sequence[str]):
    """The registered names, read live: a dataset registered after import is known everywhere at once."""

    def __init__(self, predicate: Callable[[DatasetEntry], bool] = lambda entry: True) -> None:
        self._predicate = predicate

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, entry in _REGISTRY.items() if self._predicate(entry))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


DATASETS: Sequence[str] = _Names()


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset (a name already taken is an error: entries are never replaced behind a user's back)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"name: dataset {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown dataset {name!r} (allowed: {', '.join(DATASETS)})")


def dataset_entry(name: str) -> DatasetEntry:
    check_name(name)
    return _REGISTRY[name]


def dataset_info(name: str) -> DatasetInfo:
    """Shape and normalisation of what the loaders yield for `name` (no disk access)."""
    return dataset_entry(name).info


def default_root(name: str, root: str | None) -> str | None:
    """`root`, or for a dataset a machine may already hold (`DatasetEntry.default_root`) its variable or path."""
    entry = dataset_entry(name)
    if (root is None or str(root) == "") and entry.default_root is not None:
        variable, path = entry.default_root
        return os.environ.get(variable) or path
    return root


def check_root(name: str, root: str | None) -> None:
    """Raise ValueError naming the expected layout when `root` does not hold `name` (digits ignores root).

    Cheap: looks at folders and file names only, never decodes an image.
    """
    entry = dataset_entry(name)
    if not entry.needs_root:
        return
    root = default_root(name, root)
    if root is None or str(root) == "":
        no_root = ", ".join(n for n, e in _REGISTRY.items() if not e.needs_root)
        raise ValueError(f"root: dataset {name!r} needs a root folder (got {root!r}; only {no_root!r} needs none)")
    entry.check(str(root))


def load_split(name: str, root: str | None, split: str) -> Split:
    """Read the file list (JPEG datasets) or the arrays (the others) of one split."""
    entry = dataset_entry(name)
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r} (allowed: {', '.join(SPLITS)})")
    root = default_root(name, root)
    check_root(name, root)
    return entry.load("" if root is None else str(root), split)


# -- the papers' datasets ------------------------------------------------------------------------------------
_IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _info(classes: int, side: int, channels: int, mean_std: tuple[tuple[float, ...], tuple[float, ...]],
          sizes: tuple[int, int], augment: bool, shape: tuple[int, int] | None = None) -> DatasetInfo:
    return DatasetInfo(classes, side, channels, mean_std[0], mean_std[1], shape or (side, side), augment, sizes)


def _idx(name: str) -> tuple[Callable[[str], object], Callable[[str, str], Split]]:
    return (lambda root: arrays.find_idx_dir(name, root)), (lambda root, split: arrays.read_idx_dataset(name, root, split))


def _cifar(name: str) -> tuple[Callable[[str], object], Callable[[str, str], Split]]:
    return (lambda root: arrays.find_cifar_dir(name, root)), (lambda root, split: arrays.read_cifar(name, root, split))


# ImageNet: 256 -> 224 validation crop (GMConv: single 224 crop). Tiny-ImageNet follows the CoC paper (Fig. 7):
# its 64x64 images are resized to 128x128, and validated as a plain upscale (128 -> 128).
register_dataset(DatasetEntry("imagenet", _info(1000, 224, 3, _IMAGENET_MEAN_STD, (1_281_167, 50_000), True),
                              folders.check_imagefolder, folders.read_imagefolder, jpeg=True, val_resize=256))
register_dataset(DatasetEntry("tiny-imagenet", _info(200, 128, 3, _IMAGENET_MEAN_STD, (100_000, 10_000), True),
                              folders.check_tiny_imagenet, folders.read_tiny_imagenet, jpeg=True, val_resize=128))
register_dataset(DatasetEntry("cifar10", _info(10, 32, 3, ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                                               (50_000, 10_000), True), *_cifar("cifar10")))
register_dataset(DatasetEntry("cifar100", _info(100, 32, 3, ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
                                                (50_000, 10_000), True), *_cifar("cifar100")))
# MNIST-like digits are never flipped: no augmentation by default.
register_dataset(DatasetEntry("mnist", _info(10, 28, 1, ((0.1307,), (0.3081,)), (60_000, 10_000), False),
                              *_idx("mnist")))
# Debian's package dataset-fashion-mnist installs the original files (`pipelines/install_fashion_mnist.sh`).
register_dataset(DatasetEntry("fashion-mnist", _info(10, 28, 1, ((0.2860,), (0.3530,)), (60_000, 10_000), False),
                              *_idx("fashion-mnist"),
                              default_root=("FASHION_MNIST_ROOT", "/usr/share/datasets/fashion-mnist")))
register_dataset(DatasetEntry("digits", _info(10, 32, 3, ((0.3052,) * 3, (0.3241,) * 3), (1_437, 360), False),
                              lambda root: None, lambda root, split: arrays.load_digits(split), needs_root=False))
# train + valid files as train, test as val (see readers/cluttered.py)
register_dataset(DatasetEntry("mnist-cluttered", _info(10, 60, 1, ((0.0,), (1.0,)), (60_000, 10_000), False),
                              cluttered.find_cluttered_file, cluttered.read_cluttered))
# The ACONV paper's fetch_lfw_people(resize=0.4) of scikit-learn's default face window: 50x37 crops, augmented
# in both of its networks (Table 1).
register_dataset(DatasetEntry("lfw-faces", _info(62, 50, 1, ((0.5,), (0.5,)), (2_267, 756), True, shape=(50, 37)),
                              lfw.find_lfw_dir, lfw.read_lfw))
