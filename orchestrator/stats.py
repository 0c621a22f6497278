"""Per-cell statistics of a regenerated table: mean, sample std, max, n and the Welch t-test.

ACONV Tables 2-3 report mean, std and max of each run's best validation accuracy over 5 repeats and a
two-tailed t-test between conv and aconv; the same figures serve every table with repeats. The std is the
sample standard deviation (ddof=1), undefined (NaN) for a single run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Summary", "summarize", "welch"]


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # ddof=1; NaN when n < 2
    max: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample std, max and count of one cell's run values (NaN figures for an empty cell)."""
    if not values:
        return Summary(0, math.nan, math.nan, math.nan)
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return Summary(int(arr.size), float(arr.mean()), std, float(arr.max()))


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Welch t-test of ``a`` against ``b``: (t, p); NaNs when either side has fewer than 2 runs."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    # scipy.special's Student t CDF instead of scipy.stats.ttest_ind: the same numbers, and ~0.2 s to import
    # instead of ~0.6 s (a third of `convsweep table`'s 2 s budget)
    from scipy.special import stdtr

    x, y = np.asarray(a, float), np.asarray(b, float)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (x.mean() - y.mean()) / np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
        p = 2.0 * stdtr(df, -np.abs(t)) if np.isfinite(t) else (0.0 if np.isinf(t) else math.nan)
    return float(t), float(p)  # both sides constant: t = +-inf, p = 0 when the means differ (as scipy says)
