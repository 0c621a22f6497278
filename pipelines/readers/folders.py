"""Readers for the JPEG datasets as users have them on disk: ImageNet and Tiny-ImageNet.

Both produce a `FileSplit`: sorted file paths with int64 labels and the class names. The class-to-index
mapping is the sorted list of the train split's class folders, for every split and every backend, so
`pytorch` and `dali-*` agree by construction.

Layouts:
- ImageNet (ImageFolder): `<root>/train/<class>/<image>` and `<root>/val/<class>/<image>` (the usual
  "valprep" layout with one folder per class under `val/`).
- Tiny-ImageNet (as unpacked from `tiny-imagenet-200.zip`): `<root>/train/<wnid>/images/<image>.JPEG`,
  `<root>/val/images/<image>.JPEG` labelled by `<root>/val/val_annotations.txt` (tab-separated:
  file, wnid, box). `test/` has no labels and is not read.

Unreadable images are not detected here (that would decode every file); `read_image_file` raises
`CorruptImageError` naming the file when a loader meets one (Pillow refuses truncated files unless someone
sets `PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`; DALI's decoders refuse them too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["FileSplit", "CorruptImageError", "IMAGE_EXTENSIONS", "read_imagefolder", "read_tiny_imagenet",
           "check_imagefolder", "check_tiny_imagenet", "read_image_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

IMAGENET_LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG (ImageFolder)"
TINY_LAYOUT = ("<root>/train/<wnid>/images/*.JPEG, <root>/val/images/*.JPEG and "
               "<root>/val/val_annotations.txt (tiny-imagenet-200)")


class CorruptImageError(ValueError):
    """An image file that cannot be decoded (truncated, corrupt, not an image); the message names it."""


@dataclass(frozen=True, eq=False)
class FileSplit:
    paths: tuple[str, ...]
    labels: np.ndarray  # int64, shape (N,)
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


def _images_in(path: str) -> list[str]:
    return sorted(e.path for e in os.scandir(path) if e.is_file() and _is_image(e.name))


def check_imagefolder(root: str) -> None:
    for split in ("train", "val"):
        d = os.path.join(root, split)
        if not os.path.isdir(d) or not _subdirs(d):
            raise ValueError(f"root: {root!r} is not an ImageNet root: {d!r} is missing or has no class "
                             f"folders (expected {IMAGENET_LAYOUT})")


def check_tiny_imagenet(root: str) -> None:
    train = os.path.join(root, "train")
    ok = os.path.isdir(train) and bool(_subdirs(train))
    ok = ok and os.path.isdir(os.path.join(train, _subdirs(train)[0], "images"))
    ok = ok and os.path.isdir(os.path.join(root, "val", "images"))
    ok = ok and os.path.isfile(os.path.join(root, "val", "val_annotations.txt"))
    if not ok:
        raise ValueError(f"root: {root!r} is not a Tiny-ImageNet root (expected {TINY_LAYOUT})")


def read_imagefolder(root: str, split: str) -> FileSplit:
    check_imagefolder(root)
    classes = _subdirs(os.path.join(root, "train"))
    index = {c: i for i, c in enumerate(classes)}
    split_dir = os.path.join(root, split)
    paths: list[str] = []
    labels: list[int] = []
    for c in _subdirs(split_dir):
        if c not in index:
            raise ValueError(f"root: class folder {c!r} in {split_dir!r} has no counterpart in "
                             f"{os.path.join(root, 'train')!r} (expected {IMAGENET_LAYOUT})")
        files = _images_in(os.path.join(split_dir, c))
        paths += files
        labels += [index[c]] * len(files)
    if not paths:
        raise ValueError(f"root: no images with extensions {IMAGE_EXTENSIONS} under {split_dir!r}")
    return FileSplit(tuple(paths), np.asarray(labels, dtype=np.int64), tuple(classes))


def read_tiny_imagenet(root: str, split: str) -> FileSplit:
    check_tiny_imagenet(root)
    classes = _subdirs(os.path.join(root, "train"))
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    if split == "train":
        for c in classes:
            files = _images_in(os.path.join(root, "train", c, "images"))
            paths += files
            labels += [index[c]] * len(files)
    else:
        ann = os.path.join(root, "val", "val_annotations.txt")
        with open(ann, encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        for n, row in enumerate(sorted(rows), start=1):
            if len(row) < 2 or row[1] not in index:
                raise ValueError(f"root: {ann}: bad annotation {row!r} (expected 'file<TAB>wnid<TAB>...' with "
                                 f"a wnid among the train folders)")
            path = os.path.join(root, "val", "images", row[0])
            if not os.path.isfile(path):
                raise ValueError(f"root: {ann}: annotated image {path!r} does not exist")
            paths.append(path)
            labels.append(index[row[1]])
    if not paths:
        raise ValueError(f"root: no {split} images under {root!r} (expected {TINY_LAYOUT})")
    return FileSplit(tuple(paths), np.asarray(labels, dtype=np.int64), tuple(classes))


def read_image_file(path: str):
    """Decode one image to an RGB PIL image, or raise `CorruptImageError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() forces the full decode, so truncation surfaces here
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise CorruptImageError(f"corrupt or truncated image {path!r}: {e}") from e
