"""create_conv2d (layers/create.py): one method name -> the layer its policy puts in place of a conv."""

import pytest
import torch
from torch import nn

from layers import AdaptiveConv2d, CoCConv2d, GMConv2d, StdConv2d, convert_model, create_conv2d
from layers.create import layer_class


@pytest.mark.parametrize("method,cls", [("stdconv", nn.Conv2d), ("s-gmconv", GMConv2d), ("gmconv", GMConv2d),
                                        ("coc", CoCConv2d), ("aconv", AdaptiveConv2d)])
def test_each_method_makes_its_layer_with_same_padding(method, cls):
    conv = create_conv2d(method, 4, 8, 5, stride=2)
    assert type(conv) is cls and conv.padding == (2, 2)
    assert conv(torch.randn(1, 4, 9, 9)).shape == (1, 8, 5, 5)
    assert layer_class(method) is (StdConv2d if method == "stdconv" else cls)


def test_knobs_reach_the_layer_under_its_own_keyword():
    assert type(create_conv2d("stdconv", 4, 8, 3, stnd=True)) is StdConv2d
    aconv = create_conv2d("aconv", 4, 8, 3, aconv_sigma_init=[0.2, 0.3], stnd=True)
    assert aconv.sigma_init == (0.2, 0.3) and aconv.stnd
    torch.testing.assert_close(aconv.sigma, torch.linspace(0.2, 0.3, 8))
    coc = create_conv2d("coc", 4, 6, 3, sa=3, coc_pad="trainable", wsc=False)
    assert (coc.sa, coc.coc_pad, coc.wsc, coc.pad_weight.shape[0]) == (3, "trainable", False, 3)


def test_gmconv_stem_is_dynamic_and_the_rest_static():
    assert create_conv2d("gmconv", 3, 8, 3, stem=True, sigma_pattern="sigma").dynamic
    assert not create_conv2d("gmconv", 3, 8, 3).dynamic
    assert not create_conv2d("s-gmconv", 3, 8, 3, stem=True).dynamic


@pytest.mark.parametrize("method,knobs,cls", [("coc", {}, nn.Conv2d), ("coc", {"c1x1": True}, CoCConv2d),
                                              ("coc", {"c1x1": "ws"}, StdConv2d), ("aconv", {}, nn.Conv2d),
                                              ("stdconv", {"stnd": True}, nn.Conv2d), ("gmconv", {}, nn.Conv2d)])
def test_1x1_convs_follow_the_policy(method, knobs, cls):
    assert type(create_conv2d(method, 4, 8, 1, **knobs)) is cls


def test_convert_model_builds_what_create_conv2d_builds():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 6, 5, padding=2))
    convert_model(model, "coc", c1x1="ws", sa=3)
    expected = [create_conv2d("coc", 3, 8, 3, padding=1, c1x1="ws", sa=3),
                create_conv2d("coc", 8, 8, 1, c1x1="ws", sa=3), create_conv2d("coc", 8, 6, 5, c1x1="ws", sa=3)]
    assert [repr(m) for m in model] == [repr(m) for m in expected]


@pytest.mark.parametrize("method,knobs,match", [
    ("gmconv", {"sa": 2}, r"unknown knob\(s\) \['sa'\] for method 'gmconv'"),
    ("nope", {}, r"method must be one of \('stdconv', "),
])
def test_bad_method_or_knob_raises_listing_the_allowed(method, knobs, match):
    with pytest.raises(ValueError, match=match):
        create_conv2d(method, 4, 8, 3, **knobs)


def test_even_kernel_is_refused_by_the_layer():
    with pytest.raises(ValueError, match=r"CoCConv2d: kernel_size must be odd and square"):
        create_conv2d("coc", 4, 8, 4)
