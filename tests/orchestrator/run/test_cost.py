"""run.cost: the FLOP estimate's multiply-adds, as a plan gets them (declared from our models' shapes, or
counted on a built model: small images on the CPU, the weights left uninitialised), equal FlopCounterMode's
/ 2 on every model/method/input of the experiments' sweeps; the first plan that counts imports no torch for
our own models and no torch._dynamo otherwise."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

import layers
import pipelines
from orchestrator.run import cost
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"


@pytest.fixture(autouse=True)
def _one_thread():
    """The reference's forwards on one image: a second intra-op thread only spins (4x the CPU time)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def experiment_trials() -> dict[tuple, object]:
    """One trial per (model, method, input shape) of every experiments/*.yaml sweep and profile (all of their
    193 distinct calibration keys would take 10 s here)."""
    trials = {}
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        for profile in [None, *(yaml.safe_load(path.read_text()).get("profiles") or {})]:
            spec = load_sweep(path, profile, check=False)
            for trial in expand(spec) if spec.evaluate is None else []:
                key = json.loads(cost.calibration_key(trial))
                trials.setdefault((key["model"], key["method"], tuple(key["input"])), trial)
    return trials


def flop_counter_mode(trial, device: str = "cpu") -> int:
    """The reference: a model built as a trial builds it (initialised), its forward under FlopCounterMode."""
    info = pipelines.dataset_info(trial.dataset.name)
    with torch.device(device):
        model = layers.build_model(trial.model, info.num_classes, trial.layer.method,
                                   in_channels=info.in_channels, **trial.layer.build_knobs()).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, info.in_channels, *info.image_shape, device=device))
    return counter.get_total_flops() // 2


def test_counts_of_the_experiments_small_images_equal_flop_counter_mode(monkeypatch):
    """Every key counted on the CPU (the ImageNet-sized ones are counted on meta by the counter that
    tests/layers/test_macs.py holds to FlopCounterMode on the same models)."""
    monkeypatch.setattr(cost, "_FLOPS", {})
    small = {k: t for k, t in experiment_trials().items() if math.prod(k[2][1:]) <= cost.CPU_COUNT_PIXELS}
    assert {k[:2] for k in small} >= {("resnet20", "coc"), ("resnet56", "gmconv"), ("resnet18_cifar", "s-gmconv"),
                                      ("aconv_simple", "aconv"), ("aconv_resnet", "stdconv")}
    assert {k[2] for k in small} == {(3, 32, 32), (1, 28, 28), (1, 50, 37), (1, 60, 60)}
    for key, trial in small.items():
        expected = flop_counter_mode(trial)
        assert cost.forward_macs(trial) == expected, key
        assert cost._counted_macs(trial, pipelines.dataset_info(trial.dataset.name)) == expected, key


def test_counts_of_imagenet_sized_images_on_meta_equal_flop_counter_mode(monkeypatch):
    """The plan's other path (large images: meta, initialisation skipped) on three of the experiments'
    ImageNet-sized combinations (all 26 take 30 s; tests/layers/test_macs.py holds the counter itself to
    FlopCounterMode on each of them)."""
    trials = experiment_trials()
    for key in [("resnet18", "coc", (3, 128, 128)), ("mobilenet_v3_small", "coc", (3, 224, 224)),
                ("alexnet", "gmconv", (3, 224, 224))]:
        trial = trials[key]
        info = pipelines.dataset_info(trial.dataset.name)
        assert cost._counted_macs(trial, info) == flop_counter_mode(trial, device="meta"), key


def test_the_first_counting_plan_imports_no_torch_for_our_models_and_no_dynamo_for_coc(tmp_path):
    """Our own models' counts are worked out from their shapes (layers.declared_macs); CoC's are counted on a
    built model, without FlopCounterMode's import of torch._dynamo (~1.5 s)."""
    for methods, imported in ((["stdconv", "s-gmconv", "gmconv", "aconv"], ["False", "False"]),
                              (["stdconv", "coc"], ["True", "False"])):
        root = tmp_path / "-".join(methods)
        path = root / "s.yaml"
        root.mkdir()
        path.write_text(yaml.safe_dump({
            "name": "flops", "storage": {"root": str(root / "runs")},
            "base": {"model": "resnet20", "dataset": {"name": "cifar10", "backend": "synthetic"}},
            "grid": {"layer.method": methods}, "seeds": [0],
            "resources": {"gpu_type": "A100", "gpus_per_node": 1}}))
        code = ("import sys; from orchestrator.run.plan import plan; from orchestrator.spec.load import load_sweep; "
                f"p = plan(load_sweep({str(path)!r})); print(p.rows[0].cost_source.split()[0]); "
                "print('torch' in sys.modules, 'torch._dynamo' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        assert out == ["FLOPs", *imported], methods
        assert len(json.loads((root / "runs" / cost.FLOPS_FILE).read_text())["macs"]) == len(methods)
