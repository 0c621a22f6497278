"""Per-cell statistics of a regenerated table: mean, sample std, max, n and two-sample t-tests.

ACONV Tables 2-3 report mean, std and max of each run's best validation accuracy over 5 repeats and a
two-tailed t-test between conv and aconv; the same figures serve every table with repeats. The std is the
sample standard deviation (ddof=1), undefined (NaN) for a single run.

Which t-test: the ACONV paper says only "two-tailed t-tests"; all ten of its published (t, p) pairs follow
from its published means and stds with n = 5 under Student's pooled-variance test (df = 8), not under
Welch's (Table 2's CLT: Student p = 0.039 as printed, Welch p = 0.052), so `student` reproduces the paper
and `welch` (unequal variances) stays available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Summary", "summarize", "welch", "student", "t_test", "t_test_from_moments", "two_sided_p"]


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


def t_test_from_moments(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
                        kind: str = "welch") -> tuple[float, float]:
    """Two-sided t-test of a against b from each side's mean, sample std (ddof=1) and count: (t, p).

    ``kind``: ``welch`` (unequal variances, Welch-Satterthwaite df) or ``student`` (pooled variance,
    df = n_a + n_b - 2). NaNs when either side has fewer than 2 runs; both sides constant with different
    means gives t = +-inf and p = 0 (as scipy says).
    """
    if n_a < 2 or n_b < 2:
        return math.nan, math.nan
    va, vb = std_a**2, std_b**2
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "student":
            df = n_a + n_b - 2.0
            pooled = ((n_a - 1) * va + (n_b - 1) * vb) / df
            se = np.sqrt(pooled * (1.0 / n_a + 1.0 / n_b))
        elif kind == "welch":
            sa, sb = va / n_a, vb / n_b
            se = np.sqrt(sa + sb)
            df = (sa + sb) ** 2 / (sa**2 / (n_a - 1) + sb**2 / (n_b - 1))
        else:
            raise ValueError(f"t-test kind must be 'welch' or 'student' (got {kind!r})")
        t = np.float64(mean_a - mean_b) / se
    return float(t), two_sided_p(float(t), float(df))


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t distribution with ``df`` degrees of freedom (0 for an infinite t)."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    # scipy.special's Student t CDF instead of scipy.stats.ttest_ind: the same numbers, and ~0.2 s to import
    # instead of ~0.6 s (a third of `convsweep table`'s 2 s budget)
    from scipy.special import stdtr

    return float(2.0 * stdtr(df, -abs(t)))


def t_test(a: Sequence[float], b: Sequence[float], kind: str = "welch") -> tuple[float, float]:
    """Two-sided t-test (``welch`` or ``student``) of the runs ``a`` against the runs ``b``: (t, p)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    x, y = np.asarray(a, float), np.asarray(b, float)
    return t_test_from_moments(x.mean(), x.std(ddof=1), x.size, y.mean(), y.std(ddof=1), y.size, kind)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Welch t-test of ``a`` against ``b``: (t, p); NaNs when either side has fewer than 2 runs."""
    return t_test(a, b, "welch")


def student(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Student (pooled-variance) t-test of ``a`` against ``b``: (t, p)."""
    return t_test(a, b, "student")
