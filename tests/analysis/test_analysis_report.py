"""The report and the CLI, end to end on a hand-made sweep; and the example notebook runs."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import analysis
from analysis.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ["loss_vs_N", "loss_vs_C", "isoflop", "optimal_allocation", "residuals"]


@pytest.fixture(scope="module")
def report_dir(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(sweep_dir), "--out", str(out), "--bootstrap", "200", "--subsamples", "20"]) == 0
    return out


def test_report_writes_every_artefact(report_dir):
    for stem in ("fit", "isoflop", "frontier", "backtest"):
        doc = json.loads((report_dir / f"{stem}.json").read_text())
        assert doc["settings"]["convention"]["flops"] == "6ND"
    for name in FIGURES:
        assert (report_dir / f"{name}.png").stat().st_size > 10_000
        assert (report_dir / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    md = (report_dir / "report.md").read_text()
    for heading in ("## Data", "## Approach 3", "### Compute-optimal allocation", "## Approach 2", "## Approach 1",
                    "## Compute-optimal exponents across approaches", "## Backtest"):
        assert heading in md
    for name in FIGURES:
        assert f"]({name}.png)" in md
    fit = json.loads((report_dir / "fit.json").read_text())
    assert fit["n_runs"] == 30 and fit["bootstrap"]["n_samples"] == 200
    assert f"{fit['allocation']['a']:.4g}" in md
    assert "Not fitted" not in md


def test_subcommands_print_and_save(sweep_dir, tmp_path, capsys):
    for cmd in ("fit", "isoflop", "frontier", "backtest"):
        assert main([cmd, str(sweep_dir), "--out", str(tmp_path), "--bootstrap", "50", "--subsamples", "10"]) == 0
        out = capsys.readouterr().out
        name = "frontier" if cmd == "frontier" else cmd
        assert f"wrote {tmp_path / (name + '.json')}" in out
    iso = json.loads((tmp_path / "isoflop.json").read_text())
    assert len(iso["budgets"]) == 5
    frontier = json.loads((tmp_path / "frontier.json").read_text())
    assert {"approach1", "approach3"} <= set(frontier)


def test_default_out_is_under_the_sweep(sweep_dir):
    """`python -m analysis report OUT` writes OUT/analysis/report.md and says where."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "analysis", "isoflop", str(sweep_dir), "--subsamples", "0"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (sweep_dir / "analysis" / "isoflop.json").exists()
    assert str(sweep_dir / "analysis" / "isoflop.json") in r.stdout


def test_errors_say_how_to_fix(tmp_path, capsys):
    assert main(["fit", str(tmp_path)]) == 2
    assert "Fix" in capsys.readouterr().err


def test_notebook_runs_on_a_sweep(sweep_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALELAB_SWEEP", str(sweep_dir))
    monkeypatch.setenv("SCALELAB_BOOTSTRAP", "100")
    monkeypatch.setenv("SCALELAB_REPORT_DIR", str(tmp_path))
    ns = runpy.run_path(str(ROOT / "analysis" / "examples" / "scaling_laws.py"), run_name="__main__")
    assert isinstance(ns["fit"], analysis.ChinchillaFit) and ns["iso"] is not None and ns["env"] is not None
    assert (tmp_path / "report.md").exists()
