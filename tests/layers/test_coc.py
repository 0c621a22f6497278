"""CoC (Zhao et al., Sec. 3 + released configs): canvas layout, super conv, norms, dilation table."""

import pytest
import torch
import torch.nn.functional as F

from layers import CoCConv2d
from layers.coc_kernel import canvas_to_kernels, kernels_to_canvas
from layers.knobs import DILATION_TABLE, super_kernel_geometry

PLAIN = {"skip": False, "super_norm": False, "final_norm": False, "wsc": False}


def test_canvas_layout_matches_spec():
    sa, k, c_out, c_in = 2, 3, 8, 3
    w = torch.randn(c_out, c_in, k, k)
    canvas = kernels_to_canvas(w, sa, 2)
    assert canvas.shape == (c_in, 2, sa * k, sa * k)
    for g in range(2):
        for i in range(c_in):
            for a in range(sa):
                for b in range(sa):
                    torch.testing.assert_close(canvas[i, g, a * k:(a + 1) * k, b * k:(b + 1) * k],
                                               w[g * sa * sa + a * sa + b, i])
    torch.testing.assert_close(canvas_to_kernels(canvas, sa, c_out), w)


@pytest.mark.parametrize("c_out,sa", [(6, 2), (5, 2), (10, 3), (7, 1)])
def test_padding_to_multiple_of_sa2_and_crop(c_out, sa):
    w = torch.randn(c_out, 2, 3, 3)
    groups = -(-c_out // sa**2)
    canvas = kernels_to_canvas(w, sa, groups)
    assert canvas.shape == (2, groups, 3 * sa, 3 * sa)
    padded = canvas_to_kernels(canvas, sa, groups * sa * sa)
    assert (padded[c_out:] == 0).all()
    torch.testing.assert_close(canvas_to_kernels(canvas, sa, c_out), w)


@pytest.mark.parametrize("k,skp,dilate", [(3, 2, True), (3, 2, False), (5, 0, True), (7, 6, True), (1, 2, True)])
@pytest.mark.parametrize("sl", [1, 2])
def test_identity_super_kernel_reproduces_basic_kernels(k, skp, dilate, sl):
    layer = CoCConv2d(4, 6, k, padding=k // 2, skp=skp, dilate=dilate, sl=sl, **PLAIN)
    sk = layer.super_kernel_size
    with torch.no_grad():
        layer.super_weight.zero_()
        layer.super_weight[:, :, :, sk // 2, sk // 2] = 1
    weight, _ = layer.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight, layer.weight)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=k // 2))


def test_super_conv_is_depthwise_per_group_shared_over_input_channels():
    layer = CoCConv2d(3, 8, 3, sa=2, skp=2, dilate=False, **PLAIN)
    canvas = kernels_to_canvas(layer.weight, 2, 2)
    expected = F.conv2d(canvas, layer.super_weight[0], None, 1, 2, 1, 2)
    weight, _ = layer.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight, canvas_to_kernels(expected, 2, 8))
    assert layer.super_weight.shape == (1, 2, 1, 5, 5)


def _reference_kernel(layer: CoCConv2d) -> torch.Tensor:
    """The released code's computation on the spatial canvas with F.conv2d (slow but literal)."""
    sa, sl, g = layer.sa, layer.sl, layer.n_groups
    canvas = kernels_to_canvas(layer.weight, sa, g)
    out = canvas
    for i in range(sl):
        sw = layer.super_weight[i]
        if layer.wsc:
            sw = (sw - sw.flatten(1).mean(1)[:, None, None, None]) / (sw.flatten(1).std(1)[:, None, None, None] + 1e-5)
        sd = layer.super_dilation
        out = F.conv2d(out, sw, None, 1, (layer.super_kernel_size // 2) * sd, sd, g)
        if layer.super_norm:
            out = F.layer_norm(out, out.shape[1:], layer.super_ln_weight[i], layer.super_ln_bias[i], 1e-5)
    if layer.skip:
        out = out + canvas
    kernels = canvas_to_kernels(out, sa, layer.out_channels)
    if layer.final_norm:
        kernels = F.layer_norm(kernels, kernels.shape[1:], layer.final_ln_weight, layer.final_ln_bias, 1e-5)
    return kernels


@pytest.mark.parametrize("c_in,c_out,k,kwargs", [
    (3, 8, 3, {}),                                   # released ResNet config: (3, 2) super kernel, LN, wsc
    (3, 6, 3, {"wsc": False}),                       # padded C_out, light-model config
    (2, 10, 5, {"sa": 3, "skp": 4, "sl": 2}),
    (4, 4, 7, {"groups": 4, "skp": 6}),              # depthwise stem-like, (7, 3) super kernel
    (2, 5, 11, {"skp": 2}),                          # outside the dilation table
])
def test_matches_literal_canvas_implementation(c_in, c_out, k, kwargs):
    layer = CoCConv2d(c_in, c_out, k, padding=k // 2, **kwargs)
    with torch.no_grad():
        for p in (layer.super_ln_weight, layer.super_ln_bias, layer.final_ln_weight, layer.final_ln_bias):
            p.normal_()
    weight, _ = layer.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight, _reference_kernel(layer), rtol=1e-4, atol=1e-4)
    assert layer.super_ln_weight.shape == (layer.sl, layer.n_groups, layer.sa * k, layer.sa * k)
    assert layer.final_ln_weight.shape == (c_in // kwargs.get("groups", 1), k, k)


def test_sl_stacks_conv_norm_with_one_skip():
    layer = CoCConv2d(2, 4, 3, sl=2, dilate=False, wsc=False, final_norm=False)
    canvas = kernels_to_canvas(layer.weight, 2, 1)
    out = canvas
    for i in range(2):
        out = F.conv2d(out, layer.super_weight[i], None, 1, 2, 1, 1)
        out = F.layer_norm(out, (1, 6, 6), layer.super_ln_weight[i], layer.super_ln_bias[i], 1e-5)
    weight, _ = layer.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight, canvas_to_kernels(out + canvas, 2, 4))


def test_dilation_table_and_geometry():
    assert DILATION_TABLE[(3, 2)] == (3, 2) and DILATION_TABLE[(7, 6)] == (7, 3)
    assert super_kernel_geometry(3, 2, False) == (5, 1)
    assert super_kernel_geometry(5, 4, True) == (5, 3)
    assert super_kernel_geometry(11, 2, True) == (13, 1)  # outside the table: undilated


@pytest.mark.parametrize("kwargs,match", [
    ({"skp": 0, "dilate": True}, "dilate=True with skp=0 at kernel_size=3"),
    ({"sa": 0}, "sa must be an integer >= 1"),
    ({"sl": 0}, "sl must be an integer >= 1"),
    ({"skp": 3}, "skp must be an even integer"),
    ({"skp": 8}, r"skp must be one of \[2, 4, 6\]"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
])
def test_bad_arguments(kwargs, match):
    args = {"kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        CoCConv2d(3, 4, args.pop("kernel_size"), **args)


def test_extra_repr_shows_config():
    text = repr(CoCConv2d(3, 4, 3, wsc=False))
    for item in ("sa=2", "skp=2", "sl=1", "skip=True", "dilate=True", "super_kernel=(3, dilation=2)", "wsc=False"):
        assert item in text
