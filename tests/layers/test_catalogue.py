"""layers.catalogue answers what a build would, without torch: its kernels are the built models' kernels, and
``check_build`` refuses exactly the settings ``build_model`` refuses, with the same message."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch
from torch import nn

from layers.catalogue import MODEL_NAMES, check_build, model_facts
from layers.models.registry import _REGISTRY, build_model


def _kernel_sizes(model: nn.Module) -> tuple[int, ...]:
    """In the order a build meets them: the first refused kernel decides the message."""
    return tuple(dict.fromkeys(m.kernel_size[0] for m in model.modules() if isinstance(m, nn.Conv2d)))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_declared_kernels_are_the_built_models_kernels(name):
    facts = model_facts(name)
    for kernel_size in (3, 5) if facts.kernel_size_knob else (None,):
        with torch.device("meta"):
            model = _REGISTRY[name].builder(10, 3, **({} if kernel_size is None else {"kernel_size": kernel_size}))
        assert facts.kernel_sizes(kernel_size) == _kernel_sizes(model), (name, kernel_size)


COC_SETTINGS = [dict(skp=skp, dilate=dilate, c1x1=c1x1, kernel_size=k)
                for skp, dilate, c1x1, k in itertools.product((0, 2, 6), (True, False), (False, True), (None, 5))]


@pytest.mark.parametrize("name", ["resnet18_cifar", "mobilenet_v3_small", "alexnet", "aconv_resnet"])
def test_check_build_refuses_what_build_model_refuses(name):
    checked = 0
    for knobs in COC_SETTINGS:
        if knobs["kernel_size"] is not None and not model_facts(name).kernel_size_knob:
            continue
        knobs = {k: v for k, v in knobs.items() if v is not None}
        try:
            with torch.device("meta"):
                build_model(name, 10, "coc", **knobs)
            built = None
        except ValueError as exc:
            built = str(exc)
        try:
            assert check_build(name, 10, "coc", **knobs) is True
            checked_msg = None
        except ValueError as exc:
            checked_msg = str(exc)
        assert checked_msg == built, (name, knobs)
        checked += built is not None
    assert checked, f"no setting of {name} was refused: the table tests nothing"


def test_validate_imports_neither_torch_nor_mlflow_nor_ray():
    code = ("import sys; from orchestrator.cli import main; main(['validate', 'experiments/quickstart.yaml']); "
            "print(sorted(m for m in ('torch', 'mlflow', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
