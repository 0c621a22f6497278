"""CoC as the authors' released ``Coc2d`` runs it: trainable padding kernels, the released initialisation,
the super-conv bias, ``c1x1="ws"`` and the extensions beyond its argument domain."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layers import CoCConv2d, StdConv2d, build_model, convert_model, reparameterize_model
from layers.coc import released_extensions
from layers.coc_kernel import canvas_to_kernels, kernels_to_canvas


def _literal_kernel(layer: CoCConv2d) -> torch.Tensor:
    """The released computation on the spatial canvas with F.conv2d: padding kernels appended to the real
    ones, super conv (+ bias), super LN, skip, crop to C_out, final LN."""
    sa, g, c_out = layer.sa, layer.n_groups, layer.out_channels
    kernels = layer.weight
    if layer.pad_weight is not None:
        kernels = torch.cat([kernels, layer.pad_weight])
    canvas = kernels_to_canvas(kernels, sa, g)
    out = canvas
    sd, sk = layer.super_dilation, layer.super_kernel_size
    for i in range(layer.sl):
        sw = layer.super_weight[i]
        if layer.wsc:
            flat = sw.flatten(1)
            sw = (sw - flat.mean(1)[:, None, None, None]) / (flat.std(1)[:, None, None, None] + 1e-5)
        bias = layer.super_bias[i] if layer.super_bias is not None else None
        out = F.conv2d(out, sw, bias, 1, (sk // 2) * sd, sd, g)
        if layer.super_norm:
            out = F.layer_norm(out, out.shape[1:], layer.super_ln_weight[i], layer.super_ln_bias[i], 1e-5)
    if layer.skip:
        out = out + canvas
    kernels = canvas_to_kernels(out, sa, c_out)
    if layer.final_norm:
        kernels = F.layer_norm(kernels, kernels.shape[1:], layer.final_ln_weight, layer.final_ln_bias, 1e-5)
    return kernels


def _perturb(layer: nn.Module) -> None:
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))


def _assert_folds_exactly(layer: CoCConv2d, c_in: int) -> None:
    x = torch.randn(2, c_in, 9, 9, dtype=torch.float64)
    y = layer(x)
    torch.testing.assert_close(layer.fold()(x), y, rtol=0, atol=1e-12)
    torch.testing.assert_close(reparameterize_model(nn.Sequential(layer))(x), y, rtol=0, atol=1e-12)


# -- 1. padding kernels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("c_out,sa,n_pad", [(6, 2, 2), (5, 2, 3), (10, 3, 8)])
def test_trainable_padding_kernels_are_their_own_parameter(c_out, sa, n_pad):
    layer = CoCConv2d(3, c_out, 3, padding=1, sa=sa, coc_pad="trainable")
    assert layer.weight.shape == (c_out, 3, 3, 3)
    assert layer.pad_weight.shape == (n_pad, 3, 3, 3) and layer.pad_weight.requires_grad
    assert (layer.pad_weight != 0).all()  # drawn like the real kernels, not zeros
    assert "pad_weight" in dict(layer.named_parameters())


def test_no_padding_parameter_when_not_needed_or_zeros():
    assert CoCConv2d(3, 8, 3, coc_pad="trainable").pad_weight is None  # 8 is a multiple of sa^2
    zeros = CoCConv2d(3, 6, 3)
    assert zeros.coc_pad == "zeros" and zeros.pad_weight is None
    assert "pad_weight" not in dict(zeros.named_parameters())


@pytest.mark.parametrize("kwargs", [{}, {"wsc": False}, {"sa": 3, "skp": 4, "sl": 2}, {"groups": 3}])
def test_trainable_padding_matches_the_literal_released_computation_float64(kwargs):
    layer = CoCConv2d(3, 6, 3, padding=1, coc_pad="trainable", dtype=torch.float64, **kwargs)
    _perturb(layer)
    weight, _ = layer.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight, _literal_kernel(layer), rtol=0, atol=1e-10)
    # the padding kernels are cropped away but still shape the real ones through the super conv and LN
    zeroed = CoCConv2d(3, 6, 3, padding=1, coc_pad="trainable", dtype=torch.float64, **kwargs)
    zeroed.load_state_dict(layer.state_dict())
    with torch.no_grad():
        zeroed.pad_weight.zero_()
    assert not torch.allclose(zeroed.get_equivalent_kernel_bias()[0], weight)


def test_trainable_padding_gets_gradients_and_folds_exactly_float64():
    layer = CoCConv2d(4, 6, 3, padding=1, coc_pad="trainable", dtype=torch.float64)
    _perturb(layer)
    layer.get_equivalent_kernel_bias()[0].square().sum().backward()
    assert layer.pad_weight.grad is not None and layer.pad_weight.grad.abs().sum() > 0
    _assert_folds_exactly(layer, 4)


def test_trainable_padding_loads_a_plain_conv_state_dict():
    plain = nn.Conv2d(4, 6, 3, padding=1)
    layer = CoCConv2d(4, 6, 3, padding=1, coc_pad="trainable")
    result = layer.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and "pad_weight" in result.missing_keys
    assert not {"weight", "bias"} & set(result.missing_keys)
    assert torch.equal(layer.weight, plain.weight)
    clone = CoCConv2d(4, 6, 3, padding=1, coc_pad="trainable")
    clone.load_state_dict(layer.state_dict())  # round-trips strictly, padding kernels included
    torch.testing.assert_close(clone.pad_weight, layer.pad_weight)


def test_convert_passes_coc_pad_and_keeps_the_copied_weights():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1))
    original = model[0].weight.detach().clone()
    convert_model(model, "coc", coc_pad="trainable")
    assert model[0].coc_pad == "trainable" and model[0].pad_weight.shape == (2, 3, 3, 3)
    assert torch.equal(model[0].weight, original)
    with pytest.raises(ValueError, match="coc_pad must be one of"):
        convert_model(nn.Sequential(nn.Conv2d(3, 6, 3)), "coc", coc_pad="random")
    with pytest.raises(ValueError, match="coc_pad must be one of"):
        CoCConv2d(3, 6, 3, coc_pad="random")


# -- 2. initialisation ---------------------------------------------------------------------------------------

def _released_canvas_bound(c_in: int, n_groups: int, sa: int, k: int) -> float:
    """The released reset_parameters: kaiming_uniform_(a=sqrt(5)) on its canvas parameter, whose shape is
    (C_in/groups, G, sa*k, sa*k), so torch takes the fan-in from that shape."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(torch.empty(c_in, n_groups, sa * k, sa * k))
    return nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3 / fan_in)


