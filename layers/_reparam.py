"""The shared base of every re-parameterisable conv in this package, and the checks all of them share.

``ReparamConv2d`` is an ``nn.Conv2d`` whose forward convolves with ``get_equivalent_kernel_bias()``; it gives
every foldable variant the same ``fold()`` (-> plain ``nn.Conv2d``) and the same initialisation contract:
``reset_parameters()`` draws ``weight``/``bias`` as ``nn.Conv2d`` does, then ``reset_variant()`` fills the
variant's own parameters and derived buffers. Nothing is filled only in ``__init__``, so a layer built on
the ``meta`` device, moved with ``to_empty()`` and reset equals one built directly (same seed, same draws).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ReparamConv2d", "check_odd_square_kernel"]


def check_odd_square_kernel(kernel_size: tuple[int, int], layer: str, *, min_size: int = 1) -> int:
    """Return ``k`` for a square odd kernel, else raise a one-line ``ValueError``."""
    kh, kw = kernel_size
    if kh != kw or kh % 2 == 0 or kh < min_size:
        allowed = f"odd and square, >= {min_size}" if min_size > 1 else "odd and square (1, 3, 5, ...)"
        raise ValueError(f"{layer}: kernel_size must be {allowed} (got {tuple(kernel_size)!r})")
    return kh


class ReparamConv2d(nn.Conv2d):
    """Base of the foldable variants: a conv whose effective kernel is computed from its parameters.

    Subclasses implement ``get_equivalent_kernel_bias()``; ``forward`` and ``fold`` use it, so the
    training-form output and the folded conv are the same computation by construction. A subclass with
    tensors of its own allocates them (any values) in ``__init__``, fills them in ``reset_variant()`` and
    ends ``__init__`` with ``self._variant_built = True; self.reset_variant()``.
    """

    foldable: bool = True
    # nn.Conv2d.__init__ calls reset_parameters() before a subclass has made its own tensors
    _variant_built: bool = False

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s init of ``weight``/``bias``, then the variant's (``reset_variant``); this module's
        own tensors only, not its children's (PyTorch's convention: ``to_empty`` + a reset per module)."""
        super().reset_parameters()
        if self._variant_built:
            self.reset_variant()

    def reset_variant(self) -> None:
        """Fill the variant's own parameters and derived buffers (nothing for a variant without any)."""

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.get_equivalent_kernel_bias()
        return self._conv_forward(x, weight, bias)

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same function (eval semantics), on the same device/dtype."""
        weight, bias = self.get_equivalent_kernel_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.groups, bias is not None, self.padding_mode,
                         device=weight.device, dtype=weight.dtype)
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
        conv.train(self.training)
        return conv
