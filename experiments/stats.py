"""Seed statistics for ablation tables: mean +- 95% CI (Student t) and Welch's unequal-variance t-test."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation (ddof 1) and the half-width of the two-sided 95% t interval of n values."""

    n: int
    mean: float
    std: float
    half_width: float  # nan for n < 2


@dataclass(frozen=True)
class WelchTest:
    """diff = mean(variant) - mean(baseline); Welch's t, its Satterthwaite degrees of freedom, two-sided p."""

    diff: float
    t: float
    dof: float
    p: float  # nan when either side has < 2 values or both have zero spread


def summarize(values, level: float = 0.95) -> SeedSummary:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return SeedSummary(1, mean, math.nan, math.nan)
    std = float(x.std(ddof=1))
    return SeedSummary(n, mean, std, float(_stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n))


def welch(variant, baseline) -> WelchTest:
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return WelchTest(diff, math.nan, math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:
        return WelchTest(diff, math.nan, math.nan, math.nan)
    t = diff / math.sqrt(se2)
    dof = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return WelchTest(diff, float(t), float(dof), float(2 * _stats.t.sf(abs(t), dof)))
