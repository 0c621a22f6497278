"""The plots package: what it imports (so a job and the tables can both use it) and the ERF picture it draws."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from orchestrator.plots.erfplot import draw_erf

REPO = Path(__file__).resolve().parents[3]


def test_plots_import_no_torch_no_matplotlib_and_nothing_of_the_tables_or_the_job() -> None:
    code = ("import sys, orchestrator.plots.plotting, orchestrator.plots.erfplot, orchestrator.plots.shapeplots; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'matplotlib') or "
            "m.startswith(('orchestrator.tables', 'orchestrator.train', 'orchestrator.run', 'orchestrator.track'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_erf_map_is_drawn_scaled_to_its_peak(tmp_path: Path) -> None:
    erf = np.zeros((9, 9))
    erf[4, 4], erf[4, 5] = 8.0, 2.0
    path = draw_erf(erf, tmp_path / "erf.png", "erf: layers.1")
    pixels = imread(path)
    assert pixels.shape[:2] == (400, 420)  # figsize (4.2, 4.0) at 100 dpi
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10  # a map and a colour bar, not blank
    scaled = imread(draw_erf(erf * 1e6, tmp_path / "scaled.png", "erf: layers.1"))
    assert np.array_equal(scaled, pixels)  # the colours show the share of the peak, not the raw gradient size
    flat = draw_erf(np.zeros((9, 9)), tmp_path / "zeros.png", "zeros")  # no division by a zero peak
    assert imread(flat).shape == pixels.shape
