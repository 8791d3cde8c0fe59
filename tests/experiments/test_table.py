"""Rows of a report from hand-made run results: baseline per cell, diverged runs counted, paired length gaps."""

from __future__ import annotations

import math

import pytest

from experiments.report import markdown_table
from experiments.table import RunResult, build_rows

EXPERIMENT = {"baseline": "pre", "variants": [{"variant": "pre"}, {"variant": "post"}], "eval_lengths": [1, 2],
              "axes": [{"key": "optim.lr", "tag": "lr", "values": [0.1, 0.4]}], "kv_cache": False, "seq_len": 8}


def _run(variant, lr, seed, loss, status="complete", lengths=None):
    return RunResult(dirname=f"{variant}-{lr}-{seed}", cell=(lr,), variant=variant, seed=seed, status=status,
                     eval_loss=loss, params=100, flops=1e9, wall_s=2.0, kv_bytes_per_token=0,
                     lengths=lengths or {})


def test_rows_compare_within_each_cell_and_count_diverged_runs():
    results = [_run("pre", 0.1, s, x, lengths={"1": x, "2": x + g}) for s, x, g in
               [(0, 2.0, 0.1), (1, 2.2, 0.3), (2, 2.4, 0.2)]]
    results += [_run("post", 0.1, s, x) for s, x in [(0, 2.5), (1, 2.9), (2, 3.3)]]
    results += [_run("pre", 0.4, s, 2.0 + s / 10) for s in range(3)]
    results += [_run("post", 0.4, 0, 3.0)] + [_run("post", 0.4, s, None, "diverged") for s in (1, 2)]
    rows = build_rows(EXPERIMENT, results)
    assert [(r.variant, r.cell) for r in rows] == [("pre", (0.1,)), ("post", (0.1,)), ("pre", (0.4,)), ("post", (0.4,))]
    low_post, high_post = rows[1], rows[3]
    assert low_post.test.diff == pytest.approx(0.7) and low_post.test.dof == pytest.approx(50 / 17)
    assert high_post.loss.n == 1 and high_post.statuses == {"complete": 1, "diverged": 2}
    assert math.isnan(high_post.test.p) and high_post.verdict == "n/a"
    gap = rows[0].gaps[2]  # paired: 0.1, 0.3, 0.2 -> mean 0.2, s 0.1
    assert gap.mean == pytest.approx(0.2) and gap.std == pytest.approx(0.1)
    table = markdown_table(EXPERIMENT, rows)
    assert "| post | 0.4 | 100 | 3.0000 | 1/3 (2 diverged) |" in table
    assert "+0.2000 ± 0.2484" in table  # 4.302653 x 0.1 / sqrt(3)


def test_a_variant_whose_every_seed_diverged_says_so():
    results = [_run("pre", 0.4, s, 2.0 + s / 10) for s in range(3)]
    results += [_run("post", 0.4, s, None, "diverged") for s in range(3)]
    rows = build_rows(EXPERIMENT | {"eval_lengths": []}, results)
    assert rows[1].verdict == "diverged" and rows[1].loss.n == 0
