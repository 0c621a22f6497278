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
    from scipy import stats  # ~0.8 s to import: only tables with a t-test pay it

    result = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    return float(result.statistic), float(result.pvalue)
