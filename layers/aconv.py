"""Adaptive convolution kernels (ACONV; Tek, Çam, Karlı, "Adaptive Convolution Kernel for Artificial Neural
Networks", 2020; code: btekgit/AdaptiveCNN, Keras).

Each output filter ``f`` has a Gaussian envelope on the kernel grid normalised to ``[0, 1]``
(``u = (x/(k-1), y/(k-1))``, centre ``mu = (0.5, 0.5)`` fixed):
``U_f(p) = exp(-||u_p - mu||^2 / (2 sigma_f^2 + 1e-8))``, scaled to RMS 1 (paper Eq. 21, code ``norm=2``):
``s_f = k / ||U_f||_F`` so ``sum(U^2) = k^2``. The conv uses ``W' = (s_f U_f) * W`` (broadcast over input
channels), which folds into a plain conv. Sigmas start at ``linspace(lo, hi, C_out)`` (paper: [0.1, 0.5])
and are clipped into ``sigma_clip`` (default ``[1/k, k]``) after every optimiser step (Sec. 3.3,
Algorithm 1): call ``clamp_adaptive_sigmas(model)``.

Decision: ``stnd=True`` standardises the final (enveloped) kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.common_types import _size_2_t

from ._reparam import ReparamConv2d, check_odd_square_kernel
from .stdconv import standardize_weight

__all__ = ["adaptive_envelope", "AdaptiveConv2d", "clamp_adaptive_sigmas"]

ENVELOPE_EPS = 1e-8


def normalised_grid_dist2(kernel_size: int, *, device=None, dtype=None) -> Tensor:
    """``||u_p - mu||^2`` on the ``[0, 1]`` grid, ``(k, k)``."""
    u = torch.arange(kernel_size, device=device, dtype=dtype) / (kernel_size - 1) - 0.5
    return u.view(-1, 1) ** 2 + u.view(1, -1) ** 2


def adaptive_envelope(dist2: Tensor, sigma: Tensor) -> Tensor:
    """RMS-normalised envelopes ``s_f U_f``: dist2 ``(k, k)``, sigma ``(C_out,)`` -> ``(C_out, k, k)``.

    Each envelope satisfies ``sum(U^2) = k^2`` (paper Eq. 21) for any sigma.
    """
    envelope = torch.exp(-dist2 / (2 * sigma[:, None, None] ** 2 + ENVELOPE_EPS))
    k = dist2.shape[-1]
    return envelope * (k / envelope.square().sum(dim=(1, 2), keepdim=True).sqrt())


class AdaptiveConv2d(ReparamConv2d):
    """Drop-in ``nn.Conv2d`` with one learnable Gaussian envelope width ``sigma`` per output filter."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _size_2_t, stride: _size_2_t = 1,
                 padding: _size_2_t | str = 0, dilation: _size_2_t = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 sigma_init: float | Sequence[float] = (0.1, 0.5),
                 sigma_clip: tuple[float, float] | None = None, stnd: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        k = check_odd_square_kernel(self.kernel_size, "AdaptiveConv2d", min_size=3)
        if isinstance(sigma_init, (int, float)):
            if not sigma_init > 0:
                raise ValueError(f"AdaptiveConv2d: sigma_init must be > 0 (got {sigma_init!r})")
        else:
            bounds = tuple(float(v) for v in sigma_init)
            if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
                raise ValueError(f"AdaptiveConv2d: sigma_init must be a float > 0 or (lo, hi) with "
                                 f"0 < lo <= hi (got {sigma_init!r})")
        clip = (1.0 / k, float(k)) if sigma_clip is None else tuple(float(v) for v in sigma_clip)
        if len(clip) != 2 or not 0 < clip[0] <= clip[1]:
            raise ValueError(f"AdaptiveConv2d: sigma_clip must be (lo, hi) with 0 < lo <= hi (got {sigma_clip!r})")
        self.sigma_init, self.sigma_clip, self.stnd = sigma_init, clip, bool(stnd)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.sigma = nn.Parameter(torch.empty(out_channels, **factory))
        self.register_buffer("dist2", torch.empty(k, k, **factory), persistent=False)
        self._variant_built = True
        self.reset_variant()

    @torch.no_grad()
    def reset_variant(self) -> None:
        """Sigmas from ``sigma_init`` (one value, or ``linspace(lo, hi, C_out)``) and the grid distances."""
        if isinstance(self.sigma_init, (int, float)):
            self.sigma.fill_(float(self.sigma_init))
        else:
            lo, hi = (float(v) for v in self.sigma_init)
            self.sigma.copy_(torch.linspace(lo, hi, self.out_channels, device=self.sigma.device,
                                            dtype=self.sigma.dtype))
        self.dist2.copy_(normalised_grid_dist2(self.kernel_size[0], device=self.dist2.device,
                                               dtype=self.dist2.dtype))

    def envelope(self) -> Tensor:
        """``(C_out, k, k)``, RMS-normalised."""
        return adaptive_envelope(self.dist2, self.sigma)

    @torch.no_grad()
    def clamp_sigma_(self) -> None:
        """Clip sigma into ``sigma_clip`` in place (call after each optimiser step)."""
        self.sigma.clamp_(*self.sigma_clip)

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor | None]:
        weight = self.weight * self.envelope()[:, None]
        return (standardize_weight(weight) if self.stnd else weight), self.bias

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", sigma_init={self.sigma_init}, "
                f"sigma_clip=({self.sigma_clip[0]:.4g}, {self.sigma_clip[1]:.4g}), stnd={self.stnd}")


def clamp_adaptive_sigmas(model: nn.Module) -> None:
    """Clip the sigma of every ``AdaptiveConv2d`` in ``model`` (no-op without any)."""
    for module in model.modules():
        if isinstance(module, AdaptiveConv2d):
            module.clamp_sigma_()
