"""build_loader with the pytorch and synthetic backends: the Loader contract on every dataset."""

from __future__ import annotations

import collections
import os
import sys

import numpy as np
import pytest
import torch

from pipelines import BACKENDS, CorruptImageError, build_loader, dataset_info
from pipelines.datasets import load_split
from pipelines.loader import resolve_backend


def to_uint8(images: torch.Tensor, name: str) -> np.ndarray:
    """Undo the normalisation: the exact uint8 pixels the loader started from."""
    info = dataset_info(name)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(info.std).view(1, -1, 1, 1) * 255
    return (images * std + mean).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def roots(request, name):
    fixture = {"imagenet": "imagenet_root", "tiny-imagenet": "tiny_root", "cifar10": "cifar10_root",
               "cifar100": "cifar100_root", "mnist": "mnist_gz_root"}.get(name)
    return request.getfixturevalue(fixture)[0] if fixture else None


@pytest.mark.parametrize("name", ["imagenet", "tiny-imagenet", "cifar10", "cifar100", "mnist", "digits"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_shapes_dtypes_and_lengths(request, name, split):
    root = roots(request, name)
    info = dataset_info(name)
    loader = build_loader(name, root, split, batch_size=8, backend="pytorch", num_workers=0)
    assert loader.backend == "pytorch"
    batches = list(loader)
    assert len(batches) == len(loader) > 0
    assert sum(len(y) for _, y in batches) == loader.num_samples == len(load_split(name, root, split))
    for x, y in batches:
        assert x.shape[1:] == (info.in_channels, info.image_size, info.image_size) and x.shape[0] == len(y)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.device.type == "cpu"
        assert 0 <= int(y.min()) and int(y.max()) < info.num_classes
    x = torch.cat([b[0] for b in batches])
    assert abs(float(x.mean())) < 1.5 and 0.2 < float(x.std()) < 2.5  # normalised, not 0..255


@pytest.mark.parametrize("name", ["cifar10", "mnist", "digits"])
def test_val_pixels_are_the_dataset_pixels_normalised(request, name):
    root = roots(request, name)
    data = load_split(name, root, "val")
    loader = build_loader(name, root, "val", batch_size=7, backend="pytorch", num_workers=0)
    images = np.concatenate([to_uint8(x, name) for x, _ in loader])
    labels = np.concatenate([y.numpy() for _, y in loader])
    np.testing.assert_array_equal(images, data.images)
    np.testing.assert_array_equal(labels, data.labels)


@pytest.mark.parametrize("ws", [2, 3])
def test_sharded_train_epoch_covers_every_sample_once(ws):
    """digits has no train augmentation, so the pixels identify the samples each rank received."""
    data = load_split("digits", None, "train")
    want = collections.Counter(img.tobytes() + bytes([y]) for img, y in zip(data.images, data.labels))
    for epoch in (0, 1):
        got, lengths = collections.Counter(), set()
        for rank in range(ws):
            loader = build_loader("digits", None, "train", batch_size=64, backend="pytorch", rank=rank,
                                  world_size=ws, num_workers=0, seed=5)
            loader.set_epoch(epoch)
            batches = list(loader)
            lengths.add(len(batches))
            labels = torch.cat([y for _, y in batches])
            assert set(labels.tolist()) == set(range(10))  # every shard sees every class
            for x, y in batches:
                got.update(img.tobytes() + bytes([int(c)]) for img, c in zip(to_uint8(x, "digits"), y))
        assert len(lengths) == 1  # the same number of batches on every rank: DDP never waits
        assert got == want


def test_same_seed_same_order_new_epoch_new_order(imagenet_root):
    root = imagenet_root[0]

    def labels(seed, epoch, workers=0):
        loader = build_loader("imagenet", root, "train", batch_size=4, backend="pytorch", seed=seed,
                              num_workers=workers)
        loader.set_epoch(epoch)
        return [y.tolist() for _, y in loader]

    assert labels(0, 1) == labels(0, 1) == labels(0, 1, workers=2)
    assert labels(0, 1) != labels(0, 2)
    assert labels(0, 1) != labels(1, 1)


def test_state_dict_resumes_inside_an_epoch():
    full = build_loader("digits", None, "train", batch_size=100, backend="pytorch", num_workers=0, seed=3)
    full.set_epoch(2)
    reference = [y for _, y in full]
    first = build_loader("digits", None, "train", batch_size=100, backend="pytorch", num_workers=0, seed=3)
    first.set_epoch(2)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    assert state == {"epoch": 2, "batches_done": 3}
    resumed = build_loader("digits", None, "train", batch_size=100, backend="pytorch", num_workers=0, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the trainer's usual call keeps the loaded position
    rest = [y for _, y in resumed]
    assert len(rest) == len(reference) - 3
    assert all(torch.equal(a, b) for a, b in zip(rest, reference[3:]))
    assert resumed.state_dict() == {"epoch": 2, "batches_done": len(reference)}
    resumed.set_epoch(3)
    assert resumed.state_dict() == {"epoch": 3, "batches_done": 0}  # a checkpoint here replays nothing
    assert len(list(resumed)) == len(reference)  # the next epoch starts from its beginning
    with pytest.raises(ValueError, match="batches_done"):
        resumed.load_state_dict({"epoch": 0, "batches_done": 99})


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_jpeg_fails_naming_the_file(tmp_path, workers):
    import pipeline_fixtures as pf

    written = pf.write_imagefolder(str(tmp_path), classes=2, train_per_class=3, val_per_class=2, size=(64, 48))
    bad = written["val"][1][0]
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[: len(data) // 2])  # truncated mid-scan
    loader = build_loader("imagenet", str(tmp_path), "val", batch_size=2, backend="pytorch", num_workers=workers)
    with pytest.raises(CorruptImageError, match=os.path.basename(bad)):
        list(loader)


def test_synthetic_backend_needs_no_data():
    info = dataset_info("imagenet")
    loaders = [build_loader("imagenet", None, "train", batch_size=256, backend="synthetic", rank=r, world_size=2)
               for r in range(2)]
    assert loaders[0].backend == "synthetic" and len(loaders[0]) == len(loaders[1]) == 1_281_167 // 512 + 1
    x, y = next(iter(loaders[0]))
    assert x.shape == (256, 3, info.image_size, info.image_size) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.max()) < 1000
    val = build_loader("cifar10", None, "val", batch_size=3000, backend="synthetic", rank=1, world_size=3)
    assert val.num_samples == 3333 and [len(b) for b, _ in val] == [3000, 333]


def test_backend_resolution_and_errors(cifar10_root):
    assert BACKENDS == ("auto", "dali-gpu", "dali-cpu", "pytorch", "synthetic")
    assert build_loader("digits", None, "val", batch_size=8, num_workers=0).backend == "pytorch"  # auto on CPU
    assert resolve_backend("auto", "imagenet", torch.device("cuda", 0)) == "dali-gpu"
    assert resolve_backend("auto", "cifar10", torch.device("cuda", 0)) == "pytorch"
    assert resolve_backend("auto", "imagenet", torch.device("cpu")) == "pytorch"
    root = cifar10_root[0]
    with pytest.raises(ValueError, match=r"backend: 'dali-cpu' reads the JPEG datasets .* use one of 'auto', "
                                         r"'pytorch', 'synthetic'"):
        build_loader("cifar10", root, "train", batch_size=8, backend="dali-cpu")
    with pytest.raises(ValueError, match="'dali-gpu' needs a CUDA device"):
        build_loader("imagenet", "/nonexistent", "train", batch_size=8, backend="dali-gpu")
    with pytest.raises(ValueError, match=r"backend: unknown backend 'tf' \(allowed: auto, dali-gpu"):
        build_loader("cifar10", root, "train", batch_size=8, backend="tf")
    with pytest.raises(ValueError, match="batch_size"):
        build_loader("cifar10", root, "train", batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        build_loader("cifar10", root, "train", batch_size=8, num_workers=-1)
    with pytest.raises(ValueError, match="is not a cifar100 root"):
        build_loader("cifar100", root, "train", batch_size=8)


def test_missing_dali_names_the_package(monkeypatch, imagenet_root):
    for mod in [m for m in sys.modules if m == "nvidia.dali" or m.startswith("nvidia.dali.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what Python sees when it is not installed
    with pytest.raises(ImportError, match="pip install nvidia-dali-cuda120"):
        build_loader("imagenet", imagenet_root[0], "val", batch_size=4, backend="dali-cpu")
    assert resolve_backend("auto", "imagenet", torch.device("cuda", 0)) == "pytorch"  # auto falls back


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_eval_transforms_on_array_datasets(request, name):
    root = roots(request, name)

    def val(transform):
        return torch.cat([x for x, _ in build_loader(name, root, "val", batch_size=16, backend="pytorch",
                                                     num_workers=0, eval_transform=transform)])

    plain = val(None)
    assert torch.equal(val("rot0"), plain)
    assert torch.equal(val("rot90"), torch.rot90(plain, 1, dims=(-2, -1)))  # exact: normalisation is per channel
    assert torch.equal(val("flip_ud"), plain.flip(-2))
    assert not torch.equal(val("rot45"), plain)
