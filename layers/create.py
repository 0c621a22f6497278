"""``create_conv2d``: the one place a method name becomes a conv layer (timm ``layers/create_conv2d.py``).

The method's layer class comes from the registry (``layers.knobs.METHOD_REGISTRY``), its knobs are checked
there and passed under the layer's own keywords (``layer_kwargs``); ``policy_layer`` decides which convs
stay plain (1x1 ones, but CoC's by ``c1x1``; all under ``stdconv`` without ``stnd``). ``gmconv``'s dynamic
layer is the stem's (``stem=True``); every other conv of that method is static. ``layers.convert`` applies
the same policy to a whole model.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from torch import nn
from torch.nn.common_types import _size_2_t

from .knobs import METHOD_REGISTRY, layer_kwargs, validate_knobs

__all__ = ["create_conv2d", "layer_class", "policy_layer", "same_padding"]


def layer_class(method: str) -> type[nn.Conv2d]:
    """The layer class ``method`` converts convs to (``METHOD_REGISTRY[method].layer``)."""
    validate_knobs(method, {})
    module, _, name = METHOD_REGISTRY[method].layer.rpartition(".")
    return getattr(import_module(f".{module}", __package__), name)


def same_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Symmetric padding keeping the size at stride 1 (``ceil(size / stride)`` otherwise, timm's rule)."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def _pair_ints(value: _size_2_t) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def policy_layer(method: str, kernel_size: tuple[int, int], knobs: dict[str, Any]) -> str | None:
    """The method whose layer a ``kernel_size`` conv becomes under ``method``'s policy, None to keep it plain.

    Only ``k > 1`` convs change (``stdconv`` only with ``stnd``), but CoC's ``1x1`` ones follow ``c1x1``:
    plain, CoC (``True``) or weight-standardised (``"ws"``). Decided before anything is built, so a conv left
    plain costs no initialisation (and no draw from the random stream).
    """
    if method == "stdconv" and not knobs.get("stnd", False):
        return None
    if tuple(kernel_size) == (1, 1):
        c1x1 = knobs.get("c1x1", False) if method == "coc" else False
        return "coc" if c1x1 is True else "stdconv" if c1x1 == "ws" else None
    return method


def create_conv2d(method: str, in_channels: int, out_channels: int, kernel_size: _size_2_t,
                  stride: _size_2_t = 1, padding: _size_2_t | str | None = None, dilation: _size_2_t = 1,
                  groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, stem: bool = False,
                  device=None, dtype=None, **knobs: Any) -> nn.Conv2d:
    """The conv ``method`` puts in place of ``nn.Conv2d(in_channels, out_channels, kernel_size, ...)``.

    ``padding=None`` pads symmetrically (``same_padding``). ``knobs``: ``knob_names(method)`` (registry
    names, e.g. ``aconv_sigma_init``). Returns a plain ``nn.Conv2d`` where the policy keeps one
    (``policy_layer``); under ``gmconv`` the ``stem`` is the dynamic D-GMConv. Raises ``ValueError`` for an
    unknown method or knob, a bad knob value, or a kernel the layer refuses (even or non-square).
    """
    validate_knobs(method, knobs)
    kh, kw = _pair_ints(kernel_size)
    if padding is None:
        sh, sw = _pair_ints(stride)
        dh, dw = _pair_ints(dilation)
        padding = (same_padding(kh, sh, dh), same_padding(kw, sw, dw))
    conv_args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode)
    factory = {"device": device, "dtype": dtype}
    target = policy_layer(method, (kh, kw), knobs)
    if target is None:
        return nn.Conv2d(*conv_args, **factory)
    kwargs = layer_kwargs(target, knobs) if target == method else {}
    if target in ("s-gmconv", "gmconv"):
        kwargs["dynamic"] = target == "gmconv" and stem
    return layer_class(target)(*conv_args, **kwargs, **factory)
