"""The demo's IsoFLOP design, checked on its expanded plan: span, sizes per budget, sizes around the optimum."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from research.config import ModelConfig
from research.model.flops import count_params
from sweeps import OptimumGuess, ShapeRule, SweepError, expand, isoflop_around, sizes_around
from sweeps.configs import demo

SHAKESPEARE_TRAIN_BYTES = 4.8e6  # the embedded corpus' training split is ~4.9M bytes (research.data.shakespeare)


@pytest.fixture(scope="module")
def budgets():
    """C target -> the N of its runs, from the expanded demo plan."""
    out = defaultdict(list)
    for spec in expand(demo.sweep()).runs:
        out[dict(spec.tags)["C_target"]].append(count_params(spec.config.model).total)
    return {c: sorted(ns) for c, ns in out.items()}


def test_demo_spans_at_least_four_budgets_over_one_and_a_half_decades(budgets):
    assert len(budgets) >= 4
    assert math.log10(max(budgets) / min(budgets)) >= 1.5 - 1e-9


def test_every_budget_trains_five_distinct_sizes_over_most_of_a_decade(budgets):
    for c, ns in budgets.items():
        assert len(set(ns)) == len(ns) >= 5, c
        assert math.log10(ns[-1] / ns[0]) >= 0.8, (c, ns)


def test_sizes_sit_on_both_sides_of_the_expected_optimum(budgets):
    smallest = min(n for ns in budgets.values() for n in ns)
    for c, ns in budgets.items():
        n_opt = demo.OPTIMUM(c)
        assert ns[0] < n_opt < ns[-1], (c, n_opt, ns)
        if ns[0] > smallest:  # away from the ladder's end the sizes are centred on the optimum in log N
            assert ns[1] <= n_opt <= ns[-2], (c, n_opt, ns)
            assert abs(math.log10(math.sqrt(ns[0] * ns[-1]) / n_opt)) < 0.25, (c, n_opt, ns)


def test_demo_runs_see_at_most_four_epochs_and_share_batch_and_rules():
    runs = expand(demo.sweep()).runs
    assert max(r.config.num_tokens for r in runs) <= 4 * SHAKESPEARE_TRAIN_BYTES
    assert {r.config.batch_size for r in runs} == {8}
    for r in runs:  # one learning rate per budget (DeepSeek LLM's lr_opt = 0.3118 C^-0.125)
        assert r.config.optim.lr == pytest.approx(0.3118 * dict(r.tags)["C_target"] ** -0.125)


def test_sizes_around_spreads_targets_and_slides_at_the_ends():
    sizes = [10.0 ** (k / 4) for k in range(13)]  # 1 .. 1000, four per decade
    assert sizes_around(10 ** 1.5, sizes, 5) == [4, 5, 6, 7, 8]  # one decade centred on 10^1.5
    assert sizes_around(10 ** 1.5, sizes, 3, decades=2.0) == [2, 6, 10]
    assert sizes_around(0.01, sizes, 5) == [0, 1, 2, 3, 4]  # below the ladder: its five smallest
    assert sizes_around(1e6, sizes, 5) == [8, 9, 10, 11, 12]
    with pytest.raises(SweepError, match="only 13"):
        sizes_around(10.0, sizes, 14)


def test_isoflop_around_follows_the_optimum_guess():
    rule = ShapeRule(aspect_ratio=24, head_dim=8, min_layers=2, ff_multiplier=8 / 3)
    base = ModelConfig(max_seq_len=64)
    guess = OptimumGuess(params=3e4, flops=1e11, exponent=0.5)
    grid = isoflop_around([1e11, 1e12], range(8, 129, 8), rule, base, guess, sizes_per_budget=3, decades=0.5)
    widths = defaultdict(list)
    for point in grid:
        widths[dict(point.tags)["C_target"]].append(dict(point.overrides)["model.d_model"])
    assert len(widths[1e11]) == len(widths[1e12]) == 3
    assert min(widths[1e12]) > min(widths[1e11])  # ten times the compute: larger models
