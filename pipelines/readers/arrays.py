"""Readers for the array datasets: CIFAR-10/100 (python pickle batches), MNIST/Fashion-MNIST (IDX), digits.

Each returns an `ArraySplit`: uint8 images (N, H, W, C), int64 labels and the class names, held in memory
(CIFAR's 50k images are 150 MB; MNIST's 47 MB).

Layouts (the root may be the folder holding the files or, like torchvision's, its parent):
- CIFAR-10: `data_batch_1..5`, `test_batch`, `batches.meta` in `<root>` or `<root>/cifar-10-batches-py`.
  Each batch is a pickled dict with b"data" (N x 3072 uint8, the R, G, B planes of 32x32 row-major) and
  b"labels". The files are Python pickles: read only datasets from a source you trust.
- CIFAR-100: `train`, `test`, `meta` in `<root>` or `<root>/cifar-100-python`, labels b"fine_labels".
- MNIST / Fashion-MNIST: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
  `t10k-labels-idx1-ubyte`, each optionally `.gz`, in `<root>`, `<root>/raw`, or `<root>/MNIST/raw`
  (`<root>/FashionMNIST/raw`).
- digits: scikit-learn's bundled 1,797 8x8 digits (values 0..16), scaled to 0..255, upscaled bilinearly to
  32x32 and repeated to 3 channels so the CIFAR ResNets run unchanged. Split: every fifth sample (index
  % 5 == 0) is validation (360), the rest train (1,437): fixed, no RNG involved.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["ArraySplit", "read_cifar", "read_idx_dataset", "read_idx", "load_digits", "find_cifar_dir",
           "find_idx_dir", "CIFAR_FILES", "IDX_FILES"]

CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                b"labels", b"label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names"),
}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_SUBDIR = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@dataclass(frozen=True, eq=False)
class ArraySplit:
    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int64, (N,)
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def find_cifar_dir(name: str, root: str) -> str:
    sub, train, test, meta, _, _ = CIFAR_FILES[name]
    for d in (root, os.path.join(root, sub)):
        if all(os.path.isfile(os.path.join(d, f)) for f in [*train, *test, meta]):
            return d
    raise ValueError(f"root: {root!r} is not a {name} root (expected {', '.join([*train, *test, meta])} "
                     f"(python pickle batches) in <root> or <root>/{sub})")


def _unpickle(path: str) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def read_cifar(name: str, root: str, split: str) -> ArraySplit:
    d = find_cifar_dir(name, root)
    _, train, test, meta, label_key, names_key = CIFAR_FILES[name]
    images, labels = [], []
    for f in train if split == "train" else test:
        batch = _unpickle(os.path.join(d, f))
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(os.path.join(d, meta))[names_key])
    x = np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1))
    return ArraySplit(x, np.concatenate(labels), classes)


def read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (gzipped or not, sniffed from its magic bytes) into a uint8 array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"root: {path!r} is not an unsigned-byte IDX file (magic {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).copy()  # writable, like every other reader
    if data.size != int(np.prod(dims)):
        raise ValueError(f"root: {path!r} holds {data.size} bytes of data for dims {dims}: truncated IDX file")
    return data.reshape(dims)


def _idx_path(d: str, base: str) -> str | None:
    for f in (base, base + ".gz"):
        if os.path.isfile(os.path.join(d, f)):
            return os.path.join(d, f)
    return None


def find_idx_dir(name: str, root: str) -> str:
    names = [f for pair in IDX_FILES.values() for f in pair]
    for d in (root, os.path.join(root, "raw"), os.path.join(root, IDX_SUBDIR[name], "raw")):
        if all(_idx_path(d, f) for f in names):
            return d
    raise ValueError(f"root: {root!r} is not a {name} root (expected {', '.join(names)} (IDX, optionally .gz) in "
                     f"<root>, <root>/raw or <root>/{IDX_SUBDIR[name]}/raw)")


def read_idx_dataset(name: str, root: str, split: str) -> ArraySplit:
    d = find_idx_dir(name, root)
    img_file, lbl_file = IDX_FILES[split]
    images = read_idx(_idx_path(d, img_file))
    labels = read_idx(_idx_path(d, lbl_file)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"root: {d!r}: {split} images {images.shape} and labels {labels.shape} do not match")
    classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(i) for i in range(10))
    return ArraySplit(np.ascontiguousarray(images[..., None]), labels, classes)


def load_digits(split: str) -> ArraySplit:
    import importlib.util

    import torch
    import torch.nn.functional as F

    # scikit-learn's own file, read without importing scikit-learn (~1-2 s per trial, mostly scipy.stats):
    # 1797 rows of 64 pixel values (0..16) and the label, what sklearn.datasets.load_digits parses
    sklearn_dir = importlib.util.find_spec("sklearn").submodule_search_locations[0]
    table = np.loadtxt(os.path.join(sklearn_dir, "datasets", "data", "digits.csv.gz"), delimiter=",")
    images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    x = torch.from_numpy(images.astype(np.float32) * (255.0 / 16.0))[:, None]  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    is_val = np.arange(len(x)) % 5 == 0
    keep = is_val if split == "val" else ~is_val
    return ArraySplit(np.ascontiguousarray(x[keep]), target[keep],
                      tuple(str(i) for i in range(10)))
