"""Learned shapes of a trial's model, opt-in per sweep (``analysis: {shapes: {every: K}}``), written by rank 0
into ``<trial dir>/analysis/`` beside the ERF (and logged with it as the run's MLflow artifacts).

At the last epoch: ``shapes.npz`` (every array of ``layers.learned_shapes``, keyed ``<kind>:<layer>``) and
one PNG per kind the model has (``orchestrator.plots.shapeplots``): ``gmconv_masks.png``, ``gmconv_sigmas.png``
(the dynamic sigmas' distribution over validation images, per pattern), ``aconv_envelopes.png``,
``coc_kernels.png`` (effective kernels beside the basic ones), and ``sigma_traces.png`` (every learned
sigma over the epochs, read back from ``metrics.jsonl``: the logged values, not a re-computation). With
``every: K`` the same are written for each K-th epoch under ``analysis/epochs/e<K>/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import layers
from orchestrator.spec.figurespec import ShapesSpec
from orchestrator.plots.shapeplots import SHAPE_PICTURES

__all__ = ["SHAPE_PICTURES", "SHAPES_FILE", "epoch_is_due", "record_shapes", "shape_arrays", "sigma_traces"]

SHAPES_FILE = "shapes.npz"


def epoch_is_due(spec: ShapesSpec, epoch: int, epochs: int) -> bool:
    return epoch == epochs or (spec.every is not None and epoch % spec.every == 0)


def shape_arrays(shapes: layers.LearnedShapes) -> dict[str, np.ndarray]:
    """The flat ``{"<kind>:<layer>": array}`` stored in ``shapes.npz``."""
    out: dict[str, np.ndarray] = {}
    for kind in ("gmconv_masks", "gmconv_sigmas", "aconv_envelopes", "aconv_sigmas"):
        for name, tensor in getattr(shapes, kind).items():
            out[f"{kind}:{name}"] = tensor.numpy()
    for name, value in shapes.gmconv_sigma.items():
        out[f"gmconv_sigma:{name}"] = np.asarray(value)
    for name, pattern in shapes.gmconv_patterns.items():
        out[f"gmconv_pattern:{name}"] = np.asarray(pattern)
    if shapes.coc_layer is not None:
        assert shapes.coc_basic is not None and shapes.coc_effective is not None
        out[f"coc_basic:{shapes.coc_layer}"] = shapes.coc_basic.numpy()
        out[f"coc_effective:{shapes.coc_layer}"] = shapes.coc_effective.numpy()
    return out


def sigma_traces(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """``{sigma key: (epochs, values)}`` from the trial's epoch records (their ``sigma`` dicts, as the trainer
    logs ``layers.sigma_summary``); keys absent from an epoch are left out of that epoch."""
    traces: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for key, value in (record.get("sigma") or {}).items():
            epochs, values = traces.setdefault(key, ([], []))
            epochs.append(int(record["epoch"]))
            values.append(float(value))
    return traces


def record_shapes(model: nn.Module, spec: ShapesSpec, epoch: int, epochs: int,
                  images: Callable[[int], torch.Tensor], records: Callable[[], list[dict[str, Any]]],
                  analysis_dir: Path) -> list[Path]:
    """Rank 0, after epoch ``epoch``'s record is written: the shapes and pictures when the epoch is due
    (``epoch_is_due``), else nothing. ``images(n)`` gives n validation images, ``records()`` the epoch
    records so far; both are only called when needed. Returns the files written."""
    if not epoch_is_due(spec, epoch, epochs):
        return []
    from orchestrator.plots import shapeplots
    out_dir = analysis_dir if epoch == epochs else analysis_dir / "epochs" / f"e{epoch:03d}"
    out_dir.mkdir(parents=True, exist_ok=True)
    dynamic = any(isinstance(m, layers.GMConv2d) and m.dynamic for m in model.modules())
    shapes = layers.learned_shapes(model, images(spec.images) if dynamic else None, coc_layer=spec.coc_layer)
    written = []
    arrays = shape_arrays(shapes)
    if arrays:
        np.savez(out_dir / SHAPES_FILE, **arrays)
        written.append(out_dir / SHAPES_FILE)
    written += shapeplots.draw_shapes(shapes, out_dir, epoch=epoch, filters=spec.filters)
    traces = sigma_traces(records())
    if traces:
        written.append(shapeplots.draw_sigma_traces(traces, out_dir / "sigma_traces.png"))
    return written
