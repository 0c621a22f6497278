"""GMConv (paper Eq. 3-7): the mask formula, the dynamic sigma module and the per-sample grouped conv."""

import math

import pytest
import torch
import torch.nn.functional as F

from layers import SIGMA_PATTERNS, GMConv2d
from layers.gmconv import SIGMA_FLOOR, gaussian_mask, offset_grids, per_sample_conv2d


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 5.0])
def test_static_mask_centre_symmetric_decreasing(k, sigma):
    dy2, dx2 = offset_grids(k)
    mask = gaussian_mask(dy2, dx2, torch.tensor(sigma))
    c = (k - 1) // 2
    assert mask[c, c] == 1 and mask.max() == 1
    torch.testing.assert_close(mask, mask.flip(0))
    torch.testing.assert_close(mask, mask.flip(1))
    torch.testing.assert_close(mask, mask.T)
    dist2 = (dy2 + dx2).flatten()
    values = mask.flatten()
    order = torch.argsort(dist2)
    assert (values[order].diff() <= 0).all()  # non-increasing with distance
    far = values[dist2 > 0]
    assert (far < 1).all()


def test_static_mask_matches_paper_formula_and_tends_to_ones():
    k, sigma = 5, 1.7
    dy2, dx2 = offset_grids(k)
    mask = gaussian_mask(dy2, dx2, torch.tensor(sigma, dtype=torch.float64))
    c = 2
    expected = torch.tensor([[math.exp(-((i - c) ** 2 + (j - c) ** 2) / (2 * sigma**2)) for j in range(k)]
                             for i in range(k)], dtype=torch.float64)
    torch.testing.assert_close(mask, expected / expected.max(), rtol=1e-5, atol=1e-6)
    big = gaussian_mask(dy2, dx2, torch.tensor(1e4))
    torch.testing.assert_close(big, torch.ones(k, k), atol=1e-6, rtol=0)
    tiny = gaussian_mask(dy2, dx2, torch.tensor(0.0))  # guarded: a delta, not NaN
    assert torch.isfinite(tiny).all() and tiny.sum() == 1


def test_elliptic_mask_axes():
    dy2, dx2 = offset_grids(5)
    mask = gaussian_mask(dy2, dx2, torch.tensor([3.0]), torch.tensor([0.5]))[0]
    # sigma1 is horizontal (columns j), sigma2 vertical (rows i): wide along the row through the centre.
    assert mask[2, 0] > mask[0, 2]
    torch.testing.assert_close(mask[2, 0], torch.exp(torch.tensor(-4 / (2 * 9.0))), rtol=1e-5, atol=0)


def test_static_layer_uses_mask_times_weight():
    layer = GMConv2d(3, 4, 3, padding=1, sigma_init=1.2)
    assert torch.equal(layer.sigma.detach(), torch.tensor(1.2))
    x = torch.randn(2, 3, 8, 8)
    expected = F.conv2d(x, layer.weight * layer.mask(), layer.bias, padding=1)
    torch.testing.assert_close(layer(x), expected)
    assert "dynamic=False" in repr(layer) and "sigma_init=1.2" in repr(layer)


@pytest.mark.parametrize("pattern", SIGMA_PATTERNS)
def test_dynamic_starts_at_sigma_init_and_module_shape(pattern):
    layer = GMConv2d(3, 8, 7, stride=2, padding=3, dynamic=True, sigma_pattern=pattern, sigma_init=5.0)
    assert layer.sigma_module.fc1.in_features == 6 and layer.sigma_module.fc1.out_features == 4  # Eq. 7
    assert layer.sigma_module.fc2.out_features == (1 if pattern == "sigma" else 2)
    x = torch.randn(4, 3, 16, 16)
    s1, s2 = layer.sample_sigmas(x)
    torch.testing.assert_close(s1, torch.full((4,), 5.0))
    torch.testing.assert_close(s2, torch.full((4,), 5.0))
    assert f"sigma_pattern={pattern}" in repr(layer) and "softplus" in repr(layer)


def test_dynamic_sigmas_positive_and_patterns():
    layer = GMConv2d(3, 4, 3, dynamic=True, sigma_pattern="sigma1_rsigma")
    with torch.no_grad():
        layer.sigma_module.fc2.weight.normal_(0, 10)
        layer.sigma_module.fc2.bias.fill_(-50)
    x = torch.randn(5, 3, 8, 8)
    s1, s2 = layer.sample_sigmas(x)
    assert (s1 >= SIGMA_FLOOR).all() and (s2 > 0).all()
    raw = layer.sigma_module(x)
    torch.testing.assert_close(s2, raw[:, 0] * raw[:, 1])  # sigma2 = sigma1 * r_sigma
    layer.sigma_pattern = "sigma1_sigma2"
    s1b, s2b = layer.sample_sigmas(x)
    torch.testing.assert_close(s2b, raw[:, 1])


@pytest.mark.parametrize("groups", [1, 2])
def test_per_sample_conv_equals_loop(groups):
    x = torch.randn(3, 4, 9, 9)
    weight = torch.randn(6, 4 // groups, 3, 3)
    bias = torch.randn(6)
    masks = torch.rand(3, 3, 3)
    out = per_sample_conv2d(x, weight, masks, bias, 2, 1, 1, groups)
    loop = torch.cat([F.conv2d(x[b:b + 1], weight * masks[b], bias, 2, 1, 1, groups) for b in range(3)])
    torch.testing.assert_close(out, loop)


def test_dynamic_layer_is_one_grouped_conv_call(monkeypatch):
    layer = GMConv2d(3, 4, 3, padding=1, dynamic=True)
    calls = []
    real = F.conv2d

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    layer(torch.randn(5, 3, 8, 8))
    assert calls == [torch.Size([20, 3, 3, 3])]


def test_dynamic_matches_sample_by_sample_and_updates_last_sigma():
    layer = GMConv2d(3, 4, 3, padding=1, dynamic=True, sigma_pattern="sigma1_sigma2")
    with torch.no_grad():
        layer.sigma_module.fc2.weight.normal_(0, 1)
    x = torch.randn(3, 3, 8, 8)
    out = layer(x)
    s1, s2 = layer.sample_sigmas(x)
    torch.testing.assert_close(layer.last_sigma, torch.stack([s1.mean(), s2.mean()]))
    for b in range(3):
        mask = gaussian_mask(layer.dy2, layer.dx2, s1[b], s2[b])
        torch.testing.assert_close(out[b:b + 1], F.conv2d(x[b:b + 1], layer.weight * mask, layer.bias, padding=1))


def test_dynamic_trains_the_sigma_module():
    layer = GMConv2d(3, 4, 3, padding=1, dynamic=True, sigma_init=1.0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(4, 3, 8, 8)
    before = layer.sigma_module.fc1.weight.clone()
    for _ in range(3):
        opt.zero_grad()
        layer(x).square().mean().backward()
        opt.step()
    assert not torch.equal(before, layer.sigma_module.fc1.weight)  # gradient reaches fc1 from step 2 on


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"kernel_size": (3, 5)}, "kernel_size must be odd"),
    ({"sigma_pattern": "sigma3"}, "sigma_pattern must be one of"),
    ({"sigma_init": 0.0}, "sigma_init must be > 0"),
])
def test_bad_arguments(kwargs, match):
    args = {"kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        GMConv2d(3, 4, args.pop("kernel_size"), dynamic=True, **args)
