"""Drawing one effective receptive field map (``orchestrator.train.analysis``) with matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.plots.plotting import pyplot

__all__ = ["draw_erf"]


def draw_erf(erf: np.ndarray, path: Path, title: str) -> Path:
    """The map scaled to its maximum (a map of zeros stays black), with a colour bar; returns ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=100)
    image = ax.imshow(erf / max(float(erf.max()), 1e-30), cmap="magma", vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
