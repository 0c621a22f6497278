"""CoC's fast kernel computation (layers/coc_kernel.py) equals its literal definitions, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from layers import CoCConv2d
from layers.coc_kernel import canvas_permutation, grouped_canvas_matmul, super_conv_basis, super_conv_index
from layers.knobs import super_kernel_geometry


@pytest.mark.parametrize("sa,k,skp,dilate", [(2, 3, 2, True), (2, 3, 2, False), (3, 5, 4, True), (2, 7, 2, True)])
def test_basis_operator_equals_index_gather(sa, k, skp, dilate):
    sk, sd = super_kernel_geometry(k, skp, dilate)
    index = super_conv_index(sa, k, sk, sd)
    basis = super_conv_basis(index, sk * sk, torch.float64)
    assert basis.shape == (sk * sk, index.numel()) and set(basis.unique().tolist()) <= {0.0, 1.0}
    taps = torch.randn(5, sk * sk, dtype=torch.float64)
    gathered = F.pad(taps, (0, 1))[:, index]
    torch.testing.assert_close((taps @ basis).view_as(gathered), gathered, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(7, 3, 36), (1, 1, 4), (5, 2, 196)])
def test_grouped_canvas_matmul_values_and_gradients(shape):
    c_in, groups, s2 = shape
    x = torch.randn(c_in, groups, s2, dtype=torch.float64, requires_grad=True)
    op = torch.randn(groups, s2, s2, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(grouped_canvas_matmul(x, op), torch.einsum("igq,gpq->igp", x, op))
    # the 14x14 canvas has ~78k inputs: the dense numerical Jacobian takes a minute, random projections do not
    assert torch.autograd.gradcheck(grouped_canvas_matmul, (x, op), fast_mode=s2 > 64)
    # a non-contiguous input (as autograd may hand over) gives the same result
    xt = x.detach().transpose(0, 1).contiguous().transpose(0, 1)
    torch.testing.assert_close(grouped_canvas_matmul(xt, op.detach()), torch.einsum("igq,gpq->igp", xt, op.detach()))


def test_large_geometry_falls_back_to_index_with_same_kernel():
    """AlexNet's 11x11 stem: the dense basis would be ~40M entries, so the index gather is used."""
    layer = CoCConv2d(3, 8, 11, skp=2)
    assert layer.super_basis is None
    small = CoCConv2d(3, 8, 3)
    assert small.super_basis is not None
    weight_basis, _ = small.get_equivalent_kernel_bias()
    small.super_basis = None
    weight_index, _ = small.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight_basis, weight_index, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sa,k", [(2, 3), (3, 5), (1, 3)])
def test_kernel_order_permute_equals_canvas_permutation(sa, k):
    layer = CoCConv2d(2, sa * sa * 3, k, sa=sa, dilate=False)
    canvas = torch.randn(layer.n_groups, sa * k, sa * k)
    torch.testing.assert_close(layer._kernel_order(canvas), canvas.flatten(1)[:, canvas_permutation(sa, k)],
                               rtol=0, atol=0)
