"""ACONV (Tek et al., Eq. 21, Sec. 3.3): RMS-1 envelopes, sigma init and clipping."""

import pytest
import torch
from torch import nn

from layers import AdaptiveConv2d, clamp_adaptive_sigmas
from layers.aconv import adaptive_envelope, normalised_grid_dist2


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_envelope_has_rms_one_for_any_sigma(k):
    sigma = torch.tensor([0.01, 0.1, 0.3, 1.0, 5.0, 100.0], dtype=torch.float64)
    envelope = adaptive_envelope(normalised_grid_dist2(k, dtype=torch.float64), sigma)
    torch.testing.assert_close(envelope.square().sum(dim=(1, 2)), torch.full((6,), float(k * k),
                                                                                   dtype=torch.float64))
    torch.testing.assert_close(envelope[-1], torch.ones(k, k, dtype=torch.float64), atol=1e-4, rtol=0)
    c = k // 2
    assert (envelope[:, c, c] == envelope.amax(dim=(1, 2))).all()


def test_grid_is_normalised_to_unit_square():
    d2 = normalised_grid_dist2(3)
    torch.testing.assert_close(d2, torch.tensor([[0.5, 0.25, 0.5], [0.25, 0.0, 0.25], [0.5, 0.25, 0.5]]))


def test_sigma_init_linspace_or_constant_and_default_clip():
    layer = AdaptiveConv2d(3, 5, 5)
    torch.testing.assert_close(layer.sigma.detach(), torch.linspace(0.1, 0.5, 5))
    assert layer.sigma_clip == (0.2, 5.0)
    const = AdaptiveConv2d(3, 4, 3, sigma_init=0.3, sigma_clip=(0.05, 2.0))
    torch.testing.assert_close(const.sigma.detach(), torch.full((4,), 0.3))
    assert const.sigma_clip == (0.05, 2.0)


def test_layer_multiplies_scaled_envelope_per_filter():
    layer = AdaptiveConv2d(2, 3, 3, padding=1)
    weight, _ = layer.get_equivalent_kernel_bias()
    env = adaptive_envelope(layer.dist2, layer.sigma)
    torch.testing.assert_close(weight, layer.weight * env[:, None])


def test_clamp_model_and_layer():
    model = nn.Sequential(AdaptiveConv2d(2, 4, 3), nn.ReLU(), AdaptiveConv2d(4, 4, 5, sigma_init=0.3))
    with torch.no_grad():
        model[0].sigma.copy_(torch.tensor([-1.0, 0.2, 1.0, 9.0]))
    clamp_adaptive_sigmas(model)
    torch.testing.assert_close(model[0].sigma.detach(), torch.tensor([1 / 3, 1 / 3, 1.0, 3.0]))
    torch.testing.assert_close(model[2].sigma.detach(), torch.full((4,), 0.3))
    clamp_adaptive_sigmas(nn.Sequential(nn.Conv2d(1, 1, 3)))  # no adaptive layers: no-op


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_size": 1}, "kernel_size must be odd and square, >= 3"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"sigma_init": (0.5, 0.1)}, "sigma_init must be"),
    ({"sigma_init": -1.0}, "sigma_init must be > 0"),
    ({"sigma_clip": (2.0, 1.0)}, "sigma_clip must be"),
])
def test_bad_arguments(kwargs, match):
    args = {"kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        AdaptiveConv2d(3, 4, args.pop("kernel_size"), **args)
