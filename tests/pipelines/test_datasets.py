"""The on-disk readers against files written in the real formats, `check_root`, `dataset_info`."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import pipeline_fixtures as pf
from pipelines import DATASETS, check_root, dataset_info
from pipelines.datasets import dataset_entry, load_split
from pipelines.readers.arrays import load_digits, read_idx


def test_dataset_info_for_every_dataset():
    expected = {"imagenet": (1000, 224, 3), "tiny-imagenet": (200, 128, 3), "cifar10": (10, 32, 3),
                "cifar100": (100, 32, 3), "mnist": (10, 28, 1), "fashion-mnist": (10, 28, 1), "digits": (10, 32, 3),
                "mnist-cluttered": (10, 60, 1), "lfw-faces": (62, 50, 1)}
    assert set(expected) == set(DATASETS)
    for name, (classes, size, channels) in expected.items():
        info = dataset_info(name)
        assert (info.num_classes, info.image_size, info.in_channels) == (classes, size, channels)
        assert len(info.mean) == len(info.std) == channels
        assert info.image_shape == ((50, 37) if name == "lfw-faces" else (size, size))
        assert info.augment == (name in ("imagenet", "tiny-imagenet", "cifar10", "cifar100", "lfw-faces"))


def test_unknown_dataset_and_split_are_one_line_errors():
    with pytest.raises(ValueError, match=r"name: unknown dataset 'svhn' \(allowed: imagenet, tiny-imagenet"):
        dataset_info("svhn")
    with pytest.raises(ValueError, match=r"split: unknown split 'test' \(allowed: train, val\)"):
        load_split("digits", None, "test")


@pytest.mark.parametrize("name, layout", [
    ("imagenet", "ImageFolder"), ("tiny-imagenet", "val_annotations.txt"), ("cifar10", "data_batch_1"),
    ("cifar100", "cifar-100-python"), ("mnist", "train-images-idx3-ubyte"), ("fashion-mnist", "FashionMNIST/raw")])
def test_check_root_names_the_expected_layout(tmp_path, monkeypatch, name, layout):
    with pytest.raises(ValueError, match=layout) as err:
        check_root(name, str(tmp_path / "missing"))
    assert "\n" not in str(err.value)
    (tmp_path / "train" / "x").mkdir(parents=True)  # a half-made tree is still wrong
    with pytest.raises(ValueError, match=layout):
        check_root(name, str(tmp_path))
    if dataset_entry(name).default_root:  # no root: its variable, else its package's path, is where it is looked for
        monkeypatch.setenv(dataset_entry(name).default_root[0], str(tmp_path / "elsewhere"))
        with pytest.raises(ValueError, match=f"{tmp_path / 'elsewhere'}.*{layout}"):
            check_root(name, None)
    else:
        with pytest.raises(ValueError, match="needs a root folder"):
            check_root(name, None)
    check_root("digits", None)  # digits needs no root


def test_imagefolder_labels_follow_sorted_train_folders(imagenet_root):
    root, written = imagenet_root
    check_root("imagenet", root)
    for split in ("train", "val"):
        data = load_split("imagenet", root, split)
        assert data.classes == ("n00000000", "n00000001", "n00000002")
        assert sorted(zip(data.paths, data.labels.tolist())) == sorted(written[split])
        assert data.labels.dtype == np.int64


def test_imagefolder_val_class_missing_from_train_is_an_error(tmp_path):
    pf.write_imagefolder(str(tmp_path), classes=2, train_per_class=1, val_per_class=1, size=(32, 32))
    os.rename(tmp_path / "val" / "n00000001", tmp_path / "val" / "n99999999")
    with pytest.raises(ValueError, match="'n99999999'.*no counterpart"):
        load_split("imagenet", str(tmp_path), "val")


def test_tiny_imagenet_native_layout(tiny_root):
    root, truth = tiny_root
    check_root("tiny-imagenet", root)
    train = load_split("tiny-imagenet", root, "train")
    assert train.classes == ("n01443537", "n01629819", "n01641577")
    assert len(train) == 18 and np.bincount(train.labels).tolist() == [6, 6, 6]
    assert all(f"/train/{train.classes[y]}/images/" in p for p, y in zip(train.paths, train.labels))
    val = load_split("tiny-imagenet", root, "val")
    assert len(val) == len(truth) == 9
    for path, label in zip(val.paths, val.labels):
        assert val.classes[label] == truth[os.path.basename(path)]


def test_cifar10_pickle_batches_round_trip(cifar10_root):
    root, written = cifar10_root
    for r in (root, os.path.join(root, "cifar-10-batches-py")):  # parent or the folder itself
        check_root("cifar10", r)
    for split in ("train", "val"):
        data = load_split("cifar10", root, split)
        np.testing.assert_array_equal(data.images, written[split][0])
        np.testing.assert_array_equal(data.labels, written[split][1])
    assert data.images.shape[1:] == (32, 32, 3) and data.classes[0] == "airplane"
    assert len(load_split("cifar10", root, "train")) == 50


def test_cifar100_fine_labels(cifar100_root):
    root, written = cifar100_root
    data = load_split("cifar100", root, "train")
    np.testing.assert_array_equal(data.images, written["train"][0])
    np.testing.assert_array_equal(data.labels, written["train"][1])
    assert len(data.classes) == 100 and data.labels.max() == 99


def test_mnist_idx_gz_and_raw(mnist_root):
    root, written = mnist_root
    for split in ("train", "val"):
        data = load_split("mnist", root, split)
        np.testing.assert_array_equal(data.images[..., 0], written[split][0])
        np.testing.assert_array_equal(data.labels, written[split][1])
        assert data.images.shape[1:] == (28, 28, 1)


def test_fashion_mnist_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    written = pf.write_mnist(str(raw), gz=True, n_train=20, n_test=10)
    data = load_split("fashion-mnist", str(tmp_path), "val")
    np.testing.assert_array_equal(data.labels, written["val"][1])
    assert data.classes[9] == "Ankle boot"


def test_truncated_idx_is_an_error(tmp_path):
    pf.write_idx(str(tmp_path / "x"), np.zeros((4, 5, 5), np.uint8), gz=False)
    assert read_idx(str(tmp_path / "x")).shape == (4, 5, 5)
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated IDX"):
        read_idx(str(tmp_path / "x"))


def test_digits_split_is_fixed_and_matches_constants():
    train, val = load_digits("train"), load_digits("val")
    assert (len(train), len(val)) == dataset_info("digits").nominal_sizes == (1437, 360)
    assert train.images.shape[1:] == (32, 32, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(load_digits("val").images, val.images)
    assert sorted(set(val.labels.tolist())) == list(range(10))
    x = train.images / 255.0
    mean, std = dataset_info("digits").mean, dataset_info("digits").std
    assert abs(x.mean() - mean[0]) < 1e-3 and abs(x.std() - std[0]) < 1e-3
    # The upscale keeps the digit: mean-pooling back to 8x8 correlates with the originals.
    from sklearn.datasets import load_digits as sk

    orig = sk().images[np.arange(1797) % 5 == 0]
    pooled = val.images[..., 0].reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.corrcoef(orig.ravel(), pooled.ravel())[0, 1] > 0.95


def test_cifar_batches_are_real_pickles(cifar10_root):
    root, _ = cifar10_root
    with open(os.path.join(root, "cifar-10-batches-py", "data_batch_1"), "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"} and batch[b"data"].shape[1] == 3072


def test_digits_reader_equals_scikit_learns_loader():
    """The digits reader parses scikit-learn's shipped file itself (no sklearn import per trial): it must
    give exactly what sklearn.datasets.load_digits gives, in the same order."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    is_val = np.arange(len(bunch.target)) % 5 == 0
    for split, keep in (("train", ~is_val), ("val", is_val)):
        ours = load_digits(split)
        np.testing.assert_array_equal(ours.labels, bunch.target[keep])
        # sklearn's 0..16 pixels through the same upscale must give the same bytes
        x = torch.from_numpy(bunch.images[keep].astype(np.float32) * (255.0 / 16.0))[:, None]
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).round().clamp(0, 255)
        np.testing.assert_array_equal(ours.images[..., 0], x[:, 0].to(torch.uint8).numpy())


def test_a_dataset_registered_after_import_is_known_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """One registry entry is all a dataset needs: the name lists, the loaders and the sweep schema follow it."""
    import yaml

    import pipelines.datasets as registry
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep
    from pipelines import DATASETS, build_loader, register_dataset
    from pipelines.datasets import DatasetEntry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the entry leaves with the test
    digits = dataset_entry("digits")
    assert "digits-again" not in DATASETS
    register_dataset(DatasetEntry("digits-again", digits.info, digits.check, digits.load, needs_root=False))
    assert "digits-again" in DATASETS and DATASETS[-1] == "digits-again"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetEntry("digits-again", digits.info, digits.check, digits.load))
    images, labels = next(iter(build_loader("digits-again", None, "val", batch_size=8)))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "again", "base": {"model": "resnet20", "dataset": {"name": "digits-again"}}}))
    assert [t.dataset.name for t in expand(load_sweep(sweep))] == ["digits-again"]
