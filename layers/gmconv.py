"""Gaussian Mask Convolution (GMConv; Chen, Li, Ning, He, "Gaussian Mask Convolution for Convolutional Neural
Networks"; paper in ../shared/papers). No code was released; this follows the paper's equations.

- ``gaussian_mask``: Eq. 3-6 on the kernel's pixel offsets from the centre ``c = (k-1)/2``:
  ``M(i, j) = exp(-((j-c)^2 / (2 sigma1^2) + (i-c)^2 / (2 sigma2^2)))`` (circular when sigma1 = sigma2).
  The max-normalisation of Eq. 4/6 divides by ``M(c, c) = exp(0) = 1``: for an odd kernel the centre tap is
  on the grid, so the normalised mask *is* the exponential; we keep it unnormalised (exactly equal, and one
  less reduction in every forward). ``sigma^2`` is guarded by ``+ SIGMA2_EPS`` so ``sigma -> 0`` gives a
  delta mask instead of NaN.
- ``SigmaModule``: Eq. 7, ``F(z) = W1 ReLU(W0 z) + B1`` with ``z = [GMP(x), GAP(x)]`` (2C values): a
  bias-free ``Linear(2C, floor(2C/r))`` -> ReLU -> ``Linear(., n)`` with bias.
- ``GMConv2d``: static (S-GMConv: one learnable sigma per layer, ``W' = W * M(sigma)``, folds into a plain
  conv) or dynamic (D-GMConv, for the stem: per-sample elliptic masks, applied with the grouped-conv trick in
  one ``conv2d`` call, cannot be folded).

Decisions where the paper is silent (also shown by ``extra_repr``):
- Dynamic sigmas are made positive by ``softplus(.) + SIGMA_FLOOR``. The second Linear starts with zero
  weights and a bias equal to ``softplus^-1(target - SIGMA_FLOOR)``, so every input starts with exactly
  ``sigma1 = sigma2 = sigma_init`` (``r_sigma = 1`` for ``sigma1_rsigma``): the dynamic stem begins where the
  static default (sigma 5) does, and the first layer gets gradient from the second step on, as with
  zero-initialised residual branches.
- The static sigma is an unconstrained real: the mask depends on ``sigma^2`` only (paper formula).
- ``stnd=True`` standardises the final (masked) kernel, per sample for the dynamic layer.
- ``last_sigma`` (non-persistent buffer) keeps the batch mean of ``(sigma1, sigma2)`` of the latest forward
  of a dynamic layer, for logging (``layers.sigma_summary``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.common_types import _size_2_t

from .knobs import SIGMA_PATTERNS
from ._reparam import ReparamConv2d, check_odd_square_kernel
from .stdconv import standardize_weight

__all__ = ["SIGMA_PATTERNS", "gaussian_mask", "per_sample_conv2d", "SigmaModule", "GMConv2d"]

SIGMA2_EPS = 1e-6
SIGMA_FLOOR = 1e-3


def offset_grids(kernel_size: int, *, device=None, dtype=None) -> tuple[Tensor, Tensor]:
    """Squared pixel offsets from the centre: ``dy2 (k, 1)`` (rows, i) and ``dx2 (1, k)`` (columns, j)."""
    offsets = torch.arange(kernel_size, device=device, dtype=dtype) - (kernel_size - 1) / 2
    return (offsets**2).view(-1, 1), (offsets**2).view(1, -1)


def gaussian_mask(dy2: Tensor, dx2: Tensor, sigma1: Tensor, sigma2: Tensor | None = None) -> Tensor:
    """The max-normalised Gaussian RF mask (paper Eq. 3-6).

    dy2 ``(k, 1)``, dx2 ``(1, k)``: squared offsets (``offset_grids``). sigma1 (horizontal) and sigma2
    (vertical, defaults to sigma1: circular mask) of any equal shape ``S`` (``()`` for a static layer,
    ``(B,)`` for per-sample masks). Returns ``S + (k, k)`` with the centre exactly 1.
    """
    s1 = sigma1[..., None, None]
    s2 = s1 if sigma2 is None else sigma2[..., None, None]
    return torch.exp(-(dx2 / (2 * (s1 * s1 + SIGMA2_EPS)) + dy2 / (2 * (s2 * s2 + SIGMA2_EPS))))


def per_sample_conv2d(x: Tensor, weight: Tensor, masks: Tensor, bias: Tensor | None, stride, padding,
                      dilation, groups: int, stnd: bool = False) -> Tensor:
    """Convolve each sample with its own masked kernel in a single grouped ``conv2d``.

    x ``(B, C_in, H, W)``, weight ``(C_out, C_in/groups, k, k)``, masks ``(B, k, k)`` -> ``(B, C_out, H', W')``.
    The batch is folded into the channels (``(1, B*C_in, H, W)``), the kernels stacked ``(B*C_out, ...)`` and
    ``groups`` multiplied by ``B``: no Python loop over samples.
    """
    batch = x.shape[0]
    kernels = (weight.unsqueeze(0) * masks[:, None, None]).flatten(0, 1)
    if stnd:
        kernels = standardize_weight(kernels)
    out = F.conv2d(x.flatten(0, 1).unsqueeze(0), kernels, None if bias is None else bias.repeat(batch),
                   stride, padding, dilation, groups * batch)
    return out.view(batch, -1, out.shape[-2], out.shape[-1])


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class _SigmaHead(nn.Linear):
    """The sigma module's last ``Linear``: zero weights and a bias of ``softplus^-1(v - SIGMA_FLOOR)`` per
    output, so every input starts at exactly ``init_values`` (module docstring)."""

    def __init__(self, in_features: int, init_values: tuple[float, ...], *, device=None, dtype=None) -> None:
        # read by reset_parameters(), which nn.Linear.__init__ calls
        self.init_values = tuple(float(v) for v in init_values)
        super().__init__(in_features, len(self.init_values), device=device, dtype=dtype)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()  # drawn and overwritten: keeps the random stream of every later layer
        self.weight.zero_()
        self.bias.copy_(torch.tensor([_inverse_softplus(v - SIGMA_FLOOR) for v in self.init_values]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", init_values={self.init_values}"


class SigmaModule(nn.Module):
    """Paper Eq. 7: predicts ``n_out`` positive values per sample from global max+avg pooled features."""

    def __init__(self, in_channels: int, n_out: int, reduction: float, init_values: tuple[float, ...], *,
                 device=None, dtype=None) -> None:
        super().__init__()
        if len(init_values) != n_out:
            raise ValueError(f"SigmaModule: init_values must hold n_out={n_out} values (got {init_values!r})")
        hidden = max(1, math.floor(2 * in_channels / reduction + 1e-9))
        self.fc1 = nn.Linear(2 * in_channels, hidden, bias=False, device=device, dtype=dtype)  # Eq. 7: W0 z
        self.fc2 = _SigmaHead(hidden, init_values, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, C, H, W)`` -> ``(B, n_out)``, every entry > ``SIGMA_FLOOR``."""
        z = torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)
        return F.softplus(self.fc2(F.relu(self.fc1(z)))) + SIGMA_FLOOR


