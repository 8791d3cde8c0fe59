"""One ablation end to end as a micro-run through the CLI (run, rerun, report), checked against the run files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.__main__ import main
from experiments.extrapolation import EXTRAPOLATION, ensure_extrapolation

pytestmark = pytest.mark.slow

MICRO = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.d_ff=32", "model.max_seq_len=64",
         "data.seq_len=16", "data.val_fraction=0.1", "train.steps=6", "train.batch_size=8", "train.log_every=2",
         "train.eval_every=3", "train.eval_batches=2", "optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def micro(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("lr_schedule")
    argv = ["run", "lr_schedule", "--out", str(out), "--seeds", "3", "--no-report", "--set",
            f"data.source={small_corpus}"]
    for o in MICRO:
        argv += ["--set", o]
    assert main(argv) == 0
    return out, argv


def _summaries(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/summary.json"))]


def test_runs_every_variant_and_seed_and_skips_them_on_rerun(micro, capsys):
    out, argv = micro
    done = _summaries(out)
    assert sorted((s["config"]["optim"]["schedule"], s["seed"]) for s in done) == \
        sorted((v, k) for v in ("cosine", "wsd", "constant") for k in range(3))
    assert all(s["status"] == "complete" and s["steps"] == 6 for s in done)
    capsys.readouterr()
    assert main(argv) == 0
    assert "9 already finished, 0 to run" in capsys.readouterr().out
    starts = [sum('"start"' in line for line in (p / "attempts.jsonl").read_text().splitlines())
              for p in sorted((out / "runs").iterdir())]
    assert starts == [1] * 9


def test_report_matches_the_run_files(micro):
    out, _ = micro
    assert main(["report", str(out)]) == 0
    table = json.loads((out / "table.json").read_text())
    losses = {}
    for s in _summaries(out):
        losses.setdefault(s["config"]["optim"]["schedule"], []).append(s["final_eval_loss"])
    t_975_2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # closed-form 2-dof quantile
    rows = {r["variant"]: r for r in table["rows"]}
    assert list(rows) == ["cosine", "wsd", "constant"] and rows["cosine"]["verdict"] == "baseline"
    for v, x in losses.items():
        x = np.asarray(x)
        assert rows[v]["n"] == 3 and rows[v]["statuses"] == {"complete": 3}
        assert rows[v]["eval_loss_mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert rows[v]["eval_loss_ci95"] == pytest.approx(t_975_2 * x.std(ddof=1) / math.sqrt(3), rel=1e-9)
    for v in ("wsd", "constant"):
        a, b = np.asarray(losses[v]), np.asarray(losses["cosine"])
        se = math.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 3)
        assert rows[v]["diff_vs_baseline"] == pytest.approx(a.mean() - b.mean(), rel=1e-9)
        assert rows[v]["welch_t"] == pytest.approx((a.mean() - b.mean()) / se, rel=1e-9)
    s = _summaries(out)[0]
    assert rows["cosine"]["flops_per_run"] == pytest.approx(s["flops"])
    text = (out / "report.md").read_text()
    assert "| **cosine** |" in text and "| wsd |" in text and "Welch" in text
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "table.csv").exists()


def test_length_evaluation_at_1x_reproduces_the_training_eval(micro):
    out, _ = micro
    run_dir = next(p for p in sorted((out / "runs").iterdir()) if "cosine-s0" in p.name)
    summary = json.loads((run_dir / "summary.json").read_text())
    record = ensure_extrapolation(run_dir, (1, 2))  # 1x: the windows the training eval used
    assert record["lengths"] == [16, 32]
    assert record["eval_loss"]["1"] == pytest.approx(summary["final_eval_loss"], rel=1e-5)
    assert math.isfinite(record["eval_loss"]["2"])
    assert json.loads((run_dir / EXTRAPOLATION).read_text()) == record
    assert ensure_extrapolation(run_dir, (1, 2)) == record  # stored: read back, not recomputed


def test_cli_errors_name_the_fix(micro, capsys):
    out, _ = micro
    assert main(["run", "norm_typ", "--out", str(out)]) == 2
    assert "did you mean 'norm_type'" in capsys.readouterr().err
    assert main(["run", "biases", "--out", str(out), "--set", "model.d_model=16", "--set", "model.n_heads=2"]) == 2
    assert "holds experiment lr_schedule" in capsys.readouterr().err