def test_released_init_of_the_basic_and_padding_kernels_and_bias():
    torch.manual_seed(1)
    c_in, c_out, k, sa = 32, 94, 3, 2  # G = 24, two padding kernels
    layer = CoCConv2d(c_in, c_out, k, sa=sa, coc_pad="trainable", init="released")
    bound = _released_canvas_bound(c_in, layer.n_groups, sa, k)
    assert bound == pytest.approx(1 / math.sqrt(96 * 9))  # fan-in: the padded C_out times k*k, not C_in
    for p in (layer.weight, layer.pad_weight, layer.bias):
        assert p.abs().max().item() <= bound
    assert layer.weight.abs().max().item() > 0.98 * bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert layer.pad_weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)
    torch_default = CoCConv2d(c_in, c_out, k, sa=sa)
    assert torch_default.weight.std().item() == pytest.approx(1 / math.sqrt(c_in * k * k) / math.sqrt(3), rel=0.05)


@pytest.mark.parametrize("sl", [1, 2])
def test_released_init_of_the_super_kernels_is_kaiming_normal_fan_out(sl):
    torch.manual_seed(2)
    layer = CoCConv2d(8, 512, 3, sl=sl, init="released")  # G = 128, (3, dilation 2) super kernel
    _, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(layer.n_groups, 1, 3, 3))
    assert fan_out == 128 * 9
    for i in range(sl):
        taps = layer.super_weight[i]
        assert taps.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
        assert abs(taps.mean().item()) < 0.2 * math.sqrt(2 / fan_out)
        assert taps.abs().max().item() > math.sqrt(3 / fan_out)  # normal, not a uniform in +-sqrt(3/fan)
    # nn.Conv2d's default (init="torch") is uniform in +-1/sqrt(sk*sk): a different scale altogether
    default = CoCConv2d(8, 512, 3).super_weight
    assert default.abs().max().item() <= 1 / 3
    assert default.std().item() == pytest.approx(1 / 3 / math.sqrt(3), rel=0.1)
    assert layer.super_ln_weight.eq(1).all() and layer.super_ln_bias.eq(0).all()
    assert layer.final_ln_weight.eq(1).all() and layer.final_ln_bias.eq(0).all()


