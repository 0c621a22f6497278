"""Policy-based model surgery: swap the plain ``nn.Conv2d`` layers of an existing model for a variant.

Policies (GMConv paper Sec. 3/4.1; CoC code's builder; ACONV Sec. 4), decided per conv by
``layers.create.policy_layer`` and built by ``create_conv2d`` (the one place a method becomes a layer):
- ``stdconv``: nothing, unless ``stnd=True``: then every ``k > 1`` conv becomes a ``StdConv2d``;
- ``s-gmconv``: every ``k > 1`` conv becomes a static ``GMConv2d``;
- ``gmconv``: the stem (the first conv in module order, which is the first applied to the input in every
  registry model; a test checks it) becomes a dynamic ``GMConv2d``, every other ``k > 1`` conv static;
- ``coc``: every ``k > 1`` conv (depthwise included) becomes a ``CoCConv2d``; ``1x1`` ones by ``c1x1``:
  ``False`` plain (the released configs), ``True`` ``CoCConv2d`` too (the paper's reading), ``"ws"`` a
  weight-standardised ``StdConv2d`` (the released code's ``c1x1_ws``; 1x1 convs with a single weight per
  output channel cannot be standardised and are skipped);
- ``aconv``: every ``k > 1`` conv becomes an ``AdaptiveConv2d``.
``1x1`` convs otherwise stay plain; even or non-square kernels are skipped (listed in the report). Weights and
biases are copied from the replaced conv (not under CoC's ``init="released"``: the layer draws its own, as the
released code does); the new layer keeps the old one's device, dtype and train/eval mode. Only plain
``nn.Conv2d`` modules are candidates, so converting twice is a no-op; converting a model that holds
variants of another method raises. ``include``/``exclude`` are ``fnmatch`` patterns on module names.
"""

from __future__ import annotations

import fnmatch
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .create import create_conv2d, layer_class, policy_layer
from .knobs import METHODS, validate_knobs

__all__ = ["ConversionReport", "convert_model"]

log = logging.getLogger(__name__)

_ALL_VARIANTS = tuple(dict.fromkeys(layer_class(method) for method in METHODS))


@dataclass(frozen=True)
class ConversionReport:
    """What ``convert_model`` did: ``replaced`` and ``skipped`` hold ``(module name, kind or reason)``."""

    method: str
    replaced: tuple[tuple[str, str], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    already_converted: tuple[str, ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.replaced)

    def kinds(self) -> dict[str, int]:
        """Count of replacements per kind, e.g. ``{"GMConv2d(dynamic)": 1, "GMConv2d(static)": 19}``."""
        counts: dict[str, int] = {}
        for _, kind in self.replaced:
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns or ())


def _swap(conv: nn.Conv2d, method: str, knobs: dict[str, Any], *, stem: bool) -> nn.Conv2d:
    new = create_conv2d(method, conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, stem=stem,
                        device=conv.weight.device, dtype=conv.weight.dtype, **knobs)
    # CoC's init="released": the layer drew its kernels as the released code does
    own_init = knobs.get("init") == "released" and type(new) is layer_class(method)
    with torch.no_grad():
        if not own_init:
            new.weight.copy_(conv.weight)
        new.weight.requires_grad_(conv.weight.requires_grad)
        if conv.bias is not None:
            if not own_init:
                new.bias.copy_(conv.bias)
            new.bias.requires_grad_(conv.bias.requires_grad)
    return new.train(conv.training)


def convert_model(model: nn.Module, method: str, *, include: Sequence[str] | None = None,
                  exclude: Sequence[str] | None = None, **knobs: Any) -> ConversionReport:
    """Replace ``model``'s plain convs in place by ``method``'s policy; return what was replaced.

    ``include``: only module names matching one of these patterns are candidates (default: all);
    ``exclude``: names matching one of these are never converted. Knobs: ``layers.knob_names(method)``.
    """
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        raise ValueError(f"convert_model: model is wrapped in {type(model).__name__}; convert the bare model "
                         "before wrapping it (allowed: an unwrapped nn.Module)")
    if isinstance(model, nn.Conv2d):
        raise ValueError("convert_model: model is a bare nn.Conv2d; pass the module that contains it "
                         "(allowed: a container nn.Module)")
    validate_knobs(method, knobs)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    variants = [(n, m) for n, m in convs if isinstance(m, _ALL_VARIANTS)]
    foreign = [(n, m) for n, m in variants if type(m) is not layer_class(method)
               and not (method == "coc" and type(m) is layer_class("stdconv") and m.kernel_size == (1, 1))]
    if foreign:
        raise ValueError(f"convert_model: model already holds layers of another conv variant ({foreign[0][0]!r}: "
                         f"{type(foreign[0][1]).__name__}); build a fresh model for method {method!r}")
    if variants:
        log.info("convert_model: %d layers already converted to %s; nothing to do", len(variants), method)
        return ConversionReport(method, already_converted=tuple(n for n, _ in variants), knobs=dict(knobs))
    if method == "stdconv" and not knobs.get("stnd", False):
        return ConversionReport(method, knobs=dict(knobs))

    stem = convs[0][0] if convs else None
    replaced, skipped = [], []
    for name, conv in convs:
        if (include is not None and not _matches(name, include)) or _matches(name, exclude):
            continue
        kh, kw = conv.kernel_size
        target = policy_layer(method, (kh, kw), knobs)
        if target is None:
            continue
        if target != method and conv.weight[0].numel() < 2:  # CoC's c1x1="ws" on a 1x1 conv
            skipped.append((name, "1x1 with one weight per output channel: nothing to standardise"))
            continue
        if kh != kw or kh % 2 == 0:
            skipped.append((name, f"kernel_size {conv.kernel_size} is not odd and square"))
            continue
        new = _swap(conv, method, knobs, stem=name == stem)
        kind = type(new).__name__
        if method in ("s-gmconv", "gmconv"):
            kind += "(dynamic)" if new.dynamic else "(static)"
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new)
        replaced.append((name, kind))
    if not replaced:
        warnings.warn(f"convert_model: no conv matched method {method!r} (include={include!r}, "
                      f"exclude={exclude!r}); the model is unchanged", stacklevel=2)
    return ConversionReport(method, tuple(replaced), tuple(skipped), knobs=dict(knobs))
