"""The ACONV paper's networks (Tek et al. 2020, Sec. 4.2-4.3, Table 1), built with plain convs; method
"aconv" converts every ``k > 1`` conv into an ``AdaptiveConv2d``.

- ``aconv_simple``: two ``k x k`` convs of 32 filters, each + BN + ReLU, max-pool 2x2, dropout, dense
  256 + BN + ReLU, dropout, dense ``num_classes`` (softmax is in the loss); ``dropout`` 0.5 (Table 1 left,
  every dataset). Decisions: "same" padding (with 28x28 MNIST that gives the paper's 1.6M parameters); an
  ``AdaptiveAvgPool2d(14)`` after the max-pool, the identity for 28x28 inputs, lets the same net take other
  sizes (32x32 CIFAR and digits, 60x60 MNIST-cluttered, 50x37 LFW-Faces).
- ``aconv_resnet``: CIFAR ResNet v1 with ``blocks_per_stage`` = n residual blocks in each of its 3 stages,
  16 base filters doubling per stage, every conv ``k x k``, projection shortcuts (1x1 conv, stride 2) where
  the shape changes, as in the Keras ResNet the paper's code builds on. It has ``6n+2`` weighted layers:
  n = 1, 2, 3 give 8, 14, 20. Table 1 (right) pairs blocks 1/1/3/2/2 with "layers" 11/11/20/14/14: 20 and 14
  are 6n+2, the 11 printed for one block is not (6n+2 = 8; no count of the authors' ``resnet_s.py`` gives
  11 either); we build what the block count says, 8 layers for n = 1. ``dropout`` > 0 adds dropout after
  each stage and after the global pooling, where the authors' ``resnet_s.py`` puts it (Table 1: 0.5 for
  MNIST, none elsewhere; their code uses 0.25 for MNIST, we follow the table). Defaults: n = 3 (ResNet-20),
  no dropout.
``kernel_size`` defaults to 3 (the paper sweeps 3, 5, 7, 9).

``padding``: ``symmetric`` (default) pads ``k // 2`` on every side; ``tf_same`` pads as TF/Keras'
``padding='same'`` of the authors' code: ``max((ceil(H/s) - 1) * s + k - H, 0)`` in total, the smaller half
before. The two differ only for a strided conv on an even side (the ResNet's downsampling convs: TF pads
bottom/right only, so the symmetric output is shifted by a pixel); there ``TFSamePad2d`` pads explicitly
and the conv gets ``padding=0``, so the net stays the same after conversion and folding (both copy the
conv's padding). ``shortcut`` (``aconv_resnet``): ``projection`` (default, 1x1 conv with stride 2) or
``released``, the authors' ``resnet_s.py``: every second pixel (a 1x1 max-pool with stride 2) concatenated
with itself along the channels, no weights.

``released_init_`` re-initialises a built (and converted) net as the authors' Keras code does, for
``init: released``: ``tf14/Conv2DAdaptive_k.py`` behind the simple-net numbers gives the CONV layers
Keras' default ``glorot_uniform``, the ACONV kernels ``he_uniform``, the dense layers ``he_uniform`` with zero
biases, and keeps Keras' BatchNormalization defaults (momentum 0.99 of the running statistics, i.e.
torch's 0.01, eps 1e-3); ``tf14/resnet_s.py`` behind the ResNet numbers gives every conv and the
classifier ``he_normal`` and its BatchNormalization momentum 0.9 (torch's 0.1), eps 1e-5. Every conv has
``use_bias=False`` in both. ``init: torch`` keeps PyTorch's defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..aconv import AdaptiveConv2d
from ..catalogue import PADDINGS, SHORTCUTS

__all__ = ["PADDINGS", "SHORTCUTS", "TFSamePad2d", "tf_same_pads", "aconv_simple", "aconv_resnet",
           "AconvResNet", "released_init_"]



def tf_same_pads(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding of one side of length ``size`` as TF's ``padding='same'``."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class TFSamePad2d(nn.Module):
    """Zero-pads (N, C, H, W) as TF's ``padding='same'`` does for a ``kernel_size`` conv with ``stride``;
    the pads depend on the input's size, so they are computed per call."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = tf_same_pads(x.shape[-2], self.kernel_size, self.stride)
        left, right = tf_same_pads(x.shape[-1], self.kernel_size, self.stride)
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed} (got {value!r})")