class GMConv2d(ReparamConv2d):
    """Drop-in ``nn.Conv2d`` with a Gaussian receptive-field mask (S-GMConv or D-GMConv).

    ``weight``/``bias`` are the raw kernel and bias (a plain conv's state_dict loads with ``strict=False``;
    the extra keys are ``sigma`` or the ``sigma_module.*`` weights). Static layers expose
    ``get_equivalent_kernel_bias()``/``fold()``; dynamic ones raise there, they stay at inference.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _size_2_t, stride: _size_2_t = 1,
                 padding: _size_2_t | str = 0, dilation: _size_2_t = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, dynamic: bool = False,
                 sigma_init: float = 5.0, sigma_pattern: str = "sigma1_rsigma", reduction: float = 4 / 3,
                 stnd: bool = False, device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        k = check_odd_square_kernel(self.kernel_size, "GMConv2d")
        if sigma_pattern not in SIGMA_PATTERNS:
            raise ValueError(f"GMConv2d: sigma_pattern must be one of {SIGMA_PATTERNS} (got {sigma_pattern!r})")
        if not sigma_init > 0:
            raise ValueError(f"GMConv2d: sigma_init must be > 0 (got {sigma_init!r})")
        if not reduction > 0:
            raise ValueError(f"GMConv2d: reduction must be > 0 (got {reduction!r})")
        self.dynamic, self.sigma_init, self.sigma_pattern = bool(dynamic), float(sigma_init), sigma_pattern
        self.reduction, self.stnd = float(reduction), bool(stnd)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.register_buffer("dy2", torch.empty(k, 1, **factory), persistent=False)
        self.register_buffer("dx2", torch.empty(1, k, **factory), persistent=False)
        if self.dynamic:
            init = {"sigma": (sigma_init,), "sigma1_sigma2": (sigma_init, sigma_init),
                    "sigma1_rsigma": (sigma_init, 1.0)}[sigma_pattern]
            self.sigma_module = SigmaModule(in_channels, len(init), reduction, init, device=device, dtype=dtype)
            self.register_buffer("last_sigma", torch.empty(2, **factory), persistent=False)
        else:
            self.sigma = nn.Parameter(torch.empty((), **factory))
        self._variant_built = True
        self.reset_variant()

    @torch.no_grad()
    def reset_variant(self) -> None:
        """The offset grids, the static sigma (``sigma_init``) and ``last_sigma``; the sigma module resets
        its own ``Linear`` layers."""
        dy2, dx2 = offset_grids(self.kernel_size[0], device=self.dy2.device, dtype=self.dy2.dtype)
        self.dy2.copy_(dy2)
        self.dx2.copy_(dx2)
        if self.dynamic:
            self.last_sigma.fill_(self.sigma_init)
        else:
            self.sigma.fill_(self.sigma_init)

    @property
    def foldable(self) -> bool:  # type: ignore[override]
        return not self.dynamic

    def mask(self) -> Tensor:
        """The static ``(k, k)`` mask."""
        if self.dynamic:
            raise ValueError("GMConv2d.mask: a dynamic layer's mask depends on the input; use sample_sigmas(x)")
        return gaussian_mask(self.dy2, self.dx2, self.sigma)

    def sample_sigmas(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Dynamic layer: ``(sigma1, sigma2)``, each ``(B,)``, for the input batch ``x``."""
        out = self.sigma_module(x)
        if self.sigma_pattern == "sigma":
            return out[:, 0], out[:, 0]
        if self.sigma_pattern == "sigma1_sigma2":
            return out[:, 0], out[:, 1]
        return out[:, 0], out[:, 0] * out[:, 1]

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor | None]:
        if self.dynamic:
            raise ValueError("GMConv2d: a dynamic (D-GMConv) layer depends on its input and cannot be folded")
        weight = self.weight * self.mask()
        return (standardize_weight(weight) if self.stnd else weight), self.bias

    def forward(self, x: Tensor) -> Tensor:
        if not self.dynamic:
            return super().forward(x)
        sigma1, sigma2 = self.sample_sigmas(x)
        # detach, not no_grad(): FX/compile graphs keep no context managers, and the buffer must stay a leaf.
        self.last_sigma.copy_(torch.stack([sigma1.mean(), sigma2.mean()]).detach())
        masks = gaussian_mask(self.dy2, self.dx2, sigma1, sigma2)
        padding = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return per_sample_conv2d(x, self.weight, masks, self.bias, self.stride, padding, self.dilation,
                                 self.groups, self.stnd)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", dynamic={self.dynamic}, sigma_init={self.sigma_init}"
        if self.dynamic:
            s += (f", sigma_pattern={self.sigma_pattern}, reduction={self.reduction:.4g}"
                  f", positivity=softplus+{SIGMA_FLOOR}, init=exact")
        return s + f", stnd={self.stnd}"
