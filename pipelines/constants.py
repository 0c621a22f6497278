"""Normalisation constants and per-dataset geometry: the one place they are defined.

Means and standard deviations are per channel on the [0, 1] scale. The torchvision backend normalises
uint8 batches with them on the device; the DALI graph scales them by 255 for `crop_mirror_normalize`.
ImageNet's values are the ones torchvision's reference recipes use (Tiny-ImageNet shares them); CIFAR's are
the training-set statistics; MNIST/Fashion-MNIST's the usual single-channel values. The `digits` values are
the statistics of our own train split (8x8 digits upscaled to 32x32, see `arrays.load_digits`); a test
recomputes them from the data.

The ACONV datasets: the paper feeds MNIST-cluttered unnormalised (its [0, 1] values as they are: mean 0,
std 1 here) and centres LFW-Faces by the training mean image; per-channel constants cannot express a mean
image and we hold no copy of LFW to measure its statistics, so LFW-Faces is scaled to [-1, 1] (0.5, 0.5).
Both networks put batch normalisation right after the first conv, which absorbs the input's affine scale
(only the zero padding's value relative to the image differs).
"""

from __future__ import annotations

__all__ = ["MEAN_STD", "IMAGE_SIZE", "IMAGE_SHAPE", "VAL_RESIZE", "IN_CHANNELS", "NUM_CLASSES", "NOMINAL_SIZES",
           "DEFAULT_AUGMENT"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "tiny-imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "digits": ((0.3052, 0.3052, 0.3052), (0.3241, 0.3241, 0.3241)),
    "mnist-cluttered": ((0.0,), (1.0,)),
    "lfw-faces": ((0.5,), (0.5,)),
}

# Side of the square network input. Tiny-ImageNet follows the CoC paper (Fig. 7): its 64x64 images are
# resized to 128x128.
IMAGE_SIZE: dict[str, int] = {
    "imagenet": 224,
    "tiny-imagenet": 128,
    "cifar10": 32,
    "cifar100": 32,
    "mnist": 28,
    "fashion-mnist": 28,
    "digits": 32,
    "mnist-cluttered": 60,
    "lfw-faces": 50,  # the height; the images are not square, see IMAGE_SHAPE
}

# (height, width) of what the loaders yield: the square side twice, except LFW-Faces' 50x37 crops (the
# ACONV paper's fetch_lfw_people(resize=0.4) of scikit-learn's default face window, see lfw.py).
IMAGE_SHAPE: dict[str, tuple[int, int]] = {name: (side, side) for name, side in IMAGE_SIZE.items()}
IMAGE_SHAPE["lfw-faces"] = (50, 37)

# Validation resize of the shorter side before the centre crop (JPEG datasets only): 256 -> 224 for
# ImageNet (GMConv: single 224 crop), 128 -> 128 for Tiny-ImageNet (a plain upscale of the 64x64 images).
VAL_RESIZE: dict[str, int] = {"imagenet": 256, "tiny-imagenet": 128}

IN_CHANNELS: dict[str, int] = {
    "imagenet": 3, "tiny-imagenet": 3, "cifar10": 3, "cifar100": 3, "mnist": 1, "fashion-mnist": 1, "digits": 3,
    "mnist-cluttered": 1, "lfw-faces": 1,
}

NUM_CLASSES: dict[str, int] = {
    "imagenet": 1000, "tiny-imagenet": 200, "cifar10": 10, "cifar100": 100, "mnist": 10, "fashion-mnist": 10,
    "digits": 10, "mnist-cluttered": 10, "lfw-faces": 62,
}

# (train, val) sizes of the published datasets: the epoch length of the `synthetic` backend.
NOMINAL_SIZES: dict[str, tuple[int, int]] = {
    "imagenet": (1_281_167, 50_000),
    "tiny-imagenet": (100_000, 10_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "mnist": (60_000, 10_000),
    "fashion-mnist": (60_000, 10_000),
    "digits": (1_437, 360),
    "mnist-cluttered": (60_000, 10_000),  # train + valid files as train, test as val (see cluttered.py)
    "lfw-faces": (2_267, 756),
}

# Whether a train split is augmented when the sweep leaves `dataset.augment` unset: the papers' recipes.
# The ACONV paper augments LFW-Faces in both of its networks (Table 1); MNIST-like digits are never flipped.
DEFAULT_AUGMENT: dict[str, bool] = {
    "imagenet": True, "tiny-imagenet": True, "cifar10": True, "cifar100": True, "mnist": False,
    "fashion-mnist": False, "digits": False, "mnist-cluttered": False, "lfw-faces": True,
}
# Loader backends (pipelines.loader): "auto" picks DALI for the JPEG datasets when it imports.
BACKENDS: tuple[str, ...] = ("auto", "dali-gpu", "dali-cpu", "pytorch", "synthetic")
