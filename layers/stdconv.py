"""Weight standardisation (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
Standardization", 2019).

``standardize_weight`` is the one helper every variant calls when built with ``stnd=True`` (CoC paper,
Table 1 uses it alone and with CoC). It follows the official WS code and CoC's ``Wsc2d``: per output
channel over ``(C_in/groups, k, k)``, *unbiased* std, ``eps`` added to the std (not the variance).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.common_types import _size_2_t

from ._reparam import ReparamConv2d

__all__ = ["standardize_weight", "StdConv2d"]

WS_EPS = 1e-5


def standardize_weight(weight: Tensor, eps: float = WS_EPS) -> Tensor:
    """``(W - mean) / (std + eps)`` per output channel.

    weight: ``(C_out, C_in/groups, kh, kw)`` (or any ``(N, ...)``: every leading row is standardised over
    the rest). Returns a tensor of the same shape. The std is unbiased (Bessel), as in the WS reference code.
    """
    flat = weight.flatten(1)
    var, mean = torch.var_mean(flat, dim=1, correction=1, keepdim=True)
    return ((flat - mean) / (var.sqrt() + eps)).view_as(weight)


class StdConv2d(ReparamConv2d):
    """``nn.Conv2d`` with weight standardisation (the model of timm ``layers/std_conv.py: StdConv2d``).

    ``weight``/``bias`` are the raw parameters, so a plain conv's state_dict loads. ``eps`` is added to the
    unbiased std (WS reference code), not to the variance as timm does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _size_2_t, stride: _size_2_t = 1,
                 padding: _size_2_t | str = 0, dilation: _size_2_t = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, eps: float = WS_EPS,
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        if self.weight[0].numel() < 2:
            raise ValueError(f"StdConv2d: weight standardisation needs >= 2 weights per output channel "
                             f"(got in_channels/groups * k * k = {self.weight[0].numel()})")
        self.eps = eps

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor | None]:
        return standardize_weight(self.weight, self.eps), self.bias

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stnd=True, eps={self.eps}"

