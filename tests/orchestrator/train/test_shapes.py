"""Learned shapes recorded by the trainer (`analysis: {shapes: ...}`): the arrays are the trained model's own
(checked against the last checkpoint's weights), the pictures exist where the model has the layer kind, the
sigma traces are the logged sigmas, and asking for shapes does not re-key the trial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import layers
from orchestrator.spec.schema import AnalysisSpec, LayerSpec, TrialSpec
from orchestrator.spec.figurespec import ShapesSpec
from orchestrator.train.shapes import sigma_traces
from orchestrator.train.build import build_trial_model
from orchestrator.train.trainer import train
from orchestrator.dirs.trialdir import TrialDir

from trial_helpers import CPU, last_state, new_trial, tiny_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PNG = b"\x89PNG\r\n\x1a\n"


def _with_shapes(spec: TrialSpec, **knobs: object) -> TrialSpec:
    return spec.model_copy(update={"analysis": AnalysisSpec(shapes=ShapesSpec(**knobs))})


def _trained(tmp_path: Path, name: str, layer: LayerSpec, epochs: int = 2, **knobs: object):
    spec = _with_shapes(tiny_spec(epochs=epochs, steps=1, layer=layer), **knobs)
    trial = new_trial(tmp_path, name, spec)
    train(spec, CPU, trial)
    model = build_trial_model(spec)
    model.load_state_dict(last_state(trial)["model"])
    return trial, model, np.load(trial.path / "analysis" / "shapes.npz")


def test_static_gmconv_masks_every_epoch_and_traces(tmp_path: Path) -> None:
    trial, model, arrays = _trained(tmp_path, "sg", LayerSpec(method="s-gmconv", sigma_init=2.0), every=1)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, layers.GMConv2d)}
    assert convs and {f"gmconv_masks:{n}" for n in convs} <= set(arrays)
    for name, conv in convs.items():  # the trained model's masks, not the initial ones
        assert np.allclose(arrays[f"gmconv_masks:{name}"], conv.mask().detach().numpy(), atol=1e-6)
        assert float(arrays[f"gmconv_sigma:{name}"]) == pytest.approx(float(conv.sigma.detach().abs()), abs=1e-6)
        assert float(conv.sigma.detach().abs()) != 2.0
    folder = trial.path / "analysis"
    for png in ("gmconv_masks.png", "sigma_traces.png"):
        assert (folder / png).read_bytes()[:8] == PNG
        assert (folder / "epochs" / "e001" / png).read_bytes()[:8] == PNG
    assert not (folder / "aconv_envelopes.png").exists() and not (folder / "coc_kernels.png").exists()
    traces = sigma_traces(TrialDir(trial.path).read_metrics())
    first = next(iter(convs))
    epochs, values = traces[f"gmconv.{first}"]
    assert epochs == [1, 2] and values[-1] == pytest.approx(float(convs[first].sigma.detach().abs()), abs=1e-6)
    assert _with_shapes(tiny_spec()).trial_key == tiny_spec().trial_key


def test_dynamic_gmconv_sigma_distribution_over_images(tmp_path: Path) -> None:
    trial, model, arrays = _trained(tmp_path, "dg", LayerSpec(method="gmconv", sigma_pattern="sigma1_rsigma"),
                                    epochs=1, images=24)
    dynamic = [n for n, m in model.named_modules() if isinstance(m, layers.GMConv2d) and m.dynamic]
    assert dynamic
    sigmas = arrays[f"gmconv_sigmas:{dynamic[0]}"]
    assert sigmas.shape == (24, 2) and (sigmas > 0).all()
    assert str(arrays[f"gmconv_pattern:{dynamic[0]}"]) == "sigma1_rsigma"
    # the distribution is the sigma module's prediction on the layer's real input (the stem sees the image)
    images = torch.cat([x for x, _ in _val_batches(trial)])[:24]
    model.eval()
    with torch.no_grad():
        expected = torch.stack(dict(model.named_modules())[dynamic[0]].sample_sigmas(images), 1)
    assert np.allclose(sigmas, expected.numpy(), atol=1e-5)
    assert (trial.path / "analysis" / "gmconv_sigmas.png").read_bytes()[:8] == PNG


def _val_batches(trial: TrialDir):
    import pipelines

    return pipelines.build_loader("digits", None, "val", batch_size=16, backend="pytorch", rank=0, world_size=1,
                                  device="cpu", seed=3, num_workers=0)


def test_aconv_envelopes_and_coc_kernels(tmp_path: Path) -> None:
    trial, model, arrays = _trained(tmp_path, "ac", LayerSpec(method="aconv"), epochs=1)
    aconvs = {n: m for n, m in model.named_modules() if isinstance(m, layers.AdaptiveConv2d)}
    name, conv = next(iter(aconvs.items()))
    assert np.allclose(arrays[f"aconv_envelopes:{name}"], conv.envelope().detach().numpy(), atol=1e-6)
    assert np.allclose(arrays[f"aconv_sigmas:{name}"], conv.sigma.detach().numpy())
    assert (trial.path / "analysis" / "aconv_envelopes.png").read_bytes()[:8] == PNG

    trial, model, arrays = _trained(tmp_path, "coc", LayerSpec(method="coc"), epochs=1, coc_layer="layers.1.0.conv1")
    conv = dict(model.named_modules())["layers.1.0.conv1"]
    effective = arrays["coc_effective:layers.1.0.conv1"]
    assert np.allclose(effective, conv.get_equivalent_kernel_bias()[0].detach().numpy(), atol=1e-5)
    assert np.allclose(arrays["coc_basic:layers.1.0.conv1"], conv.weight.detach().numpy())
    assert not np.allclose(effective, arrays["coc_basic:layers.1.0.conv1"], atol=1e-3)  # the super conv acts
    assert (trial.path / "analysis" / "coc_kernels.png").read_bytes()[:8] == PNG


def test_unknown_coc_layer_names_the_key_and_the_allowed_layers() -> None:
    model = layers.build_model("resnet20", 10, "coc")
    with pytest.raises(ValueError, match=r"analysis.shapes.coc_layer: 'nope' .*allowed: \['conv1'|layers"):
        layers.learned_shapes(model, coc_layer="nope")
