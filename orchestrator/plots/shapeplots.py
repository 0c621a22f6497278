"""Drawing the learned shapes (``orchestrator.train.shapes``) with matplotlib (Agg), imported only when drawing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.plots.plotting import pyplot

if TYPE_CHECKING:
    import layers

__all__ = ["SHAPE_PICTURES", "draw_shapes", "draw_sigma_traces"]

# every picture a trial can have, in the order a report shows them
SHAPE_PICTURES = ("gmconv_masks.png", "gmconv_sigmas.png", "aconv_envelopes.png", "coc_kernels.png",
                  "sigma_traces.png")


def _grid(n: int, columns: int) -> tuple[int, int]:
    cols = max(1, min(n, columns))
    return math.ceil(n / cols), cols


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def draw_shapes(shapes: layers.LearnedShapes, out_dir: Path, *, epoch: int, filters: int) -> list[Path]:
    """One PNG per kind of shape the model has; returns their paths."""
    written = []
    if shapes.gmconv_masks:
        written.append(_masks(shapes, out_dir / "gmconv_masks.png", epoch))
    if shapes.gmconv_sigmas:
        written.append(_sigma_distribution(shapes, out_dir / "gmconv_sigmas.png", epoch))
    if shapes.aconv_envelopes:
        written.append(_envelopes(shapes, out_dir / "aconv_envelopes.png", epoch, filters))
    if shapes.coc_layer is not None:
        written.append(_coc_kernels(shapes, out_dir / "coc_kernels.png", epoch, filters))
    return written


def _masks(shapes: layers.LearnedShapes, path: Path, epoch: int) -> Path:
    plt = pyplot()
    names = list(shapes.gmconv_masks)
    rows, cols = _grid(len(names), 8)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        ax.imshow(shapes.gmconv_masks[name].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"{name}\nσ={shapes.gmconv_sigma[name]:.2f}", fontsize=6)
    fig.suptitle(f"S-GMConv masks, epoch {epoch}", fontsize=8)
    return _save(fig, path)


def _sigma_distribution(shapes: layers.LearnedShapes, path: Path, epoch: int) -> Path:
    plt = pyplot()
    names = list(shapes.gmconv_sigmas)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        sigmas = shapes.gmconv_sigmas[name].numpy()
        pattern = shapes.gmconv_patterns[name]
        low, high = float(sigmas.min()), float(sigmas.max())
        if high - low < 1e-3:  # all images alike (e.g. early in training): a visible bin around the value
            low, high = low - 0.05, high + 0.05
        ax.hist(sigmas[:, 0], bins=24, range=(low, high), alpha=0.6, label="σ1")
        if pattern != "sigma":  # the circular pattern has sigma2 = sigma1
            ax.hist(sigmas[:, 1], bins=24, range=(low, high), alpha=0.6, label="σ2")
        ax.set_title(f"{name} ({pattern}), {len(sigmas)} images", fontsize=7)
        ax.set_xlabel("predicted σ", fontsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(f"D-GMConv sigmas over validation images, epoch {epoch}", fontsize=8)
    return _save(fig, path)


def _envelopes(shapes: layers.LearnedShapes, path: Path, epoch: int, filters: int) -> Path:
    plt = pyplot()
    names = list(shapes.aconv_envelopes)
    cols = min(filters, max(len(e) for e in shapes.aconv_envelopes.values()))
    fig, axes = plt.subplots(len(names), cols, figsize=(0.9 * cols + 0.6, 1.0 * len(names) + 0.5), squeeze=False)
    for row, name in zip(axes, names):
        envelopes, sigmas = shapes.aconv_envelopes[name].numpy(), shapes.aconv_sigmas[name].numpy()
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(envelopes):
                ax.imshow(envelopes[j], cmap="viridis", vmin=0.0)
                ax.set_title(f"σ={sigmas[j]:.2f}", fontsize=5)
        row[0].text(-0.3, 0.5, name, transform=row[0].transAxes, fontsize=5, ha="right", va="center")
    fig.suptitle(f"ACONV envelopes (first {cols} filters per layer), epoch {epoch}", fontsize=8)
    return _save(fig, path)


def _coc_kernels(shapes: layers.LearnedShapes, path: Path, epoch: int, filters: int) -> Path:
    plt = pyplot()
    assert shapes.coc_basic is not None and shapes.coc_effective is not None
    # input channel 0 of the first filters: the kernels a super conv associates sit side by side
    basic, effective = shapes.coc_basic[:filters, 0].numpy(), shapes.coc_effective[:filters, 0].numpy()
    fig, axes = plt.subplots(2, len(basic), figsize=(0.8 * len(basic) + 0.8, 2.2), squeeze=False)
    for row, kernels, label in ((axes[0], basic, "basic"), (axes[1], effective, "effective")):
        for ax, kernel in zip(row, kernels):
            bound = float(np.abs(kernel).max()) or 1.0
            ax.imshow(kernel, cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=7)
    fig.suptitle(f"CoC {shapes.coc_layer}: basic vs effective kernels (input channel 0), epoch {epoch}",
                 fontsize=8)
    return _save(fig, path)


def draw_sigma_traces(traces: dict[str, tuple[list[int], list[float]]], path: Path) -> Path:
    """Every logged sigma over the epochs; ACONV's per-layer min/max as a band around its mean."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for key, (epochs, values) in traces.items():
        if key.startswith("aconv.") and key.endswith((".min", ".max")):
            continue
        line = ax.plot(epochs, values, marker="o", markersize=3, label=key)[0]
        if key.startswith("aconv.") and key.endswith(".mean"):
            low, high = traces.get(key[:-5] + ".min"), traces.get(key[:-5] + ".max")
            if low and high:
                ax.fill_between(low[0], low[1], high[1], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("σ")
    ax.set_title("learned sigmas over epochs (logged)", fontsize=8)
    if len(traces) <= 16:
        ax.legend(fontsize=5, ncol=2)
    return _save(fig, path)
