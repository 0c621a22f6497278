"""layers.declared_macs: the torch-free counts of our own models equal FlopCounterMode's / 2 on the built
models, for every method they answer, several input sizes and every knob that changes a shape."""

import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from layers import build_model, method_names, model_names
from layers.declared_macs import declared_macs

OWN = ("resnet20", "resnet56", "resnet18_cifar", "aconv_simple", "aconv_resnet")
METHODS = ("stdconv", "s-gmconv", "gmconv", "aconv")


def check(name, method, classes, channels, sizes, knobs):
    """declared_macs == FlopCounterMode / 2 on the model built on meta (cheap), at each of ``sizes``."""
    with torch.device("meta"):
        model = build_model(name, classes, method, in_channels=channels, **knobs).eval()
    for size in sizes:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, *size, device="meta"))
        declared = declared_macs(name, method, classes, channels, size, dict(knobs))
        assert declared == counter.get_total_flops() // 2, (name, method, size, knobs)


@pytest.mark.parametrize("name", OWN)
def test_every_method_at_the_datasets_sizes(name):
    for method in METHODS:
        check(name, method, 10, 3, [(32, 32)] if name == "resnet56" else [(32, 32), (64, 64)], {})
        if name != "resnet56":  # resnet20's blocks, more of them: one size is enough (a forward is 0.2 s here)
            check(name, method, 10, 1, [(28, 28), (50, 37), (60, 60)], {})


@pytest.mark.filterwarnings("ignore:convert_model. no conv matched")  # gmconv with 1x1 convs only
def test_the_knobs_that_change_shapes():
    """Kernel sizes (1 leaves the D-GMConv stem plain), the ACONV ResNet's blocks, padding (TF 'same' on odd
    and even sides) and shortcuts, the D-GMConv stem's sigma patterns, the class count; the knobs that change
    only values (sigmas, init, dropout, stnd) change nothing."""
    for name in ("resnet20", "resnet18_cifar", "aconv_simple"):
        for k in (1, 5, 7):
            for method in ("stdconv", "gmconv") if k == 1 else METHODS:
                check(name, method, 10, 3, [(33, 30)], {"kernel_size": k})
    for pattern in ("sigma", "sigma1_sigma2", "sigma1_rsigma"):
        check("resnet56", "gmconv", 100, 3, [(32, 32)], {"sigma_pattern": pattern, "sigma_init": 2.0, "stnd": True})
    for blocks in (1, 2):
        for padding in ("symmetric", "tf_same"):
            for shortcut in ("projection", "released"):
                check("aconv_resnet", "aconv", 7, 1, [(50, 37), (31, 45)],
                      {"blocks_per_stage": blocks, "padding": padding, "shortcut": shortcut, "kernel_size": 9,
                       "dropout": 0.5, "init": "released"})
    check("aconv_simple", "stdconv", 40, 1, [(50, 37)], {"padding": "tf_same", "dropout": 0.0, "init": "released"})


def test_what_it_does_not_know_is_none():
    assert declared_macs("resnet20", "coc", 10, 3, (32, 32), {}) is None
    for name in set(model_names()) - set(OWN):
        assert declared_macs(name, "stdconv", 10, 3, (224, 224), {}) is None
    assert set(METHODS) | {"coc"} == set(method_names())  # a new method is answered here only when added


def test_it_imports_no_torch():
    code = ("import sys; from layers.declared_macs import declared_macs; "
            "print(declared_macs('resnet20', 'gmconv', 10, 3, (32, 32), {}), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["40551072", "False"]
