"""The effective receptive field measurement against its closed form and simple known maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from layers import build_model
from layers.erf import effective_receptive_field, erf_radii, theoretical_receptive_field


def _ones_stack(n: int) -> nn.Sequential:
    convs = [nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n)]
    for conv in convs:
        nn.init.ones_(conv.weight)
    return nn.Sequential(*convs)


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_erf_of_stacked_box_filters_is_the_n_fold_box_convolution(n):
    """n stride-1 3x3 all-ones convs, no non-linearity: the centre unit's gradient is the n-fold convolution of
    a 3x3 box with itself, (2n+1) x (2n+1), centred; zero elsewhere."""
    size = 4 * n + 9
    model = _ones_stack(n).double()
    erf = effective_receptive_field(model, str(n - 1), torch.randn(3, 1, size, size, dtype=torch.float64))
    box = np.ones((3, 3))
    expected_core = box
    for _ in range(n - 1):
        expected_core = np.array([[np.sum(np.pad(expected_core, 2)[i:i + 3, j:j + 3])
                                   for j in range(expected_core.shape[1] + 2)]
                                  for i in range(expected_core.shape[0] + 2)])
    expected = np.zeros((size, size))
    c, r = size // 2, n
    expected[c - r:c + r + 1, c - r:c + r + 1] = expected_core
    np.testing.assert_allclose(erf.numpy(), expected, rtol=0, atol=1e-6)
    assert theoretical_receptive_field(model, str(n - 1)) == 2 * n + 1


def test_radii_of_known_maps():
    delta = torch.zeros(11, 11)
    delta[5, 5] = 1.0
    assert erf_radii(delta) == [0.0, 0.0]
    ring = torch.zeros(11, 11)
    ring[5, 5], ring[5, 8] = 1.0, 1.0  # half the mass at the centre, half 3 pixels away
    assert erf_radii(ring, (0.5, 0.9, 1.0)) == [0.0, 3.0, 3.0]
    assert all(np.isnan(erf_radii(torch.zeros(5, 5))))


def test_model_state_is_restored_and_bad_stages_are_refused():
    torch.manual_seed(0)
    model = build_model("resnet20", 10).train()
    erf = effective_receptive_field(model, "layers.0", torch.randn(2, 3, 32, 32))
    assert erf.shape == (32, 32) and erf.sum() > 0 and model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    # the centre unit of the first stage sees at most the theoretical receptive field around the centre
    rf = theoretical_receptive_field(model, "layers.0")
    nz = torch.nonzero(erf > 0)
    assert (nz.max(0).values - nz.min(0).values + 1).max().item() <= rf
    with pytest.raises(ValueError, match="stage: 'layer9' is not a module"):
        effective_receptive_field(model, "layer9", torch.randn(1, 3, 32, 32))
