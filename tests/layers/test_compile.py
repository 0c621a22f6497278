"""The variants under torch.fx.symbolic_trace (every method on a real model) and torch.compile (CPU)."""

import pytest
import torch
import torch.fx
from torch import nn

from layers import METHODS, AdaptiveConv2d, CoCConv2d, GMConv2d, StdConv2d, build_model


@pytest.mark.parametrize("method", METHODS)
def test_fx_symbolic_trace(method):
    model = build_model("resnet20", 10, method, **({"stnd": True} if method == "stdconv" else {})).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(traced(x), model(x))


@pytest.mark.slow
def test_torch_compile_every_variant():
    """Inductor on CPU (needs a C compiler; ~40 s here): forward and backward match eager mode."""
    model = nn.Sequential(GMConv2d(3, 8, 3, padding=1, dynamic=True), nn.ReLU(), CoCConv2d(8, 8, 3, padding=1),
                          AdaptiveConv2d(8, 8, 3, padding=1), GMConv2d(8, 4, 3), StdConv2d(4, 4, 3))
    x = torch.randn(2, 3, 12, 12)
    compiled = torch.compile(model)
    out = compiled(x)
    expected = model(x)
    torch.testing.assert_close(out, expected, atol=1e-4 * float(expected.detach().abs().max()), rtol=1e-4)
    out.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    expected.square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-4 * float(p.grad.abs().max()) + 1e-8, rtol=1e-3)
