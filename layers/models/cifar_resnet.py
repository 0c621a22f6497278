"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2), the
GMConv paper's Table 1 models.

- ``resnet20`` / ``resnet56``: ``6n+2`` layers, widths 16/32/64, parameter-free shortcut "option A"
  (stride-2 subsampling + zero channel padding) as in the paper: 0.27M / 0.85M params, 41M / 126M MACs
  at 32x32 (GMConv Table 1: 0.27M/42M, 0.85M/128M).
- ``resnet18_cifar``: ImageNet ResNet-18 blocks with a 3x3 stride-1 stem and no max-pool, 1x1-conv
  projection shortcuts (the common CIFAR ResNet-18): 11.22M params with 100 classes, 557M MACs.
``kernel_size`` replaces every 3x3 conv (stem included) with ``k x k``, padding ``k // 2``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BasicBlock", "CifarResNet", "resnet20", "resnet56", "resnet18_cifar"]


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)


class ShortcutA(nn.Module):
    """He et al. option A: subsample by the stride and zero-pad the new channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, kernel_size: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, kernel_size, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv(c_out, c_out, kernel_size)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(c_in, c_out, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], num_classes: int, in_channels: int,
                 kernel_size: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, widths[0], kernel_size)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, c_in = [], widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c_in, width, 2 if (i > 0 and j == 0) else 1, kernel_size, shortcut))
                c_in = width
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet20(num_classes: int, in_channels: int = 3, kernel_size: int = 3) -> CifarResNet:
    return CifarResNet((3, 3, 3), (16, 32, 64), num_classes, in_channels, kernel_size, "A")


def resnet56(num_classes: int, in_channels: int = 3, kernel_size: int = 3) -> CifarResNet:
    return CifarResNet((9, 9, 9), (16, 32, 64), num_classes, in_channels, kernel_size, "A")


def resnet18_cifar(num_classes: int, in_channels: int = 3, kernel_size: int = 3) -> CifarResNet:
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, kernel_size, "B")
