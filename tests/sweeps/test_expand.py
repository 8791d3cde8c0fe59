"""Grid grammar and expansion: products, zips, ladders, budgets, IsoFLOP, rules; stable ids; early errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from research.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from research.model.flops import count_params, train_flops_per_token
from sweeps import (
    BatchPowerLaw,
    LrInverseWidth,
    ShapeRule,
    Sweep,
    SweepError,
    WarmupFraction,
    axis,
    expand,
    isoflop,
    points,
    preset_ladder,
    product,
    rule,
    token_budgets,
    tokens_per_param,
    width_ladder,
    zipped,
)

from .helpers import ROOT, TINY, env, run_cli, tiny


def _base(**train) -> RunConfig:
    return RunConfig(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32),
                     data=DataConfig(seq_len=32), optim=OptimConfig(lr=1e-3),
                     train=TrainConfig(**({"steps": 10, "batch_size": 8} | train)))


def test_product_and_zip_cover_the_grid():
    a, b = axis("optim.lr", [1e-3, 3e-3]), axis("model.n_layers", [1, 2, 3])
    runs = expand(Sweep("s", _base(), a * b, seeds=(0, 1))).runs
    assert len(runs) == 2 * 3 * 2
    combos = {(r.config.optim.lr, r.config.model.n_layers, r.config.seed) for r in runs}
    assert len(combos) == 12
    z = zipped(axis("model.d_model", [32, 64]), axis("model.n_heads", [2, 4]))
    runs = expand(Sweep("s", _base(), z)).runs
    assert [(r.config.model.d_model, r.config.model.n_heads) for r in runs] == [(32, 2), (64, 4)]
    assert len(product(z, a)) == 4 and len(z + z) == 4


def test_ids_are_config_hashes_and_stable():
    s = Sweep("s", _base(), axis("optim.lr", [1e-3, 3e-3]) * token_budgets([2560, 5120]), seeds=(0, 7))
    first, second = expand(s).runs, expand(s).runs
    assert [r.run_id for r in first] == [r.run_id for r in second]
    assert all(r.run_id == r.config.run_id() for r in first)
    assert len({r.dirname for r in first}) == len(first)
    swapped = Sweep("s", _base(), token_budgets([2560, 5120]) * axis("optim.lr", [1e-3, 3e-3]), seeds=(0, 7))
    assert {r.run_id for r in expand(swapped).runs} == {r.run_id for r in first}  # order does not matter
    r = first[0]
    assert r.name == "n41k-d2.6k-lr0.001-s0" and r.dirname == f"{r.name}-{r.run_id}"
    assert str(r.workdir("OUT")) == f"OUT/runs/{r.name}-{r.run_id}"


def test_ids_same_in_a_fresh_process(tmp_path):
    """The plan (names and ids) printed by two processes with different hash seeds is identical."""
    outs = []
    for seed in ("1", "2"):
        e = env() | {"PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-m", "sweeps", "plan", str(TINY)], cwd=ROOT, env=e,
                             capture_output=True, text=True, check=True)
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    for r in expand(tiny("shakespeare")).runs:
        assert r.dirname in outs[0]


def test_unknown_field_is_an_error_with_a_suggestion():
    with pytest.raises(SweepError, match="did you mean 'model.d_model'"):
        axis("model.d_modle", [32])
    with pytest.raises(SweepError, match="unknown config field 'modle'"):
        points({"modle": 1})


def test_invalid_point_and_conflicts_fail_before_training():
    with pytest.raises(SweepError, match="n_heads"):  # 3 heads do not divide 32
        expand(Sweep("s", _base(), axis("model.n_heads", [2, 3])))
    with pytest.raises(SweepError, match="two axes set 'optim.lr'"):
        axis("optim.lr", [1e-3]) * axis("optim.lr", [3e-3])
    with pytest.raises(SweepError, match="different lengths"):
        zipped(axis("optim.lr", [1e-3, 2e-3]), axis("seed", [1]))
    with pytest.raises(SweepError, match="same config"):
        expand(Sweep("s", _base(), axis("optim.lr", [1e-3, 1e-3])))
    with pytest.raises(SweepError, match="two training-length budgets"):
        token_budgets([1000]) * tokens_per_param([20])
    with pytest.raises(SweepError, match="unknown preset"):
        preset_ladder(["ladder-3m"])


def test_width_ladder_follows_its_rule():
    rule_ = ShapeRule(aspect_ratio=16, head_dim=16, min_layers=2, ff_multiplier=4)
    runs = expand(Sweep("s", _base(), width_ladder([32, 64, 128], rule_))).runs
    shapes = [(r.config.model.d_model, r.config.model.n_layers, r.config.model.n_heads, r.config.model.d_ff)
              for r in runs]
    assert shapes == [(32, 2, 2, 128), (64, 4, 4, 256), (128, 8, 8, 512)]
    with pytest.raises(SweepError, match="multiple of the rule's head_dim"):
        width_ladder([40], rule_)


def test_preset_ladder_replaces_the_model():
    runs = expand(Sweep("s", _base(), preset_ladder(["ladder-50k", "ladder-100k"]))).runs
    assert [r.tags["model"] for r in runs] == ["ladder-50k", "ladder-100k"]
    assert runs[0].config.model.d_model == 40 and runs[1].config.model.d_model == 56


def test_token_budgets_round_to_whole_steps():
    runs = expand(Sweep("s", _base(), token_budgets([10_000, 100_000]))).runs
    for r, target in zip(runs, [10_000, 100_000], strict=True):
        assert r.config.train.steps == round(target / 256) and r.tokens == r.config.train.steps * 256
    ratio = expand(Sweep("s", _base(), width_ladder([32, 64], ShapeRule(head_dim=16)) * tokens_per_param([5]))).runs
    for r in ratio:
        assert abs(r.tokens / count_params(r.config.model).total - 5) / 5 < 0.05


@pytest.mark.parametrize("convention", ["exact", "6n"])
def test_isoflop_meets_each_budget_within_tolerance(convention):
    models = width_ladder([32, 64, 96], ShapeRule(aspect_ratio=24, head_dim=16, min_layers=2))
    budgets = [2e10, 6e10]
    exp = expand(Sweep("s", _base(), isoflop(budgets, models, flops=convention, tolerance=0.02)))
    assert len(exp.runs) == 6 and not exp.dropped
    for r in exp.runs:
        c = r.flops if convention == "exact" else 6.0 * count_params(r.config.model).total * r.tokens
        target = r.tags["C_target"]
        assert abs(c - target) / target <= 0.02
        assert r.tokens == r.config.num_steps * r.config.tokens_per_step  # whole steps
        per_token = train_flops_per_token(r.config.model, 32)
        assert r.flops == per_token * r.tokens


def test_isoflop_drops_points_outside_tolerance_and_rejects_unmeetable_budgets():
    models = width_ladder([32, 256], ShapeRule(head_dim=16, min_layers=2))
    exp = expand(Sweep("s", _base(batch_size=64), isoflop([2e10], models, tolerance=0.05)))
    assert len(exp.runs) == 1 and len(exp.dropped) == 1  # the wide model gets 1-2 steps: far from C
    assert "tolerance" in exp.dropped[0].reason
    with pytest.raises(SweepError, match="no point meets the budget"):
        expand(Sweep("s", _base(batch_size=64), isoflop([1e8], models, tolerance=0.05)))


def test_rules_follow_size_and_settle_with_the_budget():
    models = width_ladder([32, 64], ShapeRule(head_dim=16, min_layers=2))
    rules = (LrInverseWidth(base_lr=4e-3, base_width=32),
             BatchPowerLaw(base_batch=8, base_flops=1e10, exponent=0.5, multiple_of=8),
             WarmupFraction(0.1, min_steps=2))
    runs = expand(Sweep("s", _base(), isoflop([1e10, 4e10], models, flops="6n", tolerance=0.1),
                        rules=rules)).runs
    for r in runs:
        c = r.config
        assert c.optim.lr == pytest.approx(4e-3 * 32 / c.model.d_model)
        assert c.batch_size == 8 * round((r.tags["C_target"] / 1e10) ** 0.5)  # 8 then 16
        assert c.optim.warmup_steps == max(round(0.1 * c.num_steps), 2)  # of the final step count
    custom = rule("depth_lr", lambda cfg, s: {"optim.lr": 1e-2 / s.n_layers})
    runs = expand(Sweep("s", _base(), axis("model.n_layers", [1, 4]), rules=(custom,))).runs
    assert [r.config.optim.lr for r in runs] == [1e-2, 2.5e-3]


def test_rules_that_fight_are_an_error():
    flip = rule("flip", lambda cfg, s: {"train.batch_size": 16 if cfg.batch_size == 8 else 8})
    with pytest.raises(SweepError, match="do not settle"):
        expand(Sweep("s", _base(), token_budgets([10_000]), rules=(flip,)))


def test_sweep_validation():
    with pytest.raises(SweepError, match="sweep name"):
        Sweep("bad name", _base())
    with pytest.raises(SweepError, match="seeds"):
        Sweep("s", _base(), seeds=(1, 1))
    assert dataclasses.replace(Sweep("s", _base()), seeds=(3,)).seeds == (3,)


def test_plan_cli_prints_the_table_and_errors_cleanly(tmp_path):
    res = run_cli("plan", "demo")
    assert res.returncode == 0, res.stderr
    header = res.stdout.splitlines()[1]
    for column in ("N", "D", "C", "D/N", "est"):
        assert f" {column} " in f" {header} "
    assert "20 runs" in res.stdout and "decades" in res.stdout
    bad = tmp_path / "bad.py"
    bad.write_text("from sweeps import Sweep, axis\nfrom research.config import RunConfig\n"
                   "def sweep():\n    return Sweep('bad', RunConfig(), axis('optim.lrr', [1.0]))\n")
    res = run_cli("plan", str(bad))
    assert res.returncode == 2 and "did you mean 'optim.lr'" in res.stderr
    res = run_cli("plan", "no-such-sweep")
    assert res.returncode == 2 and "demo" in res.stderr
