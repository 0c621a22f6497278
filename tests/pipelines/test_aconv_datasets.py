"""The ACONV paper's extra datasets, MNIST-cluttered (npz) and LFW-Faces (JPEG tree), from real files on disk."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import pipeline_fixtures as pf
from pipelines import build_loader, check_root, dataset_info
from pipelines.datasets import load_split
from pipelines.readers.lfw import split_people

# 3 people at or above the 20-photo threshold, 2 below it (names as in LFW: underscores for spaces)
PEOPLE = {"Ariel_Sharon": 21, "Colin_Powell": 27, "Hugo_Chavez": 20, "Jean_Chretien": 19, "Zoe_Ball": 3}
KEPT = ("Ariel Sharon", "Colin Powell", "Hugo Chavez")


@pytest.fixture(scope="module")
def lfw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfw_home")
    written = pf.write_lfw(str(root / "lfw_funneled"), PEOPLE)
    return str(root), written


@pytest.fixture(scope="module")
def lfw_splits(lfw_root):
    return {split: load_split("lfw-faces", lfw_root[0], split) for split in ("train", "val")}


@pytest.fixture(scope="module")
def cluttered_lasagne_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clutter-lasagne")
    return str(root), pf.write_cluttered(str(root), "lasagne")


@pytest.fixture(scope="module")
def cluttered_keras_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clutter-keras")
    return str(root), pf.write_cluttered(str(root), "keras")


@pytest.fixture(params=["lasagne", "keras"])
def cluttered_root(request):
    return request.getfixturevalue(f"cluttered_{request.param}_root")


def test_dataset_info():
    clut, faces = dataset_info("mnist-cluttered"), dataset_info("lfw-faces")
    assert (clut.num_classes, clut.image_shape, clut.in_channels, clut.augment) == (10, (60, 60), 1, False)
    assert (faces.num_classes, faces.image_shape, faces.in_channels, faces.augment) == (62, (50, 37), 1, True)


def test_cluttered_train_is_train_plus_valid_and_val_is_test(cluttered_root):
    root, written = cluttered_root
    check_root("mnist-cluttered", root)
    train, val = load_split("mnist-cluttered", root, "train"), load_split("mnist-cluttered", root, "val")
    for data, parts in ((train, ("train", "valid")), (val, ("test",))):
        images = np.concatenate([written[p][0] for p in parts])
        assert data.images.shape == (len(images), 60, 60, 1) and data.images.dtype == np.uint8
        np.testing.assert_array_equal(data.images[..., 0], np.rint(images * 255).astype(np.uint8))
        np.testing.assert_array_equal(data.labels, np.concatenate([written[p][1] for p in parts]))
        assert data.labels.dtype == np.int64 and data.classes == tuple("0123456789")
    assert (len(train), len(val)) == (18, 8)


def test_cluttered_root_may_be_the_file_itself(cluttered_root):
    root, _ = cluttered_root
    (path,) = [os.path.join(root, f) for f in os.listdir(root)]
    check_root("mnist-cluttered", path)
    assert len(load_split("mnist-cluttered", path, "val")) == 8


def test_cluttered_errors_are_one_line(tmp_path):
    for bad in (tmp_path / "missing", tmp_path):
        with pytest.raises(ValueError, match=r"mnist_cluttered_60\.npz or .*X_train, y_train") as err:
            check_root("mnist-cluttered", str(bad))
        assert "\n" not in str(err.value)
    np.savez(tmp_path / "mnist_cluttered_60.npz", X_train=np.zeros((2, 3600), np.float32), y_train=np.zeros(2))
    with pytest.raises(ValueError, match=r"no array 'X_valid' \(has X_train, y_train") as err:
        load_split("mnist-cluttered", str(tmp_path), "train")
    assert "\n" not in str(err.value)
    arrays = {f"{k}_{p}": np.zeros((2, 3600) if k == "X" else (2, 1), np.float32) for p in ("train", "valid", "test")
              for k in ("X", "y")}
    np.savez(tmp_path / "mnist_cluttered_60.npz", **{**arrays, "X_test": np.full((2, 3600), 255.0, np.float32)})
    with pytest.raises(ValueError, match=r"X_test values span \[255, 255\]; expected floats in \[0, 1\]"):
        load_split("mnist-cluttered", str(tmp_path), "val")


def test_lfw_threshold_labels_and_images(lfw_root, lfw_splits):
    root, written = lfw_root
    train, val = lfw_splits["train"], lfw_splits["val"]
    assert train.classes == val.classes == KEPT  # sorted names, people below 20 photos dropped
    assert train.images.shape[1:] == (50, 37, 1) and train.images.dtype == np.uint8
    counts = np.bincount(train.labels, minlength=3) + np.bincount(val.labels, minlength=3)
    assert counts.tolist() == [21, 27, 20]
    # stratified 25 %: ceil(0.25 * 68) = 17 val photos; floors 5, 6, 5 and the one left over goes to the
    # largest fractional quota (27 * 0.25 = 6.75)
    assert np.bincount(val.labels).tolist() == [5, 7, 5] and (len(train), len(val)) == (51, 17)


def test_lfw_pixels_are_scikit_learns_fetch_lfw_people(lfw_root, lfw_splits):
    """The faces equal scikit-learn's loader with the authors' arguments (min 20 photos, resize 0.4)."""
    from sklearn.datasets._lfw import _fetch_lfw_people

    faces, target, names = _fetch_lfw_people(os.path.join(lfw_root[0], "lfw_funneled"), color=False, resize=0.4,
                                             slice_=(slice(70, 195), slice(78, 172)), min_faces_per_person=20)
    assert tuple(names) == KEPT and faces.shape[1:] == (50, 37)
    ours = {(int(y), img.tobytes()) for split in lfw_splits.values() for img, y in zip(split.images, split.labels)}
    theirs = {(int(y), np.rint(f * 255).astype(np.uint8).tobytes()) for f, y in zip(faces, target)}
    # a mean of three integers is never a rounding tie, so storing it as uint8 loses nothing but the thirds
    assert len(ours) == 68 and ours == theirs


def test_lfw_split_is_deterministic_and_ignores_listing_order(tmp_path, lfw_splits):
    pf.write_lfw(str(tmp_path / "lfw"), PEOPLE, order=-1)  # same photos, created in reverse order
    again = load_split("lfw-faces", str(tmp_path), "val")
    assert again.classes == lfw_splits["val"].classes
    np.testing.assert_array_equal(again.labels, lfw_splits["val"].labels)
    np.testing.assert_array_equal(again.images, lfw_splits["val"].images)
    # the same person is split the same way whoever else is in the tree
    alone = split_people({"Colin_Powell": 27})["Colin_Powell"]
    assert np.array_equal(alone, split_people({"Colin_Powell": 27, "Other": 40})["Colin_Powell"])


def test_lfw_split_sizes_at_the_papers_scale():
    rng = np.random.default_rng(0)
    counts = {f"P{i}": int(n) for i, n in enumerate(rng.integers(20, 60, size=61))}
    counts["Q"] = 3023 - sum(counts.values())
    masks = split_people(counts)
    val = sum(int(m.sum()) for m in masks.values())
    assert (3023 - val, val) == (2267, 756)  # the paper's 2,267 / 756
    assert all(math.floor(n / 4) <= masks[p].sum() <= math.ceil(n / 4) for p, n in counts.items())


def test_lfw_check_root_errors_are_one_line(tmp_path, lfw_root):
    check_root("lfw-faces", lfw_root[0])  # lfw_home: finds lfw_funneled/
    check_root("lfw-faces", os.path.join(lfw_root[0], "lfw_funneled"))  # the people folder itself
    (tmp_path / "lfw" / "Someone").mkdir(parents=True)
    (tmp_path / "lfw" / "Someone" / "notes.txt").write_text("no photos")
    for bad in (tmp_path / "missing", tmp_path):
        with pytest.raises(ValueError, match=r"not an lfw-faces root \(expected <Person_Name>/<Person_Name>_0001"
                                              r"\.jpg folders in <root>/lfw_funneled") as err:
            check_root("lfw-faces", str(bad))
        assert "\n" not in str(err.value)
    few = tmp_path / "few"
    pf.write_lfw(str(few), {"Zoe_Ball": 3})
    with pytest.raises(ValueError, match="no person with >= 20 photos"):
        load_split("lfw-faces", str(few), "train")


@pytest.mark.parametrize("name", ["mnist-cluttered", "lfw-faces"])
def test_build_loader_batches(request, name):
    root = request.getfixturevalue("lfw_root" if name == "lfw-faces" else "cluttered_lasagne_root")[0]
    info = dataset_info(name)
    for split in ("train", "val"):
        loader = build_loader(name, root, split, batch_size=4, backend="pytorch", num_workers=0)
        batches = list(loader)
        assert sum(len(y) for _, y in batches) == loader.num_samples == len(load_split(name, root, split))
        for x, y in batches:
            assert x.shape[1:] == (1, *info.image_shape) and x.dtype == torch.float32 and y.dtype == torch.int64
    synthetic = next(iter(build_loader(name, None, "train", batch_size=4, backend="synthetic")))[0]
    assert synthetic.shape == (4, 1, *info.image_shape)
    # the JPEG-only DALI graph does not serve in-memory arrays: refused naming the backends that do
    with pytest.raises(ValueError, match=r"'dali-cpu' reads the JPEG datasets .* use one of 'auto', 'pytorch'"):
        build_loader(name, root, "train", batch_size=4, backend="dali-cpu")


def _train_pixels(root, augment, seed=0):
    loader = build_loader("lfw-faces", root, "train", batch_size=64, backend="pytorch", num_workers=0, seed=seed,
                          augment=augment)
    info = dataset_info("lfw-faces")
    torch.manual_seed(seed)  # with num_workers=0 the augmentation draws from the global generator
    x = torch.cat([b[0] for b in loader]) * info.std[0] + info.mean[0]
    y = torch.cat([b[1] for b in loader])
    return (x * 255).round().to(torch.uint8)[:, 0].numpy(), y.numpy()


def test_lfw_train_augmentation_default_on_and_switchable(lfw_root, lfw_splits):
    root = lfw_root[0]
    stored = {img.tobytes() for img in lfw_splits["train"].images[..., 0]}
    plain, _ = _train_pixels(root, augment=False)
    assert {img.tobytes() for img in plain} == stored  # off: the stored faces, shuffled
    default, _ = _train_pixels(root, augment=None)
    on, _ = _train_pixels(root, augment=True)
    np.testing.assert_array_equal(default, on)  # LFW-Faces augments by default (the paper's recipe)
    assert sum(img.tobytes() not in stored for img in on) > len(on) // 2
    with pytest.raises(ValueError, match="augment: True applies to split 'train' only"):
        build_loader("lfw-faces", root, "val", batch_size=4, augment=True)
