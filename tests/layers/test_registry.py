"""The model registry and build_model: strict names and knobs, in_channels, kernel_size, paper counts."""

import pytest
import torch
from torch import nn

from layers import METHODS, MODEL_NAMES, SIGMA_PATTERNS, AdaptiveConv2d, build_model, count_params_flops
from layers.models.registry import register_model, validate_build_args


def test_names_and_constants():
    assert set(MODEL_NAMES) == {"resnet20", "resnet56", "resnet18_cifar", "resnet18", "resnet50", "alexnet",
                                "mobilenet_v2", "shufflenet_v2_x1_0", "mobilenet_v3_small", "hrnet_w18_small",
                                "hrnet_w18_small_v2", "hrnet_w18", "aconv_simple", "aconv_resnet"}
    assert METHODS == ("stdconv", "s-gmconv", "gmconv", "coc", "aconv")
    assert SIGMA_PATTERNS == ("sigma", "sigma1_sigma2", "sigma1_rsigma")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"model must be one of \('resnet20', .*'hrnet_w18'.*\(got 'resnet21'\)"):
        build_model("resnet21", 10)


@pytest.fixture
def model_registered_late():
    """A model registered after ``import layers`` (as a user's plug-in would), removed again afterwards."""
    from layers import catalogue
    from layers.models import registry

    name = "tiny_registered_late"
    register_model(name)(lambda num_classes, in_channels=3: nn.Sequential(
        nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)))
    yield name
    del registry._REGISTRY[name], catalogue._FACTS[name]


def test_a_model_registered_after_import_is_listed(model_registered_late):
    import layers
    import layers.catalogue

    assert model_registered_late in layers.model_names()
    assert model_registered_late in layers.MODEL_NAMES  # the old constant is a live view too
    assert model_registered_late in layers.catalogue.MODEL_NAMES
    assert layers.catalogue.check_build(model_registered_late, 10, "coc") is False  # its kernels: only a build
    assert isinstance(build_model(model_registered_late, 10, "s-gmconv")[0], layers.GMConv2d)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet20")(lambda num_classes, in_channels=3: nn.Identity())


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "coc", "sigma_init": 3.0}, r"unknown knob\(s\) \['sigma_init'\] for method 'coc' \(allowed:"),
    ({"method": "stdconv", "sa": 2}, r"unknown knob\(s\) \['sa'\]"),
    ({"method": "nope"}, "method must be one of"),
    ({"kernel_size": 4}, "kernel_size must be an odd integer"),
    ({"num_classes": 0}, "num_classes must be an integer >= 1"),
    ({"in_channels": 0}, "in_channels must be an integer >= 1"),
    ({"method": "coc", "skp": 0, "dilate": True}, "dilate=True with skp=0 at kernel_size=3"),
    ({"method": "coc", "sa": 0}, "sa must be an integer >= 1"),
    ({"method": "aconv", "kernel_size": 1}, "kernel_size must be odd and square, >= 3"),
])
def test_bad_build_arguments(kwargs, match):
    args = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model("resnet20", args.pop("num_classes"), **args)


def test_kernel_size_only_where_supported():
    with pytest.raises(ValueError, match=r"kernel_size applies only to models \('resnet20'"):
        validate_build_args("resnet18", 10, kernel_size=5)
    model = build_model("aconv_resnet", 10, "aconv", kernel_size=7)
    convs = [m for m in model.modules() if isinstance(m, AdaptiveConv2d)]
    assert convs and all(m.kernel_size == (7, 7) for m in convs)
    assert build_model("resnet20", 10, kernel_size=5).conv1.kernel_size == (5, 5)
    assert build_model("resnet20", 10, kernel_size=None).conv1.kernel_size == (3, 3)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "hrnet_w18_small", "aconv_simple", "resnet20"])
def test_in_channels_one(name):
    with torch.device("meta"):
        model = build_model(name, 7, "gmconv", in_channels=1)
    size = 28 if name in ("aconv_simple", "resnet20") else 64
    _, flops = count_params_flops(model, (1, 1, size, size))
    assert flops > 0
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 1


