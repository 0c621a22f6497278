"""torchvision augmentations per paper recipe, the GMConv Table 4 evaluation transforms, and normalisation.

Recipes (the DALI graph in `dali.py` implements the same ones for the JPEG datasets):
- imagenet, tiny-imagenet: train RandomResizedCrop(S, scale (0.08, 1), ratio (3/4, 4/3)) + horizontal flip;
  val resize of the shorter side to R + centre crop S (offset rounded half up, as DALI does) (S, R = 224, 256 for ImageNet; 128, 128 for
  Tiny-ImageNet, the CoC paper's 64 -> 128 upscale).
- cifar10, cifar100: train 4-pixel zero padding + random 32x32 crop + horizontal flip (GMConv Sec. 4.1);
  val unchanged.
- mnist, fashion-mnist, digits, mnist-cluttered: no augmentation by default.
- lfw-faces, and any array dataset whose augmentation a sweep turns on: the CIFAR recipe scaled to the
  image, zero padding of round(min(H, W) / 8) pixels (4 for 28x28, 5 for LFW's 50x37, 8 for 60x60) + random
  crop back to H x W + horizontal flip. (The ACONV authors' Keras code shifts by up to 20 % with
  nearest-pixel fill, flips, and zooms by 10 % in the simple net; we keep one recipe for every array set.)
`augment` (the sweep's `dataset.augment`) overrides the dataset's default (`DatasetInfo.augment`) for
the train split: False trains on the val geometry (JPEG sets: resize + centre crop; arrays: as stored).

Per-sample transforms end in uint8 CHW tensors; `normalize` turns a batch into float32 on the device,
(x / 255 - mean) / std, once per batch (cheaper than per sample, and the bytes crossing to the GPU are uint8).

Evaluation transforms (GMConv Table 4, validation only) act on the final network-sized uint8 image, after
the centre crop: rotation counter-clockwise by 0/45/90/135/180 degrees about the image centre, bilinear,
the uncovered corners filled with black (0) before normalisation; `flip_ud` mirrors top to bottom.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import numpy as np
import torch

from .datasets import dataset_entry

# torchvision is imported inside the functions that need it (JPEG decoding/resizing, rotations): importing it
# pulls in torchvision.models and torch._dynamo, over a second per process, which a job on an array dataset
# (digits, CIFAR, MNIST) never uses. Every trial process pays its imports, so they count in the sweep's
# per-trial overhead.

__all__ = ["EVAL_TRANSFORMS", "EVAL_ANGLES", "image_transform", "array_transform", "apply_eval_transform",
           "normalize", "check_eval_transform", "augments", "augment_padding"]

EVAL_TRANSFORMS = ("rot0", "rot45", "rot90", "rot135", "rot180", "flip_ud")
EVAL_ANGLES = {"rot0": 0.0, "rot45": 45.0, "rot90": 90.0, "rot135": 135.0, "rot180": 180.0}


def check_eval_transform(eval_transform: str | None, split: str) -> None:
    if eval_transform is None:
        return
    if eval_transform not in EVAL_TRANSFORMS:
        raise ValueError(f"eval_transform: unknown transform {eval_transform!r} "
                         f"(allowed: None, {', '.join(EVAL_TRANSFORMS)})")
    if split != "val":
        raise ValueError(f"eval_transform: {eval_transform!r} applies to split 'val' only (got split {split!r})")


def apply_eval_transform(image: torch.Tensor, eval_transform: str | None) -> torch.Tensor:
    """Apply a Table 4 transform to a uint8 (C, H, W) or (N, C, H, W) tensor."""
    if eval_transform in (None, "rot0"):
        return image
    if eval_transform == "flip_ud":
        return image.flip(-2)
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    return TF.rotate(image, EVAL_ANGLES[eval_transform], interpolation=InterpolationMode.BILINEAR, fill=0)


class CenterCrop:
    """Centre crop whose offset rounds half up, like DALI's `crop_pos` 0.5.

    torchvision's CenterCrop rounds half to even (a 341-wide image gives left offset 58, DALI 59); with this
    one both backends crop the same pixels.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image):
        w, h = image.size
        top, left = math.floor((h - self.size) / 2 + 0.5), math.floor((w - self.size) / 2 + 0.5)
        return image.crop((left, top, left + self.size, top + self.size))


def augments(name: str, train: bool, augment: bool | None = None) -> bool:
    """Whether a split gets the train augmentation: train splits only, `augment` None = the dataset's default."""
    return train and (dataset_entry(name).info.augment if augment is None else bool(augment))


def augment_padding(name: str) -> int:
    """Zero padding of the pad-and-crop augmentation of array datasets: an eighth of the shorter side."""
    return round(min(dataset_entry(name).info.image_shape) / 8)


def image_transform(name: str, train: bool, eval_transform: str | None = None,
                    augment: bool | None = None) -> Callable:
    """PIL RGB image -> uint8 (3, S, S) tensor for the JPEG datasets."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    size = dataset_entry(name).info.image_size
    if augments(name, train, augment):
        steps = [T.RandomResizedCrop(size, interpolation=InterpolationMode.BILINEAR, antialias=True),
                 T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(dataset_entry(name).val_resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
                 CenterCrop(size)]
    steps.append(T.PILToTensor())
    if eval_transform not in (None, "rot0"):
        steps.append(T.Lambda(partial(apply_eval_transform, eval_transform=eval_transform)))
    return T.Compose(steps)


def array_transform(name: str, train: bool, eval_transform: str | None = None,
                    augment: bool | None = None) -> Callable:
    """uint8 (H, W, C) numpy image -> uint8 (C, H, W) tensor for the array datasets."""
    pad_crop_flip = augment_padding(name) if augments(name, train, augment) else None
    return _ArrayTransform(pad_crop_flip, eval_transform)


class _ArrayTransform:
    """Optional zero padding + random crop back to the input size + horizontal flip, then the eval transform.

    What torchvision's RandomCrop(padding=p, fill=0) + RandomHorizontalFlip do, in plain torch (drawn from
    torch's global generator like them, so DataLoader worker seeding applies), without importing torchvision.
    A class rather than a closure so DataLoader workers can be started with "spawn" too.
    """

    def __init__(self, padding: int | None, eval_transform: str | None) -> None:
        self.padding, self.eval_transform = padding, eval_transform

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        if self.padding is not None:
            p = self.padding
            h, w = x.shape[-2:]
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            top, left = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
            x = padded[:, top:top + h, left:left + w]
            x = (x.flip(-1) if torch.rand(1).item() < 0.5 else x).contiguous()
        return apply_eval_transform(x, self.eval_transform)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              device: torch.device | str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised on `device` (moved first, as uint8)."""
    x = images.to(device, non_blocking=True)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) * 255.0
    return (x.float() - m) / s
