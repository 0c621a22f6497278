"""Reader of cluttered MNIST (Jaderberg et al. 2015): 60x60 grey images of one MNIST digit on clutter.

The dataset is distributed as one NumPy `.npz` in one of two spellings, both read here (the root is the
folder holding the file, or the file itself):
- `mnist_cluttered_60.npz` (the spatial-transformer recipes' file): `X_train` (50000), `X_valid` (10000),
  `X_test` (10000), each row 3600 float32 values in [0, 1] (a flattened 60x60 image, or already (N, 60, 60)),
  and `y_train`/`y_valid`/`y_test` int labels 0-9, of shape (N,) or (N, 1).
- `mnist_cluttered_60x60_6distortions.npz` (the file the ACONV authors' code loads): the same arrays under
  lower-case keys `x_*`, with one-hot `y_*` of shape (N, 10).

Splits: `train` is `X_train` followed by `X_valid` (60,000 images) and `val` is `X_test` (10,000). The ACONV
paper describes its datasets as 60,000 training and 10,000 test images used as validation, and its released
code (`keras_data.py`, 'mnist-clut') stacks the train and valid arrays for training and validates on test;
we follow the code so the published figures are validation accuracies on the same 10,000 images.

Images are stored as uint8 (round(255 x value)), like every other array dataset: 216 MB for the train split
instead of 864 MB of float32, at a quantisation step of 1/255 (the normalisation constants keep the [0, 1]
scale, see pipelines/datasets.py). The file holds only numeric arrays: it is read with `allow_pickle=False`.
"""

from __future__ import annotations

import os

import numpy as np

from .arrays import ArraySplit

__all__ = ["CLUTTERED_FILES", "find_cluttered_file", "read_cluttered"]

CLUTTERED_FILES = ("mnist_cluttered_60.npz", "mnist_cluttered_60x60_6distortions.npz")
SIDE = 60
_PARTS = {"train": ("train", "valid"), "val": ("test",)}


def find_cluttered_file(root: str) -> str:
    """The npz under `root` (a folder holding one of CLUTTERED_FILES, or such a file itself)."""
    if os.path.isfile(root) and os.path.basename(root) in CLUTTERED_FILES:
        return root
    for name in CLUTTERED_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    raise ValueError(f"root: {root!r} is not a mnist-cluttered root (expected {' or '.join(CLUTTERED_FILES)} "
                     f"(numpy npz with X_train, y_train, X_valid, y_valid, X_test, y_test) in <root>, or that file)")


def _key(keys: list[str], name: str, path: str) -> str:
    for k in (name, name.lower()):
        if k in keys:
            return k
    raise ValueError(f"root: {path!r} has no array {name!r} (has {', '.join(sorted(keys))}; expected X_train, "
                     f"y_train, X_valid, y_valid, X_test, y_test)")


def _images(x: np.ndarray, path: str, key: str) -> np.ndarray:
    if x.ndim < 2 or x[0].size != SIDE * SIDE:
        raise ValueError(f"root: {path!r}: {key} has shape {x.shape}; expected rows of {SIDE}x{SIDE} = "
                         f"{SIDE * SIDE} values")
    if x.dtype == np.uint8:
        return x.reshape(len(x), SIDE, SIDE, 1)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"root: {path!r}: {key} values span [{lo:g}, {hi:g}]; expected floats in [0, 1]")
    return np.rint(x.reshape(len(x), SIDE, SIDE, 1) * 255.0).astype(np.uint8)


def _labels(y: np.ndarray, n: int, path: str, key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 10:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"root: {path!r}: {key} has shape {y.shape}; expected ({n},), ({n}, 1) or one-hot "
                         f"({n}, 10)")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"root: {path!r}: {key} holds labels outside 0-9 ({y.min()}..{y.max()})")
    return y


def read_cluttered(root: str, split: str) -> ArraySplit:
    path = find_cluttered_file(root)
    images, labels = [], []
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        for part in _PARTS[split]:
            xk, yk = _key(keys, f"X_{part}", path), _key(keys, f"y_{part}", path)
            x = _images(data[xk], path, xk)  # converted per array: the float32 copies never coexist
            images.append(x)
            labels.append(_labels(data[yk], len(x), path, yk))
    x = images[0] if len(images) == 1 else np.concatenate(images)
    return ArraySplit(np.ascontiguousarray(x), np.concatenate(labels), tuple(str(i) for i in range(10)))
