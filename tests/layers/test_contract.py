"""Contract tests driven by the shared variant table: every variant is a drop-in ``nn.Conv2d``."""

import pytest
import torch
import torch.nn.functional as F
from layer_variants import GEOMETRIES, VARIANTS
from torch import nn
from torch.func import functional_call

from layers import reparameterize_model

CASES = [pytest.param(v, g, id=f"{v.id}-{i}") for v in VARIANTS for i, g in enumerate(GEOMETRIES)
         if g[2] >= v.min_kernel]


def _pair(variant, geometry, dtype=torch.float32):
    c_in, c_out, k, kwargs = geometry
    plain = nn.Conv2d(c_in, c_out, k, **kwargs, dtype=dtype)
    layer = variant.make(c_in, c_out, k, **kwargs, dtype=dtype)
    return plain, layer


def _perturb(layer: nn.Module, scale: float = 0.05) -> None:
    """Move every parameter off its structured init (zeros, ones) so gradients are informative."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("variant,geometry", CASES)
def test_shape_and_type_like_conv2d(variant, geometry):
    plain, layer = _pair(variant, geometry)
    x = torch.randn(2, geometry[0], 11, 13)
    assert isinstance(layer, nn.Conv2d)
    assert layer(x).shape == plain(x).shape
    assert layer.weight.shape == plain.weight.shape
    assert (layer.bias is None) == (plain.bias is None)


@pytest.mark.parametrize("variant,geometry", CASES)
def test_loads_plain_conv_state_dict(variant, geometry):
    plain, layer = _pair(variant, geometry)
    result = layer.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert not {"weight", "bias"} & set(result.missing_keys)
    assert torch.equal(layer.weight, plain.weight)
    clone = variant.make(*geometry[:3], **geometry[3])
    clone.load_state_dict(layer.state_dict())  # its own state_dict round-trips strictly
    x = torch.randn(2, geometry[0], 9, 9)
    torch.testing.assert_close(clone(x), layer(x))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
@pytest.mark.parametrize("geometry", [(2, 4, 3, {"padding": 1}), (2, 4, 3, {"groups": 2, "stride": 2}),
                                      (2, 3, 5, {"padding": 2, "dilation": 1})], ids=["plain", "grouped", "k5"])
def test_gradcheck_float64(variant, geometry):
    layer = variant.make(*geometry[:3], **geometry[3], dtype=torch.float64)
    _perturb(layer)
    names = ("weight",) + variant.sigma_params
    params = {n: p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters()}
    x = torch.randn(2, geometry[0], 6, 6, dtype=torch.float64, requires_grad=True)

    def run(x, *tensors):
        return functional_call(layer, {**params, **dict(zip(names, tensors))}, (x,))

    assert torch.autograd.gradcheck(run, (x, *(params[n] for n in names)), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("variant,geometry", CASES)
def test_fold_is_exact(variant, geometry):
    _, layer = _pair(variant, geometry)
    _perturb(layer)
    x = torch.randn(2, geometry[0], 10, 10)
    y = layer(x).detach()
    if not variant.foldable:
        with pytest.raises(ValueError, match="cannot be folded"):
            layer.fold()
        assert reparameterize_model(layer) is not layer
        assert type(reparameterize_model(layer)) is type(layer)
        return
    folded = layer.fold()
    assert type(folded) is nn.Conv2d
    assert type(reparameterize_model(layer)) is nn.Conv2d
    torch.testing.assert_close(folded(x), y, atol=1e-5 * float(y.abs().max()), rtol=0)
    weight, bias = layer.get_equivalent_kernel_bias()
    manual = F.conv2d(F.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode), weight, bias,
                      layer.stride, 0, layer.dilation, layer.groups) if layer.padding_mode != "zeros" else \
        F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    torch.testing.assert_close(manual, y, atol=1e-5 * float(y.abs().max()), rtol=0)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.foldable], ids=lambda v: v.id)
def test_equivalent_kernel_is_differentiable(variant):
    layer = variant.make(4, 8, 3)
    weight, _ = layer.get_equivalent_kernel_bias()
    weight.square().sum().backward()
    for name in ("weight",) + variant.sigma_params:
        grad = layer.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all(), name


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_factory_kwargs_and_repr(variant):
    layer = variant.make(4, 8, 3, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    assert all(b.dtype == torch.float64 for b in layer.buffers() if b.is_floating_point())
    assert layer(torch.randn(1, 4, 5, 5, dtype=torch.float64)).dtype == torch.float64
    assert "kernel_size=(3, 3)" in repr(layer)
    with torch.device("meta"):
        meta = variant.make(4, 8, 3)
    assert meta.weight.is_meta


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.sigma_params], ids=lambda v: v.id)
def test_sigma_gradcheck_full_mode(variant):
    """Slow-mode gradcheck w.r.t. the sigma parameters alone, on a 1-pixel output to keep it cheap."""
    layer = variant.make(2, 4, 3, dtype=torch.float64)
    _perturb(layer)
    params = {n: p.detach().clone() for n, p in layer.named_parameters()}
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    sigmas = tuple(params[n].clone().requires_grad_(True) for n in variant.sigma_params)

    def run(*tensors):
        return functional_call(layer, {**params, **dict(zip(variant.sigma_params, tensors))}, (x,))

    assert torch.autograd.gradcheck(run, sigmas, eps=1e-6, atol=1e-6)
