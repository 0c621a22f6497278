"""layers.macs: the multiply-add counter of count_params_flops equals FlopCounterMode's count / 2 on every
catalogue model (every method on the small ones, the experiments' methods on the ImageNet ones) at several
input sizes, and imports nothing of torch._dynamo."""

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from layers import build_model, method_names, model_names
from layers.macs import _FORMULAS, _UNSUPPORTED, count_macs

# (in_channels, sizes): the ACONV nets at the sizes of their datasets (MNIST, LFW-Faces, cluttered MNIST),
# the CIFAR ResNets at CIFAR's (and another); test_declared_macs.py tries more sizes and knobs
SMALL = {"aconv_simple": (1, [(28, 28), (50, 37)]), "aconv_resnet": (1, [(60, 60), (50, 37)]),
         "resnet20": (3, [(32, 32), (64, 48)]), "resnet56": (3, [(32, 32)]), "resnet18_cifar": (3, [(32, 32)])}
# the ImageNet models with the methods the experiments run them with (experiments/*.yaml; a build takes up to
# 2 s on meta: every method of every one would be a minute), at ImageNet's size (ResNet-18 and ShuffleNet at
# CoC's Tiny-ImageNet one too)
LARGE = [(name, m) for name in ("resnet18", "resnet50") for m in ("stdconv", "s-gmconv", "gmconv", "coc")] + [
    ("resnet18", "aconv"), ("alexnet", "stdconv"), ("alexnet", "s-gmconv"), ("alexnet", "gmconv"),
    ("mobilenet_v2", "stdconv"), ("mobilenet_v2", "s-gmconv"), ("mobilenet_v2", "gmconv"),
    ("mobilenet_v3_small", "stdconv"), ("mobilenet_v3_small", "coc"), ("shufflenet_v2_x1_0", "stdconv"),
    ("shufflenet_v2_x1_0", "coc"), ("hrnet_w18_small", "stdconv"), ("hrnet_w18_small_v2", "stdconv"),
    ("hrnet_w18_small_v2", "coc"), ("hrnet_w18", "stdconv")]  # hrnet_w18 + coc: the small v2's blocks, 5 s


def both(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(count_macs, FlopCounterMode / 2) of one forward on zeros: the counter runs under FlopCounterMode, so
    both see the same ops."""
    x = torch.zeros(shape, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as reference:
        macs = count_macs(model, x)
    return macs, reference.get_total_flops() // 2


def test_every_model_is_covered_below():
    assert set(model_names()) == set(SMALL) | {getattr(case, "values", case)[0] for case in LARGE}


@pytest.mark.parametrize("name", SMALL)
def test_counts_equal_flop_counter_mode_on_small_models_with_every_method(name):
    channels, sizes = SMALL[name]
    for method in method_names():
        with torch.device("meta"):
            model = build_model(name, 10, method, in_channels=channels).eval()
        for size in sizes:
            mine, ref = both(model, (1, channels, *size))
            assert mine == ref > 0, (method, size)


@pytest.mark.parametrize("name, method", LARGE)
def test_counts_equal_flop_counter_mode_on_imagenet_models(name, method):
    with torch.device("meta"):
        model = build_model(name, 10, method).eval()
    for size in [(224, 224), (128, 128)] if name in ("resnet18", "shufflenet_v2_x1_0") else [(224, 224)]:
        mine, ref = both(model, (1, 3, *size))
        assert mine == ref > 0, size


def test_knobs_that_change_the_graph():
    """The knobs that add or reshape ops: D-GMConv's sigma patterns (its stem's small MLP), the kernel size,
    CoC's super kernels (its kernel-building convs and matmuls), ACONV's 'same' padding and weightless
    shortcut; on the CPU, where a plan counts small images."""
    cases = [("resnet20", "gmconv", {"sigma_pattern": p}) for p in ("sigma", "sigma1_sigma2", "sigma1_rsigma")]
    cases += [("resnet20", "aconv", {"kernel_size": 5}), ("resnet56", "stdconv", {"kernel_size": 7, "stnd": True}),
              ("resnet20", "coc", {"sa": 3, "skp": 4, "sl": 2, "skip": False}),
              ("resnet18_cifar", "coc", {"dilate": False, "c1x1": True, "coc_pad": "trainable", "init": "released"}),
              ("aconv_resnet", "aconv", {"padding": "tf_same", "shortcut": "released", "blocks_per_stage": 2,
                                         "kernel_size": 7}),
              ("aconv_simple", "stdconv", {"padding": "tf_same", "kernel_size": 9, "dropout": 0.5})]
    for name, method, knobs in cases:
        channels = 1 if name.startswith("aconv") else 3
        model = build_model(name, 10, method, in_channels=channels, **knobs).eval()
        mine, ref = both(model, (1, channels, 28, 28))
        assert mine == ref > 0, (name, method, knobs)


def test_every_op_flop_counter_mode_counts_has_a_formula_or_is_refused():
    aten = {op for op in flop_registry if str(op).startswith("aten.")}
    assert aten == set(_FORMULAS) | set(_UNSUPPORTED)
    assert len(flop_registry) - len(aten) <= 2  # flex attention: higher-order ops, refused by any dispatch mode

    class Backward(nn.Module):
        def forward(self, x):
            w = torch.zeros(2, 3, 3, 3)
            return torch.ops.aten.convolution_backward(torch.zeros(1, 2, 2, 2), x, w, None, [1, 1], [0, 0], [1, 1],
                                                       False, [0, 0], 1, [True, True, False])

    with pytest.raises(NotImplementedError, match="no formula for aten.convolution_backward"):
        count_macs(Backward(), torch.zeros(1, 3, 4, 4))


def test_transposed_conv_and_batched_matmul_as_flop_counter_mode():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(3, 5, 3, stride=2)
            self.proj = nn.Linear(7, 4)

        def forward(self, x):
            y = self.up(x).flatten(2)  # (1, 5, 49)
            z = torch.baddbmm(torch.zeros(1, 5, 5), y, y.transpose(1, 2)) @ torch.ones(5, 3)
            return z, self.proj(y[..., :7]), torch.bmm(y, y.transpose(1, 2))

    mine, ref = both(Net().eval(), (1, 3, 3, 3))
    assert mine == ref > 0


def test_count_params_flops_imports_no_dynamo():
    """FlopCounterMode imported torch._dynamo (~1.5 s): a plan's first FLOP estimate paid it."""
    code = ("import sys, torch, layers; m = layers.build_model('resnet20', 10, 'gmconv'); "
            "print(layers.count_params_flops(m, (1, 3, 32, 32))[1], 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["40551072", "False"]