def test_released_init_reaches_layers_through_convert_and_build_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.Conv2d(64, 16, 1))
    original = model[0].weight.detach().clone()
    convert_model(model, "coc", init="released")
    layer = model[0]
    assert layer.init == "released" and not torch.equal(layer.weight, original)  # its own draw, not a copy
    assert layer.weight.abs().max().item() <= _released_canvas_bound(16, 16, 2, 3)
    assert type(model[1]) is nn.Conv2d

    built = build_model("resnet20", 10, "coc", init="released", coc_pad="trainable")
    cocs = [m for m in built.modules() if isinstance(m, CoCConv2d)]
    assert cocs and all(m.init == "released" and m.coc_pad == "trainable" for m in cocs)
    with pytest.raises(ValueError, match="init applies only to models .* or to method 'coc'"):
        build_model("resnet20", 10, "stdconv", init="released")
    with pytest.raises(ValueError, match="init must be one of"):
        CoCConv2d(3, 4, 3, init="keras")


def test_released_init_of_a_model_with_its_own_released_init_keeps_the_coc_draw():
    """aconv_simple's released init re-draws its convs; under method coc it runs before conversion, so the
    CoC layers keep the released Coc2d draw (a backbone's init_weights never touches Coc2d's kernels)."""
    torch.manual_seed(4)
    model = build_model("aconv_simple", 10, "coc", in_channels=1, kernel_size=3, init="released")
    layer = [m for m in model.modules() if isinstance(m, CoCConv2d)][1]  # 32 -> 32
    assert layer.weight.abs().max().item() <= _released_canvas_bound(32, 8, 2, 3)


# -- 3. super-conv bias --------------------------------------------------------------------------------------

@pytest.mark.parametrize("wsc,super_norm,has_bias", [(True, True, False), (True, False, True),
                                                     (False, True, False), (False, False, False)])
def test_super_bias_exactly_when_wsc_without_super_norm(wsc, super_norm, has_bias):
    layer = CoCConv2d(3, 8, 3, wsc=wsc, super_norm=super_norm)
    assert (layer.super_bias is not None) == has_bias
    if has_bias:
        assert layer.super_bias.shape == (1, 2) and layer.super_bias.requires_grad


@pytest.mark.parametrize("kwargs", [{}, {"sl": 2, "coc_pad": "trainable"}, {"skip": False, "final_norm": False}])
def test_super_bias_matches_the_literal_computation_and_folds_exactly_float64(kwargs):
    layer = CoCConv2d(3, 6, 3, padding=1, wsc=True, super_norm=False, dtype=torch.float64, **kwargs)
    _perturb(layer)
    assert layer.super_bias.abs().min() > 0
    weight, _ = layer.get_equivalent_kernel_bias()
    torch.testing.assert_close(weight, _literal_kernel(layer), rtol=0, atol=1e-10)
    _assert_folds_exactly(layer, 3)
    weight.square().sum().backward()
    assert layer.super_bias.grad is not None and layer.super_bias.grad.abs().sum() > 0


