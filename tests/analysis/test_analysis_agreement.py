"""The report's verdict on whether Approaches 1-3 agree on a, and the design causes it names when they don't."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from analysis.agreement import compare_exponents
from analysis.load import Convention


def _report(a1=None, a2=None, a3=None, statuses=("ok",) * 4, sizes=5, budgets=(3e10, 1e11, 3e11, 1e12),
            n_range=(3.8e3, 2e5)):
    """A stand-in for analysis.report.Report with just what the verdict reads."""
    runs = pd.DataFrame({"N": np.geomspace(*n_range, 8), "D": 1e6, "eval_loss": 2.0, "status": "complete"})
    isoflop = None
    if a2 is not None:
        isoflop = SimpleNamespace(a_ci=a2, level=0.8, budgets=pd.DataFrame(
            {"C": budgets, "n_runs": sizes, "status": list(statuses)}))
    fit = None
    if a3 is not None:
        table = pd.DataFrame({"ci_low": [a3[0]], "ci_high": [a3[1]]}, index=["a"])
        fit = SimpleNamespace(bootstrap=SimpleNamespace(param_table=lambda: table, level=0.95))
    envelope = None if a1 is None else SimpleNamespace(a_ci=a1, level=0.8)
    return SimpleNamespace(runs=runs, convention=Convention(), isoflop=isoflop, fit=fit, envelope=envelope)


def test_overlapping_intervals_agree_and_a_narrow_design_raises_nothing():
    verdict = compare_exponents(_report(a2=(0.45, 0.55), a3=(0.40, 0.52)))
    assert verdict.agree is True
    assert verdict.overlaps == {("Approach 2", "Approach 3"): True}
    assert verdict.verdict().startswith("**The approaches agree**")
    assert verdict.warnings() == []


def test_disjoint_intervals_disagree_and_name_each_cause():
    rep = _report(a1=(0.30, 0.40), a2=(0.55, 0.80), a3=(0.35, 0.90), statuses=("ok", "no_minimum", "edge", "ok"),
                  sizes=3, budgets=(1e11, 2e11, 3e11, 4e11), n_range=(1e4, 5e4))
    verdict = compare_exponents(rep)
    assert verdict.agree is False
    assert verdict.overlaps[("Approach 1", "Approach 2")] is False
    assert verdict.overlaps[("Approach 1", "Approach 3")] is True
    text = " ".join(verdict.warnings())
    assert "2 of 4 IsoFLOP budgets have no interior minimum" in text
    assert "fewer than 5 sizes" in text
    assert "0.60 decades of compute" in text  # log10(4e11 / 1e11)
    assert "0.70 decades" in text  # the model sizes: log10(5e4 / 1e4)
    assert "Approach 3's interval on a is 0.55 wide" in text and "Approach 2's interval on a is 0.25 wide" in text
    assert all(w.startswith("Likely cause") for w in verdict.warnings())


def test_one_interval_cannot_be_judged():
    verdict = compare_exponents(_report(a2=(0.5, 0.6)))
    assert verdict.agree is None and verdict.warnings() == []
    assert "cannot be judged" in verdict.verdict()


def test_data_section_lists_every_runs_epochs_by_budget():
    from analysis.markdown import _data

    runs = pd.DataFrame({"name": ["b", "a", "c"], "N": [2e4, 1e4, 1e4], "D": [5e5, 1e6, 1e7], "eval_loss": 2.0,
                         "train_loss": 2.1, "status": "complete", "epochs": [0.1, 0.2, 2.0]})
    runs["C_6ND"] = 6 * runs["N"] * runs["D"]
    text = "\n".join(_data(SimpleNamespace(runs=runs, source="x", convention=Convention())))
    assert "Epochs of the training data per run: 0.1 – 2" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "name" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| a", "| b", "| c"]  # budget 6e10 (by N), then 6e11
