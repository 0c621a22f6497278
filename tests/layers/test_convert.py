"""Policy-based conversion: which convs each method replaces, the report, idempotency, refusals."""

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from layers import AdaptiveConv2d, CoCConv2d, GMConv2d, StdConv2d, build_model, convert_model
from layers.models.cifar_resnet import resnet20


def _toy():
    return nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                         nn.Conv2d(8, 16, 1), nn.Sequential(nn.Conv2d(16, 16, (1, 3)), nn.Conv2d(16, 4, 3)))


@pytest.mark.parametrize("method,kinds", [
    ("s-gmconv", {"0": "GMConv2d(static)", "2": "GMConv2d(static)", "4.1": "GMConv2d(static)"}),
    ("gmconv", {"0": "GMConv2d(dynamic)", "2": "GMConv2d(static)", "4.1": "GMConv2d(static)"}),
    ("coc", {"0": "CoCConv2d", "2": "CoCConv2d", "4.1": "CoCConv2d"}),
    ("aconv", {"0": "AdaptiveConv2d", "2": "AdaptiveConv2d", "4.1": "AdaptiveConv2d"}),
])
def test_policies(method, kinds):
    model = _toy()
    report = convert_model(model, method)
    assert dict(report.replaced) == kinds
    assert [name for name, _ in report.skipped] == ["4.0"]
    assert type(model[3]) is nn.Conv2d and type(model[4][0]) is nn.Conv2d  # 1x1 and non-square stay plain
    if method == "gmconv":
        assert model[0].dynamic and not model[2].dynamic
    assert len(report) == 3 and sum(report.kinds().values()) == 3


def test_coc_c1x1_and_stnd_and_knobs_reach_layers():
    model = _toy()
    report = convert_model(model, "coc", c1x1=True, stnd=True, sa=3, skp=4, sl=2, skip=False, dilate=False)
    assert "3" in dict(report.replaced) and isinstance(model[3], CoCConv2d)
    layer = model[2]
    assert (layer.sa, layer.skp, layer.sl, layer.skip, layer.dilate, layer.stnd) == (3, 4, 2, False, False, True)


def test_stdconv_policy():
    model = _toy()
    report = convert_model(model, "stdconv")
    assert report.replaced == () and type(model[0]) is nn.Conv2d
    report = convert_model(model, "stdconv", stnd=True)
    assert isinstance(model[0], StdConv2d) and isinstance(model[4][1], StdConv2d) and len(report) == 3


def test_gmconv_and_aconv_knobs_reach_layers():
    model = _toy()
    convert_model(model, "gmconv", sigma_init=2.0, sigma_pattern="sigma", stnd=True)
    assert model[0].sigma_pattern == "sigma" and model[0].stnd and float(model[2].sigma.detach()) == 2.0
    model = _toy()
    convert_model(model, "aconv", aconv_sigma_init=[0.2, 0.4])
    torch.testing.assert_close(model[0].sigma.detach(), torch.linspace(0.2, 0.4, 8))


def test_weights_copied_and_outputs_equal_for_identity_like_settings():
    model = _toy()
    reference = [m.weight.clone() for m in model.modules() if isinstance(m, nn.Conv2d)]
    model.eval()
    convert_model(model, "s-gmconv", sigma_init=1e4)  # mask ~ all ones
    converted = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    for a, b in zip(reference, converted):
        assert torch.equal(a, b)
    assert not model[0].training
    assert model[0].weight.device == reference[0].device


def test_converting_twice_is_a_noop_and_mixing_raises():
    model = resnet20(10)
    first = convert_model(model, "gmconv")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    second = convert_model(model, "gmconv")
    assert second.replaced == () and len(second.already_converted) == len(first.replaced)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="already holds layers of another conv variant"):
        convert_model(model, "coc")


def test_include_exclude_patterns():
    model = resnet20(10)
    report = convert_model(model, "aconv", include=["layers.1.*"], exclude=["*.conv2"])
    names = [n for n, _ in report.replaced]
    assert names and all(n.startswith("layers.1.") and n.endswith("conv1") for n in names)
    assert type(model.conv1) is nn.Conv2d and isinstance(model.layers[1][0].conv1, AdaptiveConv2d)


def test_warns_when_nothing_matched():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    with pytest.warns(UserWarning, match="no conv matched method 'coc'"):
        report = convert_model(model, "coc")
    assert report.replaced == ()


@pytest.mark.parametrize("method,knobs,match", [
    ("gmcov", {}, r"method must be one of \('stdconv', 's-gmconv', 'gmconv', 'coc', 'aconv'\)"),
    ("coc", {"sigma_init": 5.0}, r"unknown knob\(s\) \['sigma_init'\] for method 'coc'"),
    ("gmconv", {"sigma_pattern": "round"}, "sigma_pattern must be one of"),
    ("coc", {"sa": 0}, "sa must be an integer >= 1"),
    ("coc", {"skp": 0, "dilate": True}, "dilate=True with skp=0 at kernel_size=3"),
    ("aconv", {"aconv_sigma_init": [0.5, 0.1]}, "sigma_init must be"),
])
def test_bad_arguments(method, knobs, match):
    with pytest.raises(ValueError, match=match):
        convert_model(resnet20(10), method, **knobs)


def test_refuses_ddp_wrapped_model(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Conv2d(3, 4, 3)))
        with pytest.raises(ValueError, match="wrapped in DistributedDataParallel; convert the bare model"):
            convert_model(ddp, "coc")
    finally:
        dist.destroy_process_group()


def test_build_model_converts_with_registry_defaults():
    model = build_model("mobilenet_v3_small", 10, "coc")
    layers = [m for m in model.modules() if isinstance(m, CoCConv2d)]
    assert layers and not any(m.wsc for m in layers)  # light model: no wsc, as in the released configs
    assert any(m.groups == m.in_channels > 1 for m in layers)  # depthwise convs converted
    model = build_model("resnet20", 10, "coc")
    assert all(m.wsc for m in model.modules() if isinstance(m, CoCConv2d))
    model = build_model("resnet20", 10, "gmconv")
    assert isinstance(model.conv1, GMConv2d) and model.conv1.dynamic