def test_super_bias_init():
    torch_default = CoCConv2d(3, 64, 3, super_norm=False).super_bias  # nn.Conv2d's: +-1/sqrt(sk*sk)
    assert torch_default.abs().max().item() <= 1 / 3 and torch_default.abs().max().item() > 0
    assert CoCConv2d(3, 64, 3, super_norm=False, init="released").super_bias.eq(0).all()  # kaiming_init: bias 0


# -- 4. c1x1 -------------------------------------------------------------------------------------------------

def _toy() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 1, groups=16))


def test_c1x1_ws_turns_1x1_convs_into_weight_standardised_convs():
    model = _toy()
    original = model[1].weight.detach().clone()
    report = convert_model(model, "coc", c1x1="ws")
    assert dict(report.replaced) == {"0": "CoCConv2d", "1": "StdConv2d"}
    assert type(model[0]) is CoCConv2d and type(model[1]) is StdConv2d and torch.equal(model[1].weight, original)
    assert [name for name, _ in report.skipped] == ["2"]  # one weight per output channel: nothing to standardise
    assert type(model[2]) is nn.Conv2d
    assert len(convert_model(model, "coc", c1x1="ws").already_converted) == 2  # converting again: a no-op


@pytest.mark.parametrize("c1x1,kind", [(False, nn.Conv2d), (True, CoCConv2d), ("ws", StdConv2d)])
def test_c1x1_modes(c1x1, kind):
    model = _toy()
    convert_model(model, "coc", c1x1=c1x1)
    assert type(model[1]) is kind


def test_c1x1_rejects_other_values_and_stdconv_models_stay_foreign():
    with pytest.raises(ValueError, match="c1x1 must be one of"):
        convert_model(_toy(), "coc", c1x1="coc")
    model = _toy()
    convert_model(model, "stdconv", stnd=True)  # the 3x3 becomes a StdConv2d: not CoC's
    with pytest.raises(ValueError, match="another conv variant"):
        convert_model(model, "coc", c1x1="ws")


# -- 5. argument domain --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,kwargs,expected", [
    (3, {}, ()),
    (5, {"wsc": False, "sa": 3, "skp": 6}, ()),
    (3, {"sa": 1}, ("sa=1",)),
    (1, {}, ("k=1",)),
    (9, {}, ("dilate at k=9",)),
    (9, {"dilate": False}, ()),
    (5, {"skp": 0}, ("skp=0 with dilate",)),
    (3, {"sl": 2}, ("sl=2",)),
    (3, {"stnd": True}, ("stnd with final_norm",)),
    (3, {"stnd": True, "final_norm": False}, ()),
    (3, {"wsc": False, "super_norm": False}, ("no super norm without wsc",)),
])
def test_extensions_beyond_the_released_domain_are_named(k, kwargs, expected):
    layer = CoCConv2d(4, 8, k, **kwargs)
    assert layer.released_extensions == expected
    assert ("released_extensions" in repr(layer)) == bool(expected)
    defaults = {"sa": 2, "skp": 2, "sl": 1, "dilate": True, "stnd": False, "super_norm": True,
                "final_norm": True, "wsc": True}
    assert released_extensions(k, **{**defaults, **kwargs}) == expected


def test_docstring_lists_extensions_and_drops_the_untrue_claims():
    import layers.coc

    doc = layers.coc.__doc__
    assert "only supports divisible" not in doc
    assert "as in the released code" not in doc
    assert "Extensions beyond the released code" in doc
    decisions = doc[doc.index("Decisions where paper and code are silent"):doc.index("Extensions beyond")]
    assert "sl > 1" not in decisions and "Super kernel size" not in decisions
