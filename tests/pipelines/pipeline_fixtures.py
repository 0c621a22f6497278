"""Writers of small real datasets on disk, cut from the photos scikit-learn and scikit-image ship.

Each class comes from a different photo (random windows, so images differ), written in the real on-disk
formats: ImageFolder and Tiny-ImageNet JPEG trees, CIFAR-10/100 python pickle batches, MNIST IDX (gzipped or
not). The writers return what they wrote so tests can compare the readers' output with it.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from functools import lru_cache

import numpy as np
from PIL import Image


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """Eight RGB uint8 photos: china, flower (scikit-learn); astronaut, chelsea, coffee, rocket, cat,
    immunohistochemistry (scikit-image)."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    out = list(load_sample_images().images)
    out += [getattr(sk, n)() for n in ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry")]
    return tuple(np.ascontiguousarray(p[..., :3]) for p in out)


def cut(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int], grey: bool = False) -> np.ndarray:
    """A random window of at least half the photo's side, resized to size=(W, H)."""
    h, w = photo.shape[:2]
    ch, cw = rng.integers(h // 2, h + 1), rng.integers(w // 2, w + 1)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    img = Image.fromarray(photo[y:y + ch, x:x + cw]).resize(size, Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if grey:
        img = img.convert("L")
    return np.array(img)


def write_imagefolder(root: str, classes: int = 3, train_per_class: int = 8, val_per_class: int = 4,
                      size: tuple[int, int] = (160, 120), seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """ImageNet layout root/{train,val}/<class>/*.JPEG; returns {split: [(path, label)]}."""
    rng = np.random.default_rng(seed)
    names = [f"n{c:08d}" for c in range(classes)]
    written: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for split, per in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(names):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(per):
                path = os.path.join(root, split, name, f"{name}_{split}_{i:04d}.JPEG")
                Image.fromarray(cut(photos()[label % 8], rng, size)).save(path, quality=90)
                written[split].append((path, label))
    return written


def write_tiny_imagenet(root: str, wnids: tuple[str, ...] = ("n01443537", "n01629819", "n01641577"),
                        train_per_class: int = 6, val_per_class: int = 3, seed: int = 1) -> dict[str, str]:
    """tiny-imagenet-200 layout with 64x64 JPEGs; returns {val file name: wnid} as annotated."""
    rng = np.random.default_rng(seed)
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    for c, wnid in enumerate(wnids):
        d = os.path.join(root, "train", wnid, "images")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt"), "w") as boxes:
            for i in range(train_per_class):
                Image.fromarray(cut(photos()[c % 8], rng, (64, 64))).save(os.path.join(d, f"{wnid}_{i}.JPEG"))
                boxes.write(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
    os.makedirs(os.path.join(root, "val", "images"), exist_ok=True)
    truth = {}
    order = rng.permutation(len(wnids) * val_per_class)  # annotation order != class order, like the real file
    for k, j in enumerate(order):
        c = int(j) % len(wnids)
        fname = f"val_{k}.JPEG"
        Image.fromarray(cut(photos()[c % 8], rng, (64, 64))).save(os.path.join(root, "val", "images", fname))
        truth[fname] = wnids[c]
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        for fname, wnid in reversed(list(truth.items())):
            f.write(f"{fname}\t{wnid}\t0\t0\t63\t63\n")
    return truth


def _cifar_images(n: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    labels = [int(i % classes) for i in range(n)]
    images = np.stack([cut(photos()[y % 8], rng, (32, 32)) for y in labels])  # (n, 32, 32, 3)
    return images, labels


def _pickle(path: str, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: str, per_batch: int = 10, seed: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; returns {split: (HWC images, labels)}."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    out: dict[str, list] = {"train": [[], []], "val": [[], []]}
    for fname, split in [*[(f"data_batch_{i}", "train") for i in range(1, 6)], ("test_batch", "val")]:
        images, labels = _cifar_images(per_batch, 10, rng)
        _pickle(os.path.join(d, fname), {b"batch_label": fname.encode(), b"labels": labels,
                                         b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
                                         b"filenames": [f"{fname}_{i}.png".encode() for i in range(per_batch)]})
        out[split][0].append(images)
        out[split][1] += labels
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(os.path.join(d, "batches.meta"), {b"label_names": names, b"num_cases_per_batch": per_batch,
                                              b"num_vis": 3072})
    return {s: (np.concatenate(v[0]), np.asarray(v[1])) for s, v in out.items()}


def write_cifar100(root: str, n_train: int = 200, n_test: int = 100,
                   seed: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-100-python")
    os.makedirs(d, exist_ok=True)
    out = {}
    for fname, split, n in (("train", "train", n_train), ("test", "val", n_test)):
        images, labels = _cifar_images(n, 100, rng)
        _pickle(os.path.join(d, fname), {b"filenames": [b"x.png"] * n, b"batch_label": fname.encode(),
                                         b"fine_labels": labels, b"coarse_labels": [y // 5 for y in labels],
                                         b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072)})
        out[split] = (images, np.asarray(labels))
    _pickle(os.path.join(d, "meta"), {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                                      b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
    return out


def write_idx(path: str, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)


def write_mnist(root: str, gz: bool, n_train: int = 60, n_test: int = 30,
                seed: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four MNIST IDX files (28x28 grey) in root; returns {split: (N,28,28) images, labels}."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    out = {}
    for prefix, split, n in (("train", "train", n_train), ("t10k", "val", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = np.stack([cut(photos()[y % 8], rng, (28, 28), grey=True) for y in labels])
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte{suffix}"), images, gz)
        write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, gz)
        out[split] = (images, labels.astype(np.int64))
    return out


def write_cluttered(root: str, spelling: str = "lasagne", n: tuple[int, int, int] = (12, 6, 8),
                    seed: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One cluttered-MNIST npz in root: `lasagne` = mnist_cluttered_60.npz (X_* float32 rows of 3600 in [0, 1],
    y_* int of shape (N, 1)); `keras` = mnist_cluttered_60x60_6distortions.npz (x_*, one-hot y_*).
    Returns {part: (float32 (N, 60, 60) images, int labels)} for part in train, valid, test."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    arrays, out = {}, {}
    for part, count in zip(("train", "valid", "test"), n):
        labels = (np.arange(count) * 3 + len(out)) % 10
        images = np.stack([cut(photos()[y % 8], rng, (60, 60), grey=True) for y in labels]).astype(np.float32) / 255
        out[part] = (images, labels.astype(np.int64))
        if spelling == "lasagne":
            arrays[f"X_{part}"] = images.reshape(count, 3600)
            arrays[f"y_{part}"] = labels.astype(np.int32).reshape(count, 1)
        else:
            arrays[f"x_{part}"] = images.reshape(count, 3600)
            arrays[f"y_{part}"] = np.eye(10, dtype=np.float32)[labels]
    name = "mnist_cluttered_60.npz" if spelling == "lasagne" else "mnist_cluttered_60x60_6distortions.npz"
    np.savez_compressed(os.path.join(root, name), **arrays)
    return out


def write_lfw(root: str, people: dict[str, int], seed: int = 6, order: int = 1) -> dict[str, list[str]]:
    """An LFW tree root/<Person_Name>/<Person_Name>_NNNN.jpg of 250x250 RGB JPEGs, a photo per person
    (the face window of scikit-learn's crop sits inside). `order` -1 creates folders and files in reverse,
    so tests can check that nothing depends on the order the file system lists them in. Returns the paths."""
    written: dict[str, list[str]] = {}
    for k, (person, count) in list(enumerate(people.items()))[::order]:
        rng = np.random.default_rng([seed, k])
        os.makedirs(os.path.join(root, person), exist_ok=True)
        paths = [os.path.join(root, person, f"{person}_{i:04d}.jpg") for i in range(1, count + 1)]
        faces = [cut(photos()[k % 8], rng, (250, 250)) for _ in paths]  # the same pixels in either order
        for path, face in list(zip(paths, faces))[::order]:
            Image.fromarray(face).save(path, quality=90)
        written[person] = paths
    return written
