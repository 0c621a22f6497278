"""The ACONV nets' released-code options: TF 'same' padding (``padding: tf_same``) and the released ResNet
shortcut (``shortcut: released``), checked against references computed by hand, through conversion and folding."""

import numpy as np
import pytest
import torch
from torch import nn

from layers import AdaptiveConv2d, build_model, count_params_flops, reparameterize_model
from layers.models.aconv_nets import TFSamePad2d, tf_same_pads
from layers.models.registry import validate_build_args
from layer_variants import calibrate_bn

# (size, kernel, stride) -> (before, after): TF's rule, pad_along = max((out - 1) * s + k - in, 0) with
# out = ceil(in / s), the smaller half on top/left, written out by hand.
TF_PADS = {(8, 3, 2): (0, 1), (7, 3, 2): (1, 1), (8, 5, 2): (1, 2), (7, 5, 2): (2, 2), (8, 7, 2): (2, 3),
           (7, 7, 2): (3, 3), (8, 9, 2): (3, 4), (7, 9, 2): (4, 4), (32, 3, 2): (0, 1), (37, 5, 2): (2, 2),
           (8, 3, 1): (1, 1), (7, 5, 1): (2, 2), (8, 7, 1): (3, 3), (7, 9, 1): (4, 4)}


@pytest.mark.parametrize("key", list(TF_PADS))
def test_tf_same_pads(key):
    assert tf_same_pads(*key) == TF_PADS[key]


def _conv_reference(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Direct correlation of one image (C, H, W) with (O, C, k, k) after zero pads (top, bottom, left, right)."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    k = w.shape[-1]
    rows = (xp.shape[1] - k) // stride + 1
    cols = (xp.shape[2] - k) // stride + 1
    out = np.zeros((w.shape[0], rows, cols))
    for i in range(rows):
        for j in range(cols):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, i, j] = (w * patch[None]).sum(axis=(1, 2, 3))
    return out


