"""The shared table of conv variants: one row per variant with canonical arguments.

``make(in_channels, out_channels, kernel_size, **conv_kwargs)`` builds the layer; ``sigma_params`` names the
parameters whose gradients ``gradcheck`` verifies (besides the input and ``weight``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from layers import AdaptiveConv2d, CoCConv2d, GMConv2d, StdConv2d


@dataclass(frozen=True)
class Variant:
    id: str
    make: Callable[..., nn.Conv2d]
    sigma_params: tuple[str, ...] = ()
    foldable: bool = True
    min_kernel: int = 1
    extra_kwargs: dict = field(default_factory=dict)


def _factory(cls, **extra):
    def make(c_in, c_out, k, **kw):
        return cls(c_in, c_out, k, **kw, **extra)
    return make


VARIANTS: tuple[Variant, ...] = (
    Variant("stdconv", _factory(StdConv2d)),
    Variant("s-gmconv", _factory(GMConv2d), ("sigma",)),
    Variant("s-gmconv-stnd", _factory(GMConv2d, stnd=True, sigma_init=1.5), ("sigma",)),
    Variant("d-gmconv-sigma1_rsigma", _factory(GMConv2d, dynamic=True, sigma_init=1.5),
            ("sigma_module.fc2.bias", "sigma_module.fc1.weight"), foldable=False),
    Variant("d-gmconv-sigma", _factory(GMConv2d, dynamic=True, sigma_pattern="sigma", sigma_init=1.5),
            ("sigma_module.fc2.bias",), foldable=False),
    Variant("d-gmconv-sigma1_sigma2-stnd", _factory(GMConv2d, dynamic=True, sigma_pattern="sigma1_sigma2",
                                                    sigma_init=1.5, stnd=True),
            ("sigma_module.fc2.bias",), foldable=False),
    Variant("coc", _factory(CoCConv2d), ("super_weight", "super_ln_weight", "final_ln_weight")),
    Variant("coc-light-sl2", _factory(CoCConv2d, wsc=False, sl=2, skp=4), ("super_weight",)),
    Variant("coc-plain-stnd", _factory(CoCConv2d, skip=False, super_norm=False, final_norm=False, wsc=False,
                                       dilate=False, stnd=True, sa=3), ("super_weight",)),
    # the released code's options: trainable padding kernels (sa=3: every C_out below pads), its init, and
    # the super-conv bias it has with wsc and no super norm
    Variant("coc-released-pad-bias", _factory(CoCConv2d, sa=3, coc_pad="trainable", init="released",
                                              super_norm=False), ("super_weight", "pad_weight", "super_bias")),
    Variant("aconv", _factory(AdaptiveConv2d), ("sigma",), min_kernel=3),
    Variant("aconv-const-stnd", _factory(AdaptiveConv2d, sigma_init=0.4, stnd=True), ("sigma",), min_kernel=3),
)

# Conv geometries every variant must handle like nn.Conv2d: (c_in, c_out, k, conv kwargs).
GEOMETRIES: tuple[tuple[int, int, int, dict], ...] = (
    (4, 8, 3, {}),
    (4, 6, 3, {"padding": 1}),                       # C_out not a multiple of sa^2
    (4, 8, 5, {"stride": 2, "padding": 2}),
    (4, 8, 3, {"dilation": 2, "padding": 2, "bias": False}),
    (4, 8, 3, {"groups": 2, "padding": 1}),
    (6, 6, 3, {"groups": 6, "padding": 1, "stride": 2}),  # depthwise
    (3, 5, 7, {"stride": 2, "padding": 3}),          # stem-like
    (4, 4, 3, {"padding": 1, "padding_mode": "reflect"}),
    (4, 8, 1, {}),                                   # 1x1 (not for ACONV)
)


def calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Running stats = this batch's stats, so eval-mode activations keep a sane scale at any depth."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
