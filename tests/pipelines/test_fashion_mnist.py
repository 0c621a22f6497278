"""The real Fashion-MNIST (70,000 images of Debian's dataset-fashion-mnist) through the readers and the
loaders the trainer uses: counts, label histogram, the published normalisation statistics, and pixels
checked against the raw IDX bytes parsed here independently."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from pipelines import build_loader, dataset_info
from pipelines.datasets import load_split

MEAN, STD = dataset_info("fashion-mnist").mean[0], dataset_info("fashion-mnist").std[0]


def _raw(root: str, base: str) -> np.ndarray:
    """The IDX file's payload as the format defines it: big-endian dims after a 4-byte magic, then bytes."""
    with gzip.open(os.path.join(root, base + ".gz"), "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


@pytest.fixture(scope="module")
def raw(fashion_mnist_root):
    return {split: (_raw(fashion_mnist_root, f"{prefix}-images-idx3-ubyte"),
                    _raw(fashion_mnist_root, f"{prefix}-labels-idx1-ubyte"))
            for split, prefix in (("train", "train"), ("val", "t10k"))}


def test_array_reader_equals_the_raw_bytes(fashion_mnist_root, raw):
    for split, n in (("train", 60_000), ("val", 10_000)):
        data = load_split("fashion-mnist", None, split)  # no root: the package's path
        images, labels = raw[split]
        assert data.images.shape == (n, 28, 28, 1) and data.images.dtype == np.uint8
        assert np.array_equal(data.images[..., 0], images) and np.array_equal(data.labels, labels)
        assert np.bincount(data.labels, minlength=10).tolist() == [n // 10] * 10  # balanced, as published
    train = load_split("fashion-mnist", fashion_mnist_root, "train")
    # a few pixels by hand: the first image's centre row, and the last image's corner
    assert train.images[0, 14, :, 0].tolist() == raw["train"][0][0, 14].tolist()
    assert train.images[-1, 27, 27, 0] == raw["train"][0][-1, 27, 27]
    assert train.labels[:5].tolist() == [9, 0, 0, 3, 0]  # ankle boot, T-shirt, T-shirt, dress, T-shirt
    assert train.classes[9] == "Ankle boot"
    x = train.images.astype(np.float64) / 255.0
    assert x.mean() == pytest.approx(0.2860, abs=5e-5) and x.std() == pytest.approx(0.3530, abs=5e-5)


def test_loaders_yield_the_normalised_raw_pixels(raw):
    """Val through the trainer's loader, 1 process and 2-way sharded: every image once, in file order,
    equal to (raw / 255 - 0.2860) / 0.3530; train over one epoch: every image once, normalised to mean 0, std 1."""
    images, labels = raw["val"]
    expected = (torch.from_numpy(images.astype(np.float32)) / 255.0 - MEAN) / STD
    for world in (1, 2):
        xs, ys = [], []
        for rank in range(world):
            loader = build_loader("fashion-mnist", None, "val", batch_size=1000, backend="pytorch", rank=rank,
                                  world_size=world, num_workers=0)
            for x, y in loader:
                xs.append(x)
                ys.append(y)
        x, y = torch.cat(xs), torch.cat(ys)
        assert x.shape == (10_000, 1, 28, 28)
        assert torch.equal(y, torch.from_numpy(labels.astype(np.int64)))
        assert torch.allclose(x[:, 0], expected, atol=1e-5)

    train_images = raw["train"][0]
    seen, total, total_sq, count = [], 0.0, 0.0, 0
    for rank in range(2):
        loader = build_loader("fashion-mnist", None, "train", batch_size=500, backend="pytorch", rank=rank,
                              world_size=2, num_workers=0, augment=False)
        for x, y in loader:
            seen.append(y)
            total += x.double().sum().item()
            total_sq += x.double().square().sum().item()
            count += x.numel()
    assert torch.bincount(torch.cat(seen), minlength=10).tolist() == [6000] * 10  # 60,000 = 60 rounds of 2 x 500
    mean = total / count
    assert mean == pytest.approx(0.0, abs=2e-4)
    assert (total_sq / count - mean**2) ** 0.5 == pytest.approx(1.0, abs=2e-4)
    assert count == train_images.size