def test_aconv_simple_matches_paper_shape_on_mnist():
    model = build_model("aconv_simple", 10, "aconv", in_channels=1)
    params, _ = count_params_flops(model, (1, 1, 28, 28))
    assert round(params / 1e6, 1) == 1.6  # ACONV Table 1, MNIST: 1.6M
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


# (name, num_classes, size, params in M as printed in the paper tables, FLOPs as printed)
PAPER_COUNTS = [("resnet20", 10, 32, 0.27, 42e6), ("resnet56", 10, 32, 0.85, 128e6),
                ("resnet18_cifar", 100, 32, 11.22, 558e6), ("resnet18", 1000, 224, 11.69, 1.82e9),
                ("resnet50", 1000, 224, 25.56, 4.13e9), ("alexnet", 1000, 224, 61.10, 0.714e9),
                ("mobilenet_v2", 1000, 224, 3.50, 0.327e9)]


@pytest.mark.parametrize("name,classes,size,params_m,flops", PAPER_COUNTS)
def test_counts_match_gmconv_tables(name, classes, size, params_m, flops):
    """GMConv Tables 1-2 columns. FlopCounterMode counts conv/linear multiply-adds only; the papers' tools
    add some elementwise work, so FLOPs agree within 10% while parameters agree to the printed digits."""
    with torch.device("meta"):
        model = build_model(name, classes)
    params, macs = count_params_flops(model, (1, 3, size, size))
    assert round(params / 1e6, 2) == params_m
    assert abs(macs - flops) / flops < 0.10


# HRNet-Image-Classification's README (the HRNet authors' ImageNet models): params in M and GFLOPs as printed
HRNET_COUNTS = [("hrnet_w18_small_v2", 15.6, 2.42e9), ("hrnet_w18", 21.3, 3.99e9)]


@pytest.mark.parametrize("name,params_m,flops", HRNET_COUNTS)
def test_counts_match_coc_table1_hrnets(name, params_m, flops):
    """CoC Table 1's HRNets as the HRNet authors count them (FLOPs within 10%, as above)."""
    with torch.device("meta"):
        model = build_model(name, 1000)
    params, macs = count_params_flops(model, (1, 3, 224, 224))
    assert round(params / 1e6, 1) == params_m
    assert abs(macs - flops) / flops < 0.10


def test_hrnet_w18_small_v2_is_cocs_released_hrnet18s():
    """configs/hrnet18s-*.py of CoC's code: branch channels 18/36/72/144, 1/3/2 modules in stages 2-4, two
    blocks per branch."""
    with torch.device("meta"):
        model = build_model("hrnet_w18_small_v2", 1000)
    assert [len(getattr(model, f"stage{i}")) for i in (2, 3, 4)] == [1, 3, 2]
    last = model.stage4[-1]
    assert [len(branch) for branch in last.branches] == [2, 2, 2, 2]
    assert [branch[-1].conv2.out_channels for branch in last.branches] == [18, 36, 72, 144]


def test_aconv_resnet_blocks_per_stage_sets_the_depth():
    """6n+2 weighted layers (convs on the main path + the classifier): 8, 14, 20 for 1, 2, 3 blocks per stage
    (ACONV Table 1 right: blocks 1/2/3; its "11 layers" for one block is not 6n+2, see aconv_nets)."""
    for n, depth in ((1, 8), (2, 14), (3, 20)):
        model = build_model("aconv_resnet", 10, "aconv", in_channels=1, kernel_size=5, blocks_per_stage=n)
        main_convs = [m for name, m in model.named_modules()
                      if isinstance(m, AdaptiveConv2d) and "shortcut" not in name]
        assert len(main_convs) + 1 == depth
        assert all(m.kernel_size == (5, 5) for m in main_convs)
        assert model(torch.randn(2, 1, 50, 37)).shape == (2, 10)  # LFW-Faces' non-square images
    default = build_model("aconv_resnet", 10)
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in default.modules()) == 19
    assert not any(isinstance(m, nn.Dropout) for m in default.modules())


