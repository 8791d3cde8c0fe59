"""Designs that cannot identify the law are refused with the reason, never fitted to a number: one model size, one
budget, fewer runs than parameters, non-finite losses. The report says which approach was not fitted and why."""

from __future__ import annotations

import numpy as np
import pytest
from scaling_fixtures import LAW, SHAPES, isoflop_grid, law_loss, write_sweep  # on sys.path by conftest.py

from analysis import FitError, fit_chinchilla
from analysis.report import build_report


def _report(path):
    return build_report(path, n_bootstrap=0, n_subsamples=0)


def test_one_model_size_is_refused_by_every_approach(tmp_path):
    rep = _report(write_sweep(tmp_path, shapes=[SHAPES[4]], min_sizes=1,
                              budgets=np.geomspace(3e17, 1e20, 6)))
    assert rep.fit is None and "same model size N" in rep.skipped["Approach 3"]
    assert rep.isoflop is None and "usable IsoFLOP budget" in rep.skipped["Approach 2"]
    assert rep.envelope is None and "1 model size" in rep.skipped["Approach 1"]  # not a = 0
    assert "## Not fitted" in rep.markdown({})


def test_one_budget_is_refused_where_it_cannot_identify_the_law(tmp_path):
    rep = _report(write_sweep(tmp_path, budgets=(1e19,)))
    assert rep.fit is None and "one line" in rep.skipped["Approach 3"]
    assert rep.isoflop is None and "1 usable IsoFLOP budget" in rep.skipped["Approach 2"]
    assert rep.envelope is not None  # training curves still span many budgets


def test_one_tokens_per_parameter_ratio_is_refused():
    N = np.geomspace(1e7, 1e9, 8)
    D = 20 * N
    with pytest.raises(FitError, match="one line D ∝ N\\^1.00"):
        fit_chinchilla(N, D, law_loss(N, D, **LAW))


def test_fewer_runs_than_parameters_and_non_finite_losses_are_refused():
    N, D, _ = isoflop_grid([1e19, 1e20], sizes_per_budget=4).T
    loss = law_loss(N, D, **LAW)
    with pytest.raises(FitError, match="4 runs cannot determine the 5 parameters"):
        fit_chinchilla(N[:4], D[:4], loss[:4])
    loss[2] = np.inf
    with pytest.raises(FitError, match="1 of 8 losses are not finite"):
        fit_chinchilla(N, D, loss)


def test_the_report_lists_running_runs(sweep_dir):
    md = _report(sweep_dir).markdown({})
    assert "33 runs (30 complete, 1 diverged, 1 failed, 1 running)" in md
