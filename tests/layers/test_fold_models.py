"""Folding is exact on every registry model x foldable method, and the folded model costs what the plain
model costs (GMConv Tables 1-2: same params and FLOPs). Base models are built once per module."""

import copy

import pytest
import torch
from torch import nn

from layers import MODEL_NAMES, GMConv2d, convert_model, count_params_flops, reparameterize_model
from layers.models.registry import build_model
from layers import ReparamConv2d
from layer_variants import calibrate_bn

SMALL = {"resnet20", "resnet56", "resnet18_cifar", "aconv_simple", "aconv_resnet"}
METHOD_KNOBS = {"stdconv": {"stnd": True}, "s-gmconv": {"sigma_init": 1.0}, "gmconv": {"sigma_init": 1.0},
                "coc": {}, "aconv": {}}


def _input_shape(name: str) -> tuple[int, int, int, int]:
    size = 28 if name == "aconv_simple" else 32 if name in SMALL else 64
    return (2, 3, size, size)


@pytest.fixture(scope="module")
def base_models():
    cache: dict[str, tuple[nn.Module, tuple[int, int]]] = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(0)
            model = build_model(name, 10).eval()
            cache[name] = (model, count_params_flops(model, (1,) + _input_shape(name)[1:]))
        return cache[name]
    return get


def _perturb_layer_params(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ReparamConv2d):
                for name, p in m.named_parameters(recurse=False):
                    if name not in ("weight", "bias"):
                        p.mul_(1 + 0.1 * torch.randn_like(p)).add_(0.01 * torch.randn_like(p))


@pytest.mark.parametrize("method", list(METHOD_KNOBS))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fold_exact_and_costs_equal_baseline(base_models, name, method):
    base, (base_params, base_flops) = base_models(name)
    model = copy.deepcopy(base)
    report = convert_model(model, method, **METHOD_KNOBS[method])
    assert len(report) > 0
    _perturb_layer_params(model)
    torch.manual_seed(1)
    x = torch.randn(_input_shape(name))
    calibrate_bn(model, x)
    with torch.no_grad():
        y = model(x)
        folded = reparameterize_model(model)
        y_folded = folded(x)
    assert torch.isfinite(y).all()
    scale = float(y.abs().max())
    torch.testing.assert_close(y_folded, y, atol=1e-5 * scale, rtol=0)
    remaining = [m for m in folded.modules() if isinstance(m, ReparamConv2d)]
    params, flops = count_params_flops(folded, (1,) + _input_shape(name)[1:])
    if method == "gmconv":
        assert len(remaining) == 1 and isinstance(remaining[0], GMConv2d) and remaining[0].dynamic
        sigma = remaining[0].sigma_module
        assert params == base_params + sum(p.numel() for p in sigma.parameters())
        linear_macs = sigma.fc1.in_features * sigma.fc1.out_features + sigma.fc2.in_features * sigma.fc2.out_features
        assert flops == base_flops + linear_macs
    else:
        assert remaining == []
        assert (params, flops) == (base_params, base_flops)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_stem_is_first_conv_in_module_order(base_models, name):
    """convert_model's and orth_loss's "stem" (first conv in module order) is the first conv applied."""
    model, _ = base_models(name)
    order: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, args, n=n: order.append(n))
               for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.randn(_input_shape(name)))
    finally:
        for h in handles:
            h.remove()
    first_declared = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert order[0] == first_declared