@pytest.mark.parametrize("k", [3, 5, 7, 9])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (7, 7), (8, 7)])
def test_tf_same_pad_then_conv_matches_hand_reference(k, stride, size):
    h, w = size
    x = torch.randn(1, 2, h, w, dtype=torch.float64)
    conv = nn.Conv2d(2, 3, k, stride, 0, bias=False).double()
    with torch.no_grad():
        got = conv(TFSamePad2d(k, stride)(x))[0].numpy()
    top, bottom = TF_PADS.get((h, k, stride), tf_same_pads(h, k, stride))
    left, right = TF_PADS.get((w, k, stride), tf_same_pads(w, k, stride))
    want = _conv_reference(x[0].numpy(), conv.weight.detach().numpy(), stride, (top, bottom, left, right))
    assert got.shape == (3, -(-h // stride), -(-w // stride))  # TF 'same': ceil(size / stride)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_resnet_downsampling_conv_pads_bottom_right_on_even_inputs(k):
    """The strided conv of a tf_same ResNet block, before and after conversion to ACONV, equals the hand
    reference with TF's pads; the symmetric k // 2 gives another (shifted) result on even inputs."""
    torch.manual_seed(k)
    plain = build_model("aconv_resnet", 10, "stdconv", in_channels=1, kernel_size=k, blocks_per_stage=1,
                        padding="tf_same").double().eval()
    block = plain.blocks[1]  # stage 2, stride 2, 16 -> 32
    assert isinstance(block.pad1, TFSamePad2d) and block.conv1.padding == (0, 0)
    assert isinstance(plain.blocks[0].pad1, nn.Identity) and plain.blocks[0].conv1.padding == (k // 2, k // 2)
    x = torch.randn(1, 16, 8, 8, dtype=torch.float64)
    before, after = TF_PADS[(8, k, 2)]
    pads = (before, after, before, after)
    with torch.no_grad():
        got = block.conv1(block.pad1(x))[0].numpy()
    np.testing.assert_allclose(got, _conv_reference(x[0].numpy(), block.conv1.weight.detach().numpy(), 2, pads),
                               rtol=1e-10, atol=1e-10)
    symmetric = nn.functional.conv2d(x, block.conv1.weight.detach(), stride=2, padding=k // 2)[0].numpy()
    assert symmetric.shape == got.shape and not np.allclose(symmetric, got)

    aconv = build_model("aconv_resnet", 10, "aconv", in_channels=1, kernel_size=k, blocks_per_stage=1,
                        padding="tf_same").double().eval()
    ablock = aconv.blocks[1]
    assert isinstance(ablock.conv1, AdaptiveConv2d) and ablock.conv1.padding == (0, 0)
    with torch.no_grad():
        got = ablock.conv1(ablock.pad1(x))[0].numpy()
        kernel = ablock.conv1.get_equivalent_kernel_bias()[0].numpy()
    np.testing.assert_allclose(got, _conv_reference(x[0].numpy(), kernel, 2, pads), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["aconv", "stdconv", "coc"])
@pytest.mark.parametrize("size", [(28, 28), (50, 37)])
def test_tf_same_released_resnet_folds_exactly(method, size):
    model = build_model("aconv_resnet", 10, method, in_channels=1, kernel_size=5, blocks_per_stage=1,
                        padding="tf_same", shortcut="released", **({"stnd": True} if method == "stdconv" else {}))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, AdaptiveConv2d):
                m.sigma.mul_(1 + 0.1 * torch.randn_like(m.sigma))
    x = torch.randn(4, 1, *size)
    calibrate_bn(model, x)
    with torch.no_grad():
        y = model(x)
        y_folded = reparameterize_model(model)(x)
    assert y.shape == (4, 10) and torch.isfinite(y).all()
    torch.testing.assert_close(y_folded, y, atol=1e-5 * float(y.abs().max()), rtol=0)


def test_simple_net_tf_same_is_the_symmetric_net():
    """Stride 1 with odd kernels: TF's 'same' pads (k-1)/2 on both sides, so both settings build one net."""
    torch.manual_seed(0)
    sym = build_model("aconv_simple", 10, "aconv", in_channels=1, kernel_size=7)
    torch.manual_seed(0)
    tf = build_model("aconv_simple", 10, "aconv", in_channels=1, kernel_size=7, padding="tf_same")
    assert repr(sym) == repr(tf)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(tf.eval()(x), sym.eval()(x))


def test_released_shortcut_subsamples_and_repeats_the_input():
    model = build_model("aconv_resnet", 10, kernel_size=3, blocks_per_stage=1, shortcut="released").eval()
    block = model.blocks[1]
    assert not list(block.shortcut.parameters())
    x = torch.randn(2, 16, 9, 8)
    y = block.shortcut(x)
    torch.testing.assert_close(y, torch.cat([x[:, :, ::2, ::2], x[:, :, ::2, ::2]], dim=1))
    assert y.shape == (2, 32, 5, 4)
    projection = build_model("aconv_resnet", 10, kernel_size=3, blocks_per_stage=1)
    p_released, _ = count_params_flops(model, (1, 3, 32, 32))
    p_projection, _ = count_params_flops(projection, (1, 3, 32, 32))
    assert p_projection - p_released == (16 * 32 + 32) + (32 * 64 + 64)  # the two 1x1 projections with bias


def test_defaults_build_todays_nets():
    """symmetric / projection are the defaults: the same modules, so existing trials' checkpoints still load."""
    torch.manual_seed(0)
    default = build_model("aconv_resnet", 10, kernel_size=5, blocks_per_stage=2)
    torch.manual_seed(0)
    explicit = build_model("aconv_resnet", 10, kernel_size=5, blocks_per_stage=2, padding="symmetric",
                           shortcut="projection")
    assert default.state_dict().keys() == explicit.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), explicit.state_dict().values()))
    assert not any(isinstance(m, TFSamePad2d) for m in default.modules())


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "resnet20", "padding": "tf_same"},
     r"padding applies only to models \('aconv_simple', 'aconv_resnet'\) \(got padding='tf_same'"),
    ({"name": "aconv_simple", "shortcut": "released"}, r"shortcut applies only to models \('aconv_resnet',\)"),
    ({"name": "aconv_resnet", "padding": "same"}, r"padding must be one of 'symmetric', 'tf_same' or None"),
    ({"name": "aconv_resnet", "shortcut": "pool"}, r"shortcut must be one of 'projection', 'released' or None"),
])
def test_padding_and_shortcut_knob_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validate_build_args(kwargs.pop("name"), 10, **kwargs)
