"""Weight-decay groups split by module type (orchestrator.train.optim)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from orchestrator.spec.schema import OptimizerSpec
from orchestrator.train.optim import build_optimizer, split_normalization_params


def small_net() -> nn.Module:
    # A residual-style block whose shortcut BatchNorm is named "downsample.1": a name-based split misses it.
    net = nn.Module()
    net.conv = nn.Conv2d(3, 4, 3)
    net.bn = nn.BatchNorm2d(4)
    net.downsample = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    net.norm = nn.GroupNorm(2, 4)
    net.fc = nn.Linear(4, 2)
    return net


def test_split_by_module_type_catches_downsample_bn() -> None:
    net = small_net()
    norm, other = split_normalization_params(net)
    norm_ids = {id(p) for p in norm}
    for module in (net.bn, net.downsample[1], net.norm):
        assert {id(p) for p in module.parameters()} <= norm_ids
    assert {id(p) for p in other} == {id(p) for m in (net.conv, net.downsample[0], net.fc) for p in m.parameters()}
    assert len(norm) + len(other) == len(list(net.parameters()))


@pytest.mark.parametrize(
    "name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_no_bn_weight_decay_groups(name: str, cls: type) -> None:
    net = small_net()
    opt = build_optimizer(net, OptimizerSpec(name=name, lr=0.05, weight_decay=5e-4, no_bn_weight_decay=True))
    assert isinstance(opt, cls)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 5e-4]
    no_decay = next(g for g in opt.param_groups if g["weight_decay"] == 0.0)
    assert len(no_decay["params"]) == 6  # weight + bias of three norm layers
    assert all(g["lr"] == 0.05 for g in opt.param_groups)


def test_single_group_by_default_with_sgd_knobs() -> None:
    opt = build_optimizer(small_net(), OptimizerSpec(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4))
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 1e-4)


def test_builders_cover_exactly_the_registered_optimisers():
    from orchestrator.spec.names import OPTIMIZERS
    from orchestrator.spec.sections import OptimizerName
    from orchestrator.train.optim import BUILDERS

    assert list(BUILDERS) == list(OPTIMIZERS) == list(OptimizerName.__args__)
    for name in OPTIMIZERS:  # each builds a torch optimiser over the net
        assert isinstance(build_optimizer(small_net(), OptimizerSpec(name=name)), torch.optim.Optimizer)
