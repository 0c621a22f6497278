"""Reader of Labelled Faces in the Wild as the ACONV paper uses it: the people with at least 20 photos.

Layout (what scikit-learn's `fetch_lfw_people` downloads and unpacks into `lfw_home/`, or the official
`lfw-funneled.tgz` / `lfw.tgz` unpacked): `<Person_Name>/<Person_Name>_0001.jpg` ... (250x250 RGB JPEGs) in
`<root>/lfw_funneled`, `<root>/lfw`, `<root>/lfw_home/lfw_funneled`, `<root>/lfw_home/lfw`, or `<root>`
itself; the funneled (aligned) set is preferred when both are there, as scikit-learn's default does.

Selection and images follow `fetch_lfw_people(min_faces_per_person=20, resize=0.4)`, the call in the ACONV
authors' code (`keras_data.py`, 'lfw_faces'): people with >= 20 photos (3,023 photos of 62 people in the real
set), scikit-learn's default face window rows 70:195, columns 78:172 (125x94), resized by 0.4 to 50x37 with
Pillow's default (bicubic) filter, grey = the mean of R, G and B. Those floats are stored as uint8 (the
rounded mean of the three channel values). Labels index the sorted person names with "_" read as " " (the
order of scikit-learn's `target_names`); `classes` holds those names.

Split (the paper: 2,267 training and 756 validation images): 25 % of each person's photos go to `val`,
stratified and deterministic. `ceil(0.25 * N)` validation photos in all (756 of 3,023, like
`train_test_split(test_size=0.25)`), each person getting floor(0.25 * n) and the remainder going one each to
the people with the largest fractional quota (ties broken by a hash of the name); which of a person's photos
are held out is drawn from a generator seeded by (LFW_SPLIT_SEED, CRC-32 of the name) over the photos in
sorted file-name order. Nothing depends on the order the file system lists folders in, or on the other
people in the tree. Deviation: the authors' code draws a new unstratified split per repeat; one fixed split
lets conv and aconv runs of every seed see the same images.

Photos are decoded once per split and trial with Pillow (3,023 JPEGs, a few seconds); an undecodable file
raises `CorruptImageError` naming it.
"""

from __future__ import annotations

import math
import os
import re
import zlib

import numpy as np

from .arrays import ArraySplit
from .folders import read_image_file

__all__ = ["LFW_DIRS", "LFW_LAYOUT", "LFW_SPLIT_SEED", "MIN_FACES", "VAL_FRACTION", "find_lfw_dir", "lfw_people",
           "split_people", "read_lfw"]

LFW_DIRS = ("lfw_funneled", "lfw", os.path.join("lfw_home", "lfw_funneled"), os.path.join("lfw_home", "lfw"), "")
LFW_LAYOUT = ("<Person_Name>/<Person_Name>_0001.jpg folders in <root>/lfw_funneled, <root>/lfw, "
              "<root>/lfw_home/lfw_funneled or <root> (as fetch_lfw_people unpacks them)")
MIN_FACES = 20
VAL_FRACTION = 0.25
LFW_SPLIT_SEED = 0
CROP = (78, 70, 172, 195)  # PIL box (left, top, right, bottom): scikit-learn's slice_ (70:195, 78:172)
SIZE = (37, 50)  # PIL (width, height): int(0.4 * 94), int(0.4 * 125)


def _is_photo(person: str, file: str) -> bool:
    return re.fullmatch(re.escape(person) + r"_\d+\.jpe?g", file, flags=re.IGNORECASE) is not None


def _is_people_dir(d: str) -> bool:
    """Cheap: the first person folder (in sorted order) holds a `<name>_NNNN.jpg`."""
    if not os.path.isdir(d):
        return False
    for entry in sorted(os.scandir(d), key=lambda e: e.name):
        if entry.is_dir():
            return any(_is_photo(entry.name, f) for f in os.listdir(entry.path))
    return False


def find_lfw_dir(root: str) -> str:
    for sub in LFW_DIRS:
        d = os.path.join(root, sub) if sub else root
        if _is_people_dir(d):
            return d
    raise ValueError(f"root: {root!r} is not an lfw-faces root (expected {LFW_LAYOUT})")


def lfw_people(d: str, min_faces: int = MIN_FACES) -> dict[str, list[str]]:
    """{person folder name: sorted photo paths} of the people with at least `min_faces` photos."""
    people = {}
    for entry in os.scandir(d):
        if entry.is_dir():
            photos = sorted(f for f in os.listdir(entry.path) if _is_photo(entry.name, f))
            if len(photos) >= min_faces:
                people[entry.name] = [os.path.join(entry.path, f) for f in photos]
    return dict(sorted(people.items()))


def split_people(counts: dict[str, int], fraction: float = VAL_FRACTION,
                 seed: int = LFW_SPLIT_SEED) -> dict[str, np.ndarray]:
    """{person: boolean mask over their sorted photos, True = val}; see the module docstring."""
    quota = {p: fraction * n for p, n in counts.items()}
    take = {p: math.floor(q) for p, q in quota.items()}
    extra = math.ceil(fraction * sum(counts.values())) - sum(take.values())
    by_remainder = sorted(counts, key=lambda p: (-(quota[p] - take[p]), zlib.crc32(p.encode())))
    for p in by_remainder[:extra]:
        take[p] += 1
    masks = {}
    for p, n in counts.items():
        chosen = np.random.default_rng([seed, zlib.crc32(p.encode())]).permutation(n)[:take[p]]
        mask = np.zeros(n, dtype=bool)
        mask[chosen] = True
        masks[p] = mask
    return masks


def _face(path: str) -> np.ndarray:
    from PIL import Image

    img = read_image_file(path).crop(CROP).resize(SIZE, Image.BICUBIC)
    return np.rint(np.asarray(img, dtype=np.float32).mean(axis=2)).astype(np.uint8)


def read_lfw(root: str, split: str) -> ArraySplit:
    d = find_lfw_dir(root)
    people = lfw_people(d)
    if not people:
        raise ValueError(f"root: {d!r} has no person with >= {MIN_FACES} photos (expected {LFW_LAYOUT})")
    masks = split_people({p: len(paths) for p, paths in people.items()})
    classes = sorted({p.replace("_", " ") for p in people})
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for p, photos in people.items():
        keep = masks[p] if split == "val" else ~masks[p]
        chosen = [path for path, k in zip(photos, keep) if k]
        paths += chosen
        labels += [index[p.replace("_", " ")]] * len(chosen)
    images = np.stack([_face(path) for path in paths])[..., None] if paths else np.zeros((0, 50, 37, 1), np.uint8)
    return ArraySplit(np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), tuple(classes))
