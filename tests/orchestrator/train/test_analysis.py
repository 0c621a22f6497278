"""The ERF analysis recorded by the trainer: files in the trial directory, metrics in the summary, and a
measured property of the methods (a small-sigma S-GMConv concentrates the ERF)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.spec.schema import AnalysisSpec, ErfSpec, LayerSpec, TrialSpec
from orchestrator.train.trainer import train
from orchestrator.dirs.trialdir import TrialDir

from trial_helpers import CPU, new_trial, tiny_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _with_erf(spec: TrialSpec, stage: str = "layers.1", images: int = 16) -> TrialSpec:
    return spec.model_copy(update={"analysis": AnalysisSpec(erf=ErfSpec(stage=stage, images=images))})


def _run(tmp_path: Path, name: str, layer: LayerSpec) -> tuple[TrialDir, dict]:
    spec = _with_erf(tiny_spec(epochs=1, steps=3, layer=layer))
    trial = new_trial(tmp_path, name, spec)
    return trial, train(spec, CPU, trial)


def test_erf_is_recorded_at_init_and_after_training(tmp_path: Path) -> None:
    trial, summary = _run(tmp_path, "std", LayerSpec())
    folder = trial.path / "analysis"
    for name in ("erf_init", "erf"):
        erf = np.load(folder / f"{name}.npy")
        assert erf.shape == (32, 32) and erf.sum() > 0
        assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads((folder / f"{name}.json").read_text()) == {
            k: summary[k] for k in (f"{name}_r50", f"{name}_r90", f"{name}_trf", f"{name}_r90_share")}
        assert summary[f"{name}_trf"] == 37.0 and 0 < summary[f"{name}_r50"] <= summary[f"{name}_r90"]
    assert json.loads(trial.summary_path.read_text())["erf_r90"] == summary["erf_r90"]
    # an analysis does not change what the trial computes: same key with or without it
    assert _with_erf(tiny_spec()).trial_key == tiny_spec().trial_key


def test_small_sigma_s_gmconv_concentrates_the_trained_erf(tmp_path: Path) -> None:
    """Measured, not assumed: after the same short training, S-GMConv with sigma 1 (its Gaussian masks
    shrink every 3x3 kernel towards its centre) holds 90 % of the ERF's mass in a smaller disc than StdConv."""
    _, std = _run(tmp_path, "std", LayerSpec())
    _, gm = _run(tmp_path, "gm", LayerSpec(method="s-gmconv", sigma_init=1.0))
    assert gm["erf_r90"] < std["erf_r90"] and gm["erf_r50"] < std["erf_r50"], (gm, std)
    assert gm["erf_init_r90"] < std["erf_init_r90"]