def _pad_and_padding(k: int, stride: int, padding: str) -> tuple[nn.Module, int]:
    """The module before a ``k x k`` conv and the conv's own padding. TF's 'same' at stride 1 with an odd
    kernel is the symmetric ``k // 2``, so only strided convs need the explicit pad."""
    if padding == "tf_same" and stride > 1:
        return TFSamePad2d(k, stride), 0
    return nn.Identity(), k // 2


class _ReleasedShortcut(nn.Module):
    """``resnet_s.py``'s shortcut where the shape changes: every second pixel, concatenated with itself."""

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::2, ::2]
        return torch.cat([x, x], dim=1)


def aconv_simple(num_classes: int, in_channels: int = 3, kernel_size: int = 3,
                 dropout: float = 0.5, padding: str = "symmetric") -> nn.Sequential:
    # Both convs have stride 1, where tf_same and symmetric pad alike (odd kernels): the knob is accepted so
    # that a sweep names the authors' padding for both ACONV nets.
    _check_choice("padding", padding, PADDINGS)
    k = kernel_size
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, k, padding=k // 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, k, padding=k // 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(14), nn.Dropout(dropout), nn.Flatten(),
        nn.Linear(32 * 14 * 14, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(256, num_classes),
    )


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, k: int, padding: str = "symmetric",
                 shortcut: str = "projection") -> None:
        super().__init__()
        self.pad1, pad = _pad_and_padding(k, stride, padding)
        self.conv1 = nn.Conv2d(c_in, c_out, k, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, k, 1, k // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "released":
            if (stride, c_out) != (2, 2 * c_in):
                raise ValueError(f"shortcut 'released' needs stride 2 and doubled channels (got stride {stride}, "
                                 f"{c_in} -> {c_out})")
            self.shortcut = _ReleasedShortcut()
        else:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(self.pad1(x))))))
        return F.relu(out + self.shortcut(x))


class AconvResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, kernel_size: int, n: int = 3, width: int = 16,
                 dropout: float = 0.0, padding: str = "symmetric", shortcut: str = "projection") -> None:
        super().__init__()
        _check_choice("padding", padding, PADDINGS)
        _check_choice("shortcut", shortcut, SHORTCUTS)
        k = kernel_size
        self.conv1 = nn.Conv2d(in_channels, width, k, 1, k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        c_in = width
        for stage in range(3):
            c_out = width * 2**stage
            for j in range(n):
                blocks.append(_Block(c_in, c_out, 2 if (stage > 0 and j == 0) else 1, k, padding, shortcut))
                c_in = c_out
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))


def aconv_resnet(num_classes: int, in_channels: int = 3, kernel_size: int = 3, blocks_per_stage: int = 3,
                 dropout: float = 0.0, padding: str = "symmetric", shortcut: str = "projection") -> AconvResNet:
    return AconvResNet(num_classes, in_channels, kernel_size, n=blocks_per_stage, dropout=dropout,
                       padding=padding, shortcut=shortcut)


@torch.no_grad()
def released_init_(model: nn.Module) -> nn.Module:
    """Re-initialise an ACONV paper net (after conversion) as the authors' Keras code; see the module notes."""
    resnet = isinstance(model, AconvResNet)
    for m in model.modules():
        if isinstance(m, AdaptiveConv2d):
            # the sigmas keep their linspace start; the kernel is the Keras layer's he_uniform (both files)
            nn.init.kaiming_uniform_(m.weight, a=0.0, nonlinearity="relu")
        elif isinstance(m, nn.Conv2d):
            if resnet:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # untruncated he_normal (Keras 2.2)
            else:
                nn.init.xavier_uniform_(m.weight)  # Keras Conv2D's default kernel_initializer
        elif isinstance(m, nn.Linear):
            if resnet:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                nn.init.kaiming_uniform_(m.weight, a=0.0, nonlinearity="relu")
        else:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.momentum, m.eps = (0.1, 1e-5) if resnet else (0.01, 1e-3)
                m.reset_parameters()
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model
