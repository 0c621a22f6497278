"""The optimiser of a recipe: SGD / Adam / AdamW with weight-decay groups split by module type.

With ``no_bn_weight_decay`` the parameters of normalisation layers (every BatchNorm / GroupNorm / LayerNorm /
InstanceNorm / LocalResponseNorm subclass) go to a group without weight decay, chosen by the module's type as
torchvision's ``split_normalization_params`` does, never by parameter name (ffcv's ``'bn' in name`` misses
``downsample.1``). Everything else, including the learned sigmas of GMConv/ACONV, keeps the recipe's decay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from orchestrator.spec.names import OPTIMIZERS
from orchestrator.spec.schema import OptimizerSpec

__all__ = ["BUILDERS", "NORM_TYPES", "build_optimizer", "split_normalization_params"]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def split_normalization_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Return (params of normalisation modules, every other trainable param), each parameter once."""
    norm: list[nn.Parameter] = []
    other: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (norm if isinstance(module, NORM_TYPES) else other).append(param)
    return norm, other


def build_optimizer(model: nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """Build the optimiser named by ``spec.name`` over ``model``'s trainable parameters."""
    if spec.name not in BUILDERS:
        raise ValueError(f"optimizer.name: unknown optimiser {spec.name!r}; allowed: {', '.join(OPTIMIZERS)}")
    if spec.no_bn_weight_decay:
        norm, other = split_normalization_params(model)
        groups = [{"params": other, "weight_decay": spec.weight_decay}]
        if norm:
            groups.append({"params": norm, "weight_decay": 0.0})
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": spec.weight_decay}]
    return BUILDERS[spec.name](groups, spec)


# One builder per name of ``orchestrator.spec.names.OPTIMIZERS`` (a test holds them to the same set).
BUILDERS: dict[str, Callable[[list[dict[str, Any]], OptimizerSpec], torch.optim.Optimizer]] = {
    "sgd": lambda groups, spec: torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov),
    "adam": lambda groups, spec: torch.optim.Adam(groups, lr=spec.lr),
    "adamw": lambda groups, spec: torch.optim.AdamW(groups, lr=spec.lr),
}
