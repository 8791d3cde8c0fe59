"""Loading: every accepted source gives the same one-row-per-run table, with the conventions made explicit."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import analysis

CONTRACT = ["run_id", "name", "status", "N", "N_nonembed", "D", "C", "C_6ND", "loss", "eval_loss", "train_loss",
            "seed"]


def test_sweep_dir(sweep_dir):
    df = analysis.load(sweep_dir)
    assert list(df.columns[: len(CONTRACT)]) == CONTRACT
    assert len(df) == 33 and (df["status"] == "complete").sum() == 30
    running = df[df["status"] == "running"].iloc[0]  # listed, with what was planned and no loss
    assert running["name"] == "still-running" and np.isnan(running["loss"]) and running["N"] > 0
    assert (df["status"] == "diverged").sum() == 1 and (df["status"] == "failed").sum() == 1
    failed = df[df["status"] == "failed"].iloc[0]
    assert failed["name"] == "out-of-memory" and np.isnan(failed["loss"]) and failed["N"] > 0
    assert failed["error"] == "RESOURCE_EXHAUSTED"
    assert {"config.model.d_model", "config.model.n_layers", "config.optim.lr", "config.seed"} <= set(df.columns)
    s = json.loads((next((sweep_dir / "runs").glob("iso0-*")) / "summary.json").read_text())
    row = df.set_index("run_id").loc[s["run_id"]]
    assert row["N"] == s["params"] and row["N_nonembed"] == s["params_non_embedding"] and row["D"] == s["tokens"]
    assert row["C"] == s["flops"] and row["C_6ND"] == pytest.approx(6 * s["params"] * s["tokens"])
    assert row["loss"] == s["final_eval_loss"] and row["train_loss"] == s["final_train_loss"]
    assert row["name"] == "iso0" and row["config.model.d_model"] == s["config"]["model"]["d_model"]
    assert row["tags.C_target"] == 1e18  # point.json's tags
    assert df.attrs["convention"] == analysis.Convention()


def test_conventions(sweep_dir):
    ne = analysis.load(sweep_dir, analysis.Convention(params="non_embedding", loss="train"))
    np.testing.assert_allclose(ne["C_6ND"], 6 * ne["N_nonembed"] * ne["D"])
    np.testing.assert_array_equal(ne["loss"], ne["train_loss"])
    with pytest.raises(ValueError, match="Convention.flops"):
        analysis.Convention(flops="5ND")
    assert "non-embedding" in analysis.Convention(params="non_embedding").describe()


def test_eval_loss_falls_back_to_train_loss_per_run():
    df = analysis.load(pd.DataFrame({"params": [1e8, 2e8], "tokens": [1e9, 2e9], "final_eval_loss": [3.0, None],
                                     "final_train_loss": [3.1, 2.9]}))
    assert df["loss"].tolist() == [3.0, 2.9]
    assert df["N"].tolist() == [1e8, 2e8] and df["D"].tolist() == [1e9, 2e9]


def test_results_jsonl_run_dir_and_csv_agree(sweep_dir, tmp_path):
    full = analysis.load(sweep_dir).set_index("run_id").sort_index()
    full = full[full["status"] != "running"]  # results.jsonl holds finished runs only
    from_jsonl = analysis.load(sweep_dir / "results.jsonl").set_index("run_id").sort_index()
    cols = ["N", "N_nonembed", "D", "C", "C_6ND", "loss", "status"]
    pd.testing.assert_frame_equal(full[cols], from_jsonl[cols])
    # A sweep dir whose runs/ is gone falls back to results.jsonl.
    only = tmp_path / "only_results"
    only.mkdir()
    shutil.copy(sweep_dir / "results.jsonl", only / "results.jsonl")
    assert len(analysis.load(only)) == 32
    run = next((sweep_dir / "runs").glob("iso2-*"))
    one = analysis.load(run)
    assert len(one) == 1 and one["run_id"].iloc[0] == run.name.split("-")[-1]
    csv = tmp_path / "runs.csv"
    full.reset_index()[["run_id", "N", "D", "C", "loss", "status"]].to_csv(csv, index=False)
    from_csv = analysis.load(csv).set_index("run_id").sort_index()
    np.testing.assert_allclose(from_csv["loss"], full["loss"])
    np.testing.assert_allclose(from_csv["C_6ND"], full["C_6ND"])


def test_missing_sources_fail_with_a_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fix"):
        analysis.load(tmp_path)
    with pytest.raises(ValueError, match="'N'"):
        analysis.load(pd.DataFrame({"D": [1.0], "loss": [2.0]}))


def test_curves(sweep_dir):
    curves = analysis.load_curves(sweep_dir)
    n_lines = sum(len((r / "metrics.jsonl").read_text().splitlines()) for r in (sweep_dir / "runs").iterdir()
                  if (r / "summary.json").exists())
    assert len(curves) == n_lines
    assert {"run_id", "name", "step", "tokens", "loss", "eval_loss", "N", "C", "C_6ND", "status"} <= set(curves.columns)
    np.testing.assert_allclose(curves["C"], curves["flops_per_token"] * curves["tokens"])
    np.testing.assert_allclose(curves["C_6ND"], 6 * curves["N"] * curves["tokens"])
    assert curves["eval_loss"].notna().sum() > 0 and curves["eval_loss"].isna().sum() > 0
    last = curves.groupby("run_id").tail(1)
    assert (last["tokens"] == last["D_final"]).all()
