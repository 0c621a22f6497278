"""Weight standardisation (Qiao et al.; CoC's Wsc2d): per output channel, unbiased std, eps on the std."""

import pytest
import torch
import torch.nn.functional as F

from layers import StdConv2d
from layers.stdconv import standardize_weight


def test_standardize_weight_formula():
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64) * 3 + 1
    out = standardize_weight(w)
    flat = w.flatten(1)
    expected = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True, unbiased=True) + 1e-5)
    torch.testing.assert_close(out.flatten(1), expected)
    torch.testing.assert_close(out.flatten(1).mean(1), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.flatten(1).std(1), torch.ones(5, dtype=torch.float64), atol=1e-4, rtol=0)


def test_stdconv_forward():
    layer = StdConv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), F.conv2d(x, standardize_weight(layer.weight), layer.bias, padding=1))
    assert "stnd=True" in repr(layer)


def test_stdconv_rejects_single_weight_filters():
    with pytest.raises(ValueError, match="needs >= 2 weights per output channel"):
        StdConv2d(4, 4, 1, groups=4)
