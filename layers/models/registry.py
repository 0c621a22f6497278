"""The model registry and ``build_model``: a dict filled by a decorator, strict both ways (a duplicate
name raises at import, an unknown name raises listing the valid ones; torchvision ``models/_api.py``).

Every builder makes a plain-conv model without pretrained weights, ``(num_classes, in_channels)``
(+ ``kernel_size`` where the model has that knob, + the ``ARCH_KNOBS`` it declares: ``blocks_per_stage``,
``dropout``, ``padding``, ``shortcut``); ``build_model`` then applies ``convert_model``.
Models built for 3-channel input get their stem conv rebuilt for ``in_channels != 3`` (e.g. MNIST).
CoC's released configs use ``wsc`` (super-kernel standardisation) for ResNet/HRNet and not for the light
models (MobileNetV3, ShuffleNetV2); the entry's ``coc_wsc`` carries that default (MobileNetV2 and AlexNet
are not in CoC's configs: we treat MobileNetV2 as light and AlexNet like ResNet).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..catalogue import ARCH_KNOBS, ModelFacts, declare_model, model_facts, model_names, validate_build_args
from ..convert import convert_model
from ..knobs import METHOD_KNOBS
from .aconv_nets import aconv_resnet, aconv_simple, released_init_
from .cifar_resnet import resnet18_cifar, resnet20, resnet56

__all__ = ["register_model", "build_model", "validate_build_args", "model_names", "ARCH_KNOBS"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    kernel_size_knob: bool
    coc_wsc: bool
    arch_knobs: tuple[str, ...] = ()
    # ``init: released``: re-initialise the converted model as the authors' released code does
    released_init: Callable[[nn.Module], nn.Module] | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, kernel_size_knob: bool = False, coc_wsc: bool = True,
                   arch_knobs: tuple[str, ...] = (),
                   released_init: Callable[[nn.Module], nn.Module] | None = None) -> Callable:
    """Decorator registering ``builder(num_classes, in_channels[, kernel_size][, arch knobs])`` under ``name``.

    ``released_init(model)`` re-initialises the converted model as the authors' code (arch knob ``init``).
    """
    if released_init is not None:
        arch_knobs = (*arch_knobs, "init")
    unknown = set(arch_knobs) - set(ARCH_KNOBS)
    if unknown:
        raise ValueError(f"register_model: unknown arch knob(s) {sorted(unknown)} (allowed: {sorted(ARCH_KNOBS)})")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"register_model: name {name!r} is already registered")
        # a built-in's facts are declared (with its kernels) in layers.catalogue: the two must agree
        known = model_facts(name).kernels if name in model_names() else None
        declare_model(ModelFacts(name, kernel_size_knob, coc_wsc, tuple(arch_knobs), known))
        _REGISTRY[name] = ModelEntry(name, builder, kernel_size_knob, coc_wsc, tuple(arch_knobs), released_init)
        return builder
    return decorate


def _with_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Rebuild the stem (first conv in module order) of a 3-channel model for ``in_channels``."""
    if in_channels == 3:
        return model
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)
    return model


register_model("resnet20", kernel_size_knob=True)(resnet20)
register_model("resnet56", kernel_size_knob=True)(resnet56)
register_model("resnet18_cifar", kernel_size_knob=True)(resnet18_cifar)
register_model("aconv_simple", kernel_size_knob=True, arch_knobs=("dropout", "padding"),
               released_init=released_init_)(aconv_simple)
register_model("aconv_resnet", kernel_size_knob=True,
               arch_knobs=("blocks_per_stage", "dropout", "padding", "shortcut"),
               released_init=released_init_)(aconv_resnet)


# torchvision.models and timm are imported by the builders that need them, not by ``import layers``: timm
# alone adds ~1 s to every trial's start-up, and the CIFAR ResNets (most trials) need neither.
def _torchvision(name: str, *, coc_wsc: bool = True) -> None:
    @register_model(name, coc_wsc=coc_wsc)
    def build(num_classes: int, in_channels: int = 3) -> nn.Module:
        import torchvision.models

        factory = getattr(torchvision.models, name)
        return _with_in_channels(factory(weights=None, num_classes=num_classes), in_channels)


def _timm(name: str) -> None:
    @register_model(name)
    def build(num_classes: int, in_channels: int = 3) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)


for _name in ("resnet18", "resnet50", "alexnet"):
    _torchvision(_name)
for _name in ("mobilenet_v2", "shufflenet_v2_x1_0", "mobilenet_v3_small"):
    _torchvision(_name, coc_wsc=False)
# CoC's HRNet18-small (released config hrnet18s: 18/36/72/144 channels, 3 and 2 modules in stages 3-4) is
# timm's hrnet_w18_small_v2; hrnet_w18_small is HRNet's v1 (16/32/64/128, one module per stage).
for _name in ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18"):
    _timm(_name)

assert tuple(_REGISTRY) == model_names(), "layers.catalogue declares every built-in model, in order"


def build_model(name: str, num_classes: int, method: str = "stdconv", *, in_channels: int = 3,
                **knobs: Any) -> nn.Module:
    """Build registry model ``name`` (random init) and convert its convs by ``method``'s policy.

    knobs: ``kernel_size`` (models with that knob; None = model default), the ``ARCH_KNOBS`` the model
    declares (None = model default) and ``METHOD_KNOBS[method]``. ``init="released"``: the model's
    ``released_init`` and, for method ``coc``, the CoC layers' released init.
    Raises ``ValueError`` for an unknown name, method or knob, or an invalid combination.
    """
    validate_build_args(name, num_classes, method, in_channels=in_channels, **knobs)
    entry = _REGISTRY[name]
    extra = {k: knobs.pop(k) for k in ("kernel_size", *ARCH_KNOBS) if k in knobs}
    init = extra.pop("init", None) or "torch"
    model = entry.builder(num_classes, in_channels, **{k: v for k, v in extra.items() if v is not None})
    if method == "coc" and "wsc" in METHOD_KNOBS[method]:
        knobs.setdefault("wsc", entry.coc_wsc)
    if method == "coc" and init == "released":
        # The model's own released init (if any) first, on the plain convs; the CoC layers then draw their
        # kernels as the released Coc2d, which a backbone's init_weights does not touch (it is no nn.Conv2d).
        if entry.released_init is not None:
            entry.released_init(model)
        knobs["init"] = "released"
    report = convert_model(model, method, **knobs)
    if init == "released" and method != "coc":
        entry.released_init(model)
    log.info("build_model(%s, %s, init=%s): replaced %s", name, method, init, report.kinds())
    return model
