"""CoC's released-code knobs in the sweep schema and the two CoC sweeps: coc_pad, init, c1x1="ws"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import layers
from layers.coc import CoCConv2d
from orchestrator.spec.schema import LayerSpec, TrialSpec
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
COC_SWEEPS = ("coc_table1_imagenet", "coc_fig7_tinyimagenet")


def test_new_knobs_stay_out_of_the_knobs_and_keys_at_their_defaults():
    knobs = LayerSpec(method="coc").build_knobs()
    assert "coc_pad" not in knobs and "init" not in knobs
    # keys computed before the knobs existed (same fields, same values)
    sweep = "coc-fig7-tinyimagenet"
    trial = TrialSpec(sweep=sweep, model="resnet18", layer={"method": "coc", "c1x1": True, "sa": 3})
    assert trial.trial_key == "bc3d2e952c00"
    assert TrialSpec(sweep=sweep, model="resnet18", layer={"method": "coc"}).trial_key == "e54e6ef5f453"


def test_coc_pad_init_and_c1x1_ws_reach_the_coc_layers():
    spec = LayerSpec(method="coc", coc_pad="trainable", init="released", c1x1="ws")
    knobs = spec.build_knobs()
    assert (knobs["coc_pad"], knobs["init"], knobs["c1x1"]) == ("trainable", "released", "ws")
    assert "coc_pad" not in LayerSpec(method="stdconv", coc_pad="trainable").build_knobs()  # CoC's knob only
    with torch.device("meta"):
        model = layers.build_model("resnet18", 10, "coc", **knobs)
    cocs = [m for m in model.modules() if isinstance(m, CoCConv2d)]
    assert cocs and all((m.coc_pad, m.init) == ("trainable", "released") for m in cocs)
    assert any(type(m) is layers.StdConv2d and m.kernel_size == (1, 1) for m in model.modules())


@pytest.mark.parametrize("value,ok", [(False, True), (True, True), ("ws", True), ("coc", False), ("none", False)])
def test_c1x1_accepts_the_booleans_and_ws(value, ok):
    if ok:
        assert LayerSpec(method="coc", c1x1=value).c1x1 == value
    else:
        with pytest.raises(ValidationError):
            LayerSpec(method="coc", c1x1=value)


@pytest.mark.parametrize("stem", COC_SWEEPS)
def test_paper_profiles_run_coc_as_the_released_code(stem):
    trials = expand(load_sweep(EXPERIMENTS / f"{stem}.yaml", "paper", check=False))
    for t in trials:
        released = t.layer.method == "coc"
        assert (t.layer.coc_pad, t.layer.init) == (("trainable", "released") if released else ("zeros", "torch"))
        if released:
            assert t.layer.build_knobs()["init"] == "released"


@pytest.mark.parametrize("stem", COC_SWEEPS)
def test_headers_list_the_remaining_deviations_one_per_line(stem):
    header = (EXPERIMENTS / f"{stem}.yaml").read_text().split("\nname:")[0]
    listed = header.split("Still deviating from the released")[1].splitlines()[1:]
    items = [line for line in listed if line.startswith("# - ")]
    assert len(items) >= 4
    for topic in ("ShuffleNetV2", "zero_init_residual", "stnd"):
        assert any(topic in line for line in items), topic


def test_fig7_names_its_c1x1_reading_and_codes_settings_as_sa_skp_sl():
    text = (EXPERIMENTS / "coc_fig7_tinyimagenet.yaml").read_text()
    header = text.split("\nname:")[0]
    assert "c1x1: true" in header and "c1x1_ws" in header
    codes = re.search(r"sa/skp/sl: none, (.*?), no_skip", text, re.S).group(1)
    assert re.sub(r"\s*#\s*", " ", codes) == "221 (optimum), 121, 321, 241, 261, 222"
    trials = expand(load_sweep(EXPERIMENTS / "coc_fig7_tinyimagenet.yaml", "paper", check=False))
    settings = {f"{t.layer.sa}{t.layer.skp}{t.layer.sl}" for t in trials if t.layer.method == "coc"}
    assert {"221", "121", "321", "241", "261", "222"} == settings
    for stale in ("201", "101", "301", "202"):
        assert not re.search(rf"\b{stale}\b", text)
