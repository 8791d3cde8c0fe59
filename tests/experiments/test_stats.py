"""Report statistics against a hand-computed example: mean, 95% CI half-width, Welch's t, dof and p.

Baseline [2.0, 2.2, 2.4]: mean 2.2, s = 0.2. Variant [2.5, 2.9, 3.3]: mean 2.9, s = 0.4.
CI half-width (n = 3, 2 dof): t_0.975,2 x s / sqrt(3), with the 2-dof quantile in closed form
t = (2q - 1) sqrt(2 / (4 q (1 - q))) = 4.302653.
Welch: se^2 = 0.04/3 + 0.16/3 = 0.2/3, t = 0.7 / sqrt(0.2/3) = 2.711088,
dof = (0.2/3)^2 / ((0.04/3)^2/2 + (0.16/3)^2/2) = 50/17 = 2.941176,
p = 2 P(T_dof > t), integrated here from the t density with NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.stats import summarize, welch

BASE, VARIANT = [2.0, 2.2, 2.4], [2.5, 2.9, 3.3]


def _t2_quantile(q: float) -> float:
    return (2 * q - 1) * math.sqrt(2 / (4 * q * (1 - q)))


def _two_sided_p(t: float, dof: float) -> float:
    """2 x the upper tail of Student's t, by the trapezoid rule on the density (substituting x = t / u)."""
    u = np.linspace(0.0, 1.0, 2_000_001)[1:]
    x = t / u
    c = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
    density = c * (1 + x ** 2 / dof) ** (-(dof + 1) / 2) * t / u ** 2  # dx = t / u^2 du
    return 2 * float(np.trapezoid(np.concatenate([[0.0], density]), np.concatenate([[0.0], u])))


def test_closed_form_quantile_is_the_textbook_value():
    assert _t2_quantile(0.975) == pytest.approx(4.302653, abs=1e-6)


def test_mean_and_ci_half_width():
    s = summarize(BASE)
    assert s.n == 3 and s.mean == pytest.approx(2.2) and s.std == pytest.approx(0.2)
    assert s.half_width == pytest.approx(_t2_quantile(0.975) * 0.2 / math.sqrt(3), rel=1e-9)
    assert s.half_width == pytest.approx(0.496827, abs=1e-6)


def test_welch_t_dof_and_p():
    w = welch(VARIANT, BASE)
    assert w.diff == pytest.approx(0.7)
    assert w.t == pytest.approx(0.7 / math.sqrt(0.2 / 3), rel=1e-12)
    assert w.t == pytest.approx(2.711088, abs=1e-6)
    assert w.dof == pytest.approx(50 / 17, rel=1e-12)
    assert w.p == pytest.approx(_two_sided_p(w.t, 50 / 17), rel=1e-5)
    assert 0.05 < w.p < 0.1  # a 0.7-nat gap over 3 noisy seeds is not significant at 5%
    assert welch(BASE, VARIANT).t == pytest.approx(-w.t) and welch(BASE, VARIANT).p == pytest.approx(w.p)


def test_degenerate_inputs_give_nan_not_errors():
    assert math.isnan(summarize([2.0]).half_width) and summarize([]).n == 0
    assert math.isnan(welch([2.0], BASE).p)
    assert math.isnan(welch([1.0, 1.0], [1.0, 1.0]).p)
