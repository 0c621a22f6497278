"""Multiply-adds of one image's forward pass through the models whose architecture is ours, worked out from
their shapes in plain Python: no torch (importing it is 1.5-2 s of a plan that needs nothing else of it).

The same count as ``count_params_flops`` (``layers.macs``: FlopCounterMode's formulas on the convolutions and
matrix products a forward runs): ``tests/layers/test_declared_macs.py`` holds the two equal for every model
here, every method it answers, several input sizes and every knob that changes a shape. It answers the CIFAR
ResNets (``models/cifar_resnet.py``) and the ACONV nets (``models/aconv_nets.py``) under ``stdconv``,
``s-gmconv``, ``aconv`` (the same convolutions as the plain net: masks and envelopes are elementwise) and
``gmconv`` (plus its dynamic stem's sigma MLP, ``gmconv.SigmaModule``); anything else (CoC's kernel
composition, the torchvision and timm models, models registered at run time) is None: count a built model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["declared_macs"]

_METHODS = ("stdconv", "s-gmconv", "gmconv", "aconv")
_CIFAR = {"resnet20": ((3, 3, 3), (16, 32, 64), "A"), "resnet56": ((9, 9, 9), (16, 32, 64), "A"),
          "resnet18_cifar": ((2, 2, 2, 2), (64, 128, 256, 512), "B")}
_SIGMA_OUTPUTS = {"sigma": 1, "sigma1_sigma2": 2, "sigma1_rsigma": 2}
_SIGMA_REDUCTION = 4 / 3  # GMConv2d's default, not a knob


def _strided(size: tuple[int, int], stride: int) -> tuple[int, int]:
    # a k x k conv padded k // 2 (k odd), or TF 'same', or a 1x1 conv unpadded: ceil(size / stride)
    return -(-size[0] // stride), -(-size[1] // stride)


def _conv(size: tuple[int, int], k: int, c_in: int, c_out: int) -> int:
    return size[0] * size[1] * k * k * c_in * c_out


def _cifar_resnet(name: str, size: tuple[int, int], c_in: int, classes: int, k: int) -> int:
    blocks, widths, shortcut = _CIFAR[name]
    macs = _conv(size, k, c_in, widths[0])
    c_in = widths[0]
    for stage, (n, width) in enumerate(zip(blocks, widths)):
        for j in range(n):
            stride = 2 if stage > 0 and j == 0 else 1
            out = _strided(size, stride)
            macs += _conv(out, k, c_in, width) + _conv(out, k, width, width)
            if (stride != 1 or c_in != width) and shortcut == "B":
                macs += _conv(out, 1, c_in, width)
            size, c_in = out, width
    return macs + c_in * classes


def _aconv_simple(size: tuple[int, int], c_in: int, classes: int, k: int) -> int:
    # two convs at the input's size; max-pool and AdaptiveAvgPool2d(14) hold no products; dense 32*14*14 -> 256
    return _conv(size, k, c_in, 32) + _conv(size, k, 32, 32) + 32 * 14 * 14 * 256 + 256 * classes


def _aconv_resnet(size: tuple[int, int], c_in: int, classes: int, k: int, knobs: Mapping[str, Any]) -> int:
    n = knobs.get("blocks_per_stage") or 3
    projection = (knobs.get("shortcut") or "projection") == "projection"
    macs, c_in, width = _conv(size, k, c_in, 16), 16, 16
    for stage in range(3):
        c_out = width * 2**stage
        for j in range(n):
            stride = 2 if stage > 0 and j == 0 else 1
            out = _strided(size, stride)  # symmetric and tf_same pads give the same sizes
            macs += _conv(out, k, c_in, c_out) + _conv(out, k, c_out, c_out)
            if (stride != 1 or c_in != c_out) and projection:
                macs += _conv(out, 1, c_in, c_out)
            size, c_in = out, c_out
    return macs + c_in * classes


def declared_macs(model: str, method: str, num_classes: int, in_channels: int, image_shape: tuple[int, int],
                  knobs: Mapping[str, Any]) -> int | None:
    """Multiply-adds of one ``(1, in_channels, *image_shape)`` forward of ``build_model(model, num_classes,
    method, in_channels=in_channels, **knobs)``; None when this module does not know the model or method."""
    if method not in _METHODS:
        return None
    k = knobs.get("kernel_size") or 3
    size = (int(image_shape[0]), int(image_shape[1]))
    if model in _CIFAR:
        macs = _cifar_resnet(model, size, in_channels, num_classes, k)
    elif model == "aconv_simple":
        macs = _aconv_simple(size, in_channels, num_classes, k)
    elif model == "aconv_resnet":
        macs = _aconv_resnet(size, in_channels, num_classes, k, knobs)
    else:
        return None
    if method == "gmconv" and k > 1:
        # the dynamic stem (every model here starts with a k x k conv of the input): Linear(2C, hidden) then
        # the head Linear(hidden, outputs) on the pooled input
        hidden = max(1, math.floor(2 * in_channels / _SIGMA_REDUCTION + 1e-9))
        macs += 2 * in_channels * hidden + hidden * _SIGMA_OUTPUTS[knobs.get("sigma_pattern") or "sigma1_rsigma"]
    return macs
