"""Analyses of a trial's model, opt-in per sweep (``analysis:`` in the sweep file), written by rank 0 into
``<trial dir>/analysis/`` and logged by the driver as the run's MLflow artifacts.

ERF (``analysis: {erf: {stage: layers.2, images: 64}}``): the effective receptive field of ``stage``'s centre
unit (``layers.erf``) over the first ``images`` validation images, once with the weights as initialised
(``erf_init``: the reference, recorded when the trial starts from scratch) and once with the trained ones
(``erf``). Each is kept as ``.npy`` (the map) and ``.png`` (drawn by ``orchestrator.plots.erfplot``), and
summarised as metrics: the radii (input pixels) of the centred discs holding 50 % and 90 % of the map's
mass, the theoretical receptive field's side, and the 90 % disc's diameter as a share of that side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import layers
from orchestrator.spec.schema import ErfSpec
from orchestrator.plots.erfplot import draw_erf

__all__ = ["ANALYSIS_DIR", "erf_analysis", "first_images", "read_metrics", "trial_erf"]

ANALYSIS_DIR = "analysis"


def first_images(loader: Any, count: int) -> torch.Tensor:
    """The first ``count`` images (normalised, as the model sees them) of ``loader``, or all it has."""
    batches, have = [], 0
    for x, _ in loader:
        batches.append(x)
        have += len(x)
        if have >= count:
            break
    return torch.cat(batches)[:count]


def erf_analysis(model: nn.Module, stage: str, images: torch.Tensor, out_dir: Path, name: str) -> dict[str, float]:
    """Measure, save (``<name>.npy``, ``<name>.png``, ``<name>.json``) and summarise one ERF map."""
    erf = layers.effective_receptive_field(model, stage, images).detach().cpu()
    r50, r90 = layers.erf_radii(erf)
    trf = layers.theoretical_receptive_field(model, stage)
    metrics = {f"{name}_r50": r50, f"{name}_r90": r90, f"{name}_trf": float(trf),
               f"{name}_r90_share": (2 * r90 + 1) / trf}
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / f"{name}.npy", erf.numpy())
    (out_dir / f"{name}.json").write_text(json.dumps(metrics, sort_keys=True) + "\n", encoding="utf-8")
    draw_erf(erf.numpy(), out_dir / f"{name}.png", f"{name}: {stage}, {len(images)} images, "
             f"r50 {r50:.1f} px, r90 {r90:.1f} px, TRF {trf} px")
    return metrics


def trial_erf(model: nn.Module, spec: ErfSpec, loader: Any, out_dir: Path, name: str) -> dict[str, float]:
    """The ERF a trial's ``analysis.erf`` asks for, over its first val images, saved as ``name``; returns every
    summary in ``out_dir`` (so the final one carries the ``erf_init`` reference too, when it was kept)."""
    erf_analysis(model, spec.stage, first_images(loader, spec.images), out_dir, name)
    return read_metrics(out_dir)


def read_metrics(out_dir: Path) -> dict[str, float]:
    """Every summary the analyses of a trial directory wrote (``*.json`` under ``analysis/``)."""
    metrics: dict[str, float] = {}
    for path in sorted(out_dir.glob("*.json")) if out_dir.is_dir() else []:
        metrics.update(json.loads(path.read_text(encoding="utf-8")))
    return metrics

