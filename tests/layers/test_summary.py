"""sigma_summary (flat dict for logging) and count_params_flops (FlopCounterMode's formulas / 2)."""

import torch
from torch import nn

from layers import build_model, count_params_flops, sigma_summary


def test_sigma_summary_keys_and_values():
    model = build_model("resnet20", 10, "gmconv", sigma_init=4.0)
    model(torch.randn(2, 3, 32, 32))
    summary = sigma_summary(model)
    assert summary["gmconv.layers.0.0.conv1"] == 4.0
    assert abs(summary["gmconv.conv1.sigma1"] - summary["gmconv.conv1.sigma2"]) < 1e-5  # r_sigma starts at 1
    assert abs(summary["gmconv.conv1.sigma1"] - 4.0) < 1e-5
    assert len(summary) == 2 + 18
    model = build_model("resnet20", 10, "aconv")
    summary = sigma_summary(model)
    assert abs(summary["aconv.conv1.min"] - 0.1) < 1e-6 and abs(summary["aconv.conv1.max"] - 0.5) < 1e-6
    assert abs(summary["aconv.conv1.mean"] - 0.3) < 1e-6
    assert sigma_summary(build_model("resnet20", 10, "coc")) == {}
    assert sigma_summary(build_model("resnet20", 10)) == {}


def test_count_params_flops_halves_flop_counter():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    params, macs = count_params_flops(model, (1, 3, 4, 4))
    assert params == 3 * 8 * 9 + 8 + 128 * 5 + 5
    assert macs == 8 * 4 * 4 * 3 * 9 + 128 * 5
    model.train()
    count_params_flops(model, (1, 3, 4, 4))
    assert model.training  # mode restored