def test_dropout_knob():
    model = build_model("aconv_resnet", 10, blocks_per_stage=1, dropout=0.5)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 4 and all(m.p == 0.5 for m in drops)  # after each stage and after the pooling
    model.eval()
    x = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))  # inactive in eval
    simple = [m.p for m in build_model("aconv_simple", 10).modules() if isinstance(m, nn.Dropout)]
    assert simple == [0.5, 0.5]  # Table 1 left: 0.5 on every dataset
    assert [m.p for m in build_model("aconv_simple", 10, dropout=0.25).modules() if isinstance(m, nn.Dropout)] \
        == [0.25, 0.25]


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "resnet20", "blocks_per_stage": 2},
     r"blocks_per_stage applies only to models \('aconv_resnet',\) \(got blocks_per_stage=2 for model 'resnet20'"),
    ({"name": "aconv_simple", "blocks_per_stage": 2}, r"blocks_per_stage applies only to models"),
    ({"name": "resnet18", "dropout": 0.5}, r"dropout applies only to models \('aconv_simple', 'aconv_resnet'\)"),
    ({"name": "aconv_resnet", "blocks_per_stage": 0}, r"blocks_per_stage must be an integer >= 1 or None \(got 0\)"),
    ({"name": "aconv_simple", "dropout": 1.0}, r"dropout must be a number in \[0, 1\) or None \(got 1.0\)"),
])
def test_arch_knob_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validate_build_args(kwargs.pop("name"), 10, **kwargs)
    validate_build_args("aconv_resnet", 10, blocks_per_stage=None, dropout=None)  # None: the model's default


def test_released_init_of_the_aconv_nets_follows_the_authors_keras_code():
    """init=released: CONV kernels glorot_uniform, ACONV kernels and dense layers he_uniform, zero biases,
    Keras BN (momentum 0.99 -> torch 0.01, eps 1e-3); the ResNet he_normal with BN momentum 0.9 / eps 1e-5."""
    import math

    import torch

    from layers.aconv import AdaptiveConv2d

    torch.manual_seed(0)
    conv = build_model("aconv_simple", 10, "stdconv", in_channels=1, kernel_size=5, init="released")
    aconv = build_model("aconv_simple", 10, "aconv", in_channels=1, kernel_size=5, init="released")
    c2 = [m for m in conv.modules() if isinstance(m, torch.nn.Conv2d)][1]  # 32 -> 32, 5x5
    a2 = [m for m in aconv.modules() if isinstance(m, AdaptiveConv2d)][1]
    fan = 32 * 25
    # uniform(-b, b) has std b / sqrt(3): glorot b = sqrt(6 / (fan_in + fan_out)), he b = sqrt(6 / fan_in)
    assert c2.weight.std().item() == pytest.approx(math.sqrt(6 / (2 * fan)) / math.sqrt(3), rel=0.05)
    assert a2.weight.std().item() == pytest.approx(math.sqrt(6 / fan) / math.sqrt(3), rel=0.05)
    assert a2.weight.abs().max().item() <= math.sqrt(6 / fan)
    dense = [m for m in aconv.modules() if isinstance(m, torch.nn.Linear)][0]
    assert dense.weight.std().item() == pytest.approx(math.sqrt(6 / dense.in_features) / math.sqrt(3), rel=0.05)
    bns = [m for m in aconv.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert bns and all((m.momentum, m.eps) == (0.01, 1e-3) for m in bns)
    assert torch.allclose(a2.sigma, torch.linspace(0.1, 0.5, 32))  # the envelope start is untouched

    res = build_model("aconv_resnet", 10, "aconv", kernel_size=3, blocks_per_stage=1, init="released")
    r = [m for m in res.modules() if isinstance(m, AdaptiveConv2d)][-1]
    assert r.weight.std().item() == pytest.approx(math.sqrt(6 / (64 * 9)) / math.sqrt(3), rel=0.05)
    plain = [m for m in res.modules() if type(m) is torch.nn.Conv2d][-1]  # a 1x1 shortcut: he_normal
    assert plain.weight.std().item() == pytest.approx(math.sqrt(2 / plain.in_channels), rel=0.1)
    bns = [m for m in res.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((m.momentum, m.eps) == (0.1, 1e-5) for m in bns)


def test_released_init_is_refused_for_models_without_one():
    with pytest.raises(ValueError, match="init applies only to models .*aconv_simple"):
        build_model("resnet20", 10, "stdconv", init="released")
    with pytest.raises(ValueError, match="init must be one of 'torch', 'released'"):
        build_model("aconv_simple", 10, "stdconv", init="keras")
