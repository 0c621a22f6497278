"""Multiply-adds of a forward pass, counted per aten op as ``torch.utils.flop_counter.FlopCounterMode`` counts
them (its formulas, halved), without its cost.

Entering ``FlopCounterMode`` imports ``torch._dynamo`` (about 1.5 s on top of torch's own import, for a
plan that prices a sweep by FLOPs and does nothing else with torch): every ``TorchDispatchMode`` subclass has
its ``__torch_dispatch__`` wrapped in ``torch._disable_dynamo``, which imports dynamo on its first call.
``MacCounter`` opts out (nothing runs under ``torch.compile`` inside it) and keeps no per-module tally, so a
forward on the CPU imports nothing of dynamo. (On ``meta`` many kernels are Python decompositions through
``torch._refs`` wrappers that import it all the same.)
``tests/layers/test_macs.py`` holds the counts equal to ``FlopCounterMode``'s / 2 for every catalogue
model and method at several input sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["MacCounter", "count_macs"]

aten = torch.ops.aten
Shape = Sequence[int]


def _mm(a: Shape, b: Shape) -> int:
    return a[0] * b[1] * a[1]


def _bmm(a: Shape, b: Shape) -> int:
    return a[0] * a[1] * b[2] * a[2]


def _conv(x: Shape, w: Shape, out: Shape, transposed: bool) -> int:
    # FlopCounterMode's conv_flop_count / 2: every output (input, if transposed) position x the whole filter
    return prod((x if transposed else out)[2:]) * prod(w[2:]) * x[0] * w[0] * w[1]


# op packet -> multiply-adds from (args, out): the forward ops of FlopCounterMode's registry that a model's
# forward reaches under a dispatch mode (aten.convolution hides the backend convs below it)
_FORMULAS: dict[Any, Callable[[tuple, Any], int]] = {
    aten.mm: lambda a, out: _mm(a[0].shape, a[1].shape),
    aten.addmm: lambda a, out: _mm(a[1].shape, a[2].shape),
    aten.bmm: lambda a, out: _bmm(a[0].shape, a[1].shape),
    aten.baddbmm: lambda a, out: _bmm(a[1].shape, a[2].shape),
    aten.convolution: lambda a, out: _conv(a[0].shape, a[1].shape, out.shape, bool(a[6])),
    aten._convolution: lambda a, out: _conv(a[0].shape, a[1].shape, out.shape, bool(a[6])),
}
# the rest of FlopCounterMode's registry (attention, scaled mm, backward): a model running one of these is
# refused, not miscounted
_UNSUPPORTED = frozenset(getattr(aten, name) for name in (
    "_scaled_mm", "cudnn_convolution", "_slow_conv2d_forward", "convolution_overrideable", "convolution_backward",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention", "_flash_attention_forward", "_efficient_attention_forward",
    "_flash_attention_backward", "_efficient_attention_backward",
    "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward") if hasattr(aten, name))


class MacCounter(TorchDispatchMode):
    """Adds up the multiply-adds of the matrix products and convolutions run under it (``macs``)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # True (the default) wraps __torch_dispatch__ in torch._disable_dynamo, importing dynamo on first use
        return False

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        formula = _FORMULAS.get(packet)
        if formula is not None:
            self.macs += formula(args, out)
        elif packet in _UNSUPPORTED:
            raise NotImplementedError(f"count_macs: no formula for {packet} (use FlopCounterMode)")
        return out


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of ``model(x)`` (no autograd; the model's mode as it is)."""
    with torch.no_grad(), MacCounter() as counter:
        model(x)
    return counter.macs
