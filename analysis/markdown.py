"""Render a `Report` as Markdown a researcher can read without opening code: what was fitted, how, and how sure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.agreement import compare_exponents
from analysis.load import fit_columns


def _g(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(v if isinstance(v, str) else _g(v) for v in row) + " |" for row in df.itertuples(False)]
    return "\n".join([head, sep, *rows])


def _ci(lo, hi) -> str:
    return f"[{_g(lo)}, {_g(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "–"


def _data(rep) -> list[str]:
    df = rep.runs
    N, D, C, L, conv, dropped, _ = fit_columns(df, rep.convention)
    status = df["status"].value_counts().to_dict() if "status" in df else {}
    out = ["## Data", "",
           f"- Source: `{rep.source}`; {len(df)} runs ({', '.join(f'{v} {k}' for k, v in status.items())}).",
           f"- Convention: {conv.describe()}.",
           f"- Fitted runs: {len(L)}" + (f" (left out: {', '.join(f'{n} {why}' for why, n in dropped.items())})."
                                         if dropped else ".")]
    if len(L):
        out.append(f"- Ranges: N {_g(N.min(), 3)} – {_g(N.max(), 3)}, D {_g(D.min(), 3)} – {_g(D.max(), 3)}, "
                   f"C {_g(C.min(), 3)} – {_g(C.max(), 3)} FLOPs, loss {_g(L.min())} – {_g(L.max())}; "
                   f"{len(np.unique(N))} model sizes.")
    if "epochs" in df and df["epochs"].notna().any():
        e = df["epochs"].astype(float)
        out.append(f"- Epochs of the training data per run: {_g(e.min(), 3)} – {_g(e.max(), 3)} "
                   "(every run's in the table below).")
        cols = [c for c in ("name", "N", "D", "C_6ND", "epochs", "eval_loss", "train_loss") if c in df]
        budget = np.round(np.log10(df["C_6ND"].astype(float)), 1) if "C_6ND" in df else 0.0
        out += ["", _table(df.assign(_budget=budget).sort_values(["_budget", "N"])[cols])]  # by budget, then N
    return out + [""]


def _approach3(rep, figs) -> list[str]:
    fit = rep.fit
    d = fit.diagnostics
    out = ["## Approach 3: parametric fit L(N, D) = E + A/N^α + B/D^β", "",
           f"Hoffmann et al. (2022), Approach 3, as published: log L̂ = LSE(a − α log N, b − β log D, e) fitted by "
           f"minimising the **{fit.fit.reduction}** of Huber losses (δ = {fit.fit.delta:g}) of log-loss residuals "
           f"with L-BFGS from {d.n_starts} initial points; the best converged fit is kept. Objective at the best fit: "
           f"{fit.objective:.6g}.", ""]
    tab = fit.table().reset_index()
    if fit.bootstrap is not None:
        b = fit.bootstrap
        out.append(f"Uncertainty: {b.n_samples} bootstrap resamples of the runs (seed {b.seed}, "
                   f"{int(b.ok.sum())} converged), each refitted from the full fit and {b.extra_starts} random grid "
                   f"starts; {b.level:.0%} percentile intervals.")
        out.append("")
        tab["CI"] = [_ci(lo, hi) for lo, hi in zip(tab["ci_low"], tab["ci_high"], strict=True)]
        tab = tab[["quantity", "estimate", "se", "CI"]]
    out += [_table(tab), "",
            "a = β/(α+β) and b = α/(α+β) are the compute-optimal exponents (N_opt ∝ C^a, D_opt ∝ C^b) and "
            f"G = (αA/(βB))^(1/(α+β)), under C = {fit.flops_coefficient:g} N D (Hoffmann et al., eq. 4).", "",
            "**Diagnostics.** " + f"{d.n_converged} of {d.n_starts} starts converged "
            f"({', '.join(f'{v} {k}' for k, v in d.status_counts.items())}); **{d.n_at_best}** reach the best "
            f"objective (relative tolerance 1e-6). The best came from {_start(d.best_start)} after "
            f"{d.best_iterations} iterations; max |gradient| there {d.grad_max:.2g}.", ""]
    out += [f"> ⚠️ {w}" for w in d.warnings] + ([""] if d.warnings else [])
    out += ["### Compute-optimal allocation", ""]
    fr = fit.frontier(rep.budgets())
    cols = {"C": fr["C"], "N_opt": fr["N_opt"], "D_opt": fr["D_opt"], "D/N": fr["D_opt"] / fr["N_opt"],
            "L_opt": fr["L_opt"]}
    t = pd.DataFrame(cols)
    if fit.bootstrap is not None:
        for q in ("N_opt", "D_opt", "L_opt"):
            t.insert(list(t.columns).index(q) + 1, f"{q} CI", [_ci(lo, hi) for lo, hi in
                                                               zip(fr[f"{q}_ci_low"], fr[f"{q}_ci_high"], strict=True)])
    out += [_table(t), ""]
    out += _figure(figs, "loss_vs_N", "Loss against N at fixed D, with the fitted law") + \
        _figure(figs, "loss_vs_C", "Loss against compute, with the fitted frontier L_opt(C)") + \
        _figure(figs, "residuals", "Residuals of the fit (dotted: the Huber threshold δ)")
    return out


def _start(start: dict) -> str:
    return "(" + ", ".join(f"{k}={v:g}" for k, v in start.items()) + ")"


def _figure(figs: dict, name: str, caption: str) -> list[str]:
    return [f"![{caption}]({figs[name]})", f"*{caption}.*", ""] if name in figs else []


def _approach2(rep, figs) -> list[str]:
    iso = rep.isoflop
    b = iso.budgets.assign(C=iso.budgets["C"]).copy()
    b["used"] = np.where(b["used"], "yes", "no")
    t = b[["C", "n_runs", "N_opt", "D_opt", "L_opt", "status", "used"]].copy()
    t["n_runs"] = t["n_runs"].astype(str)
    ci = f"{iso.level:.0%} interval over {iso.n_bootstrap} random 80% subsamples" if iso.n_bootstrap else "no interval"
    out = ["## Approach 2: IsoFLOP profiles", "",
           f"Runs are grouped into budgets {iso.grouping}. In each budget a parabola in log N "
           f"({'Huber-robust' if iso.robust else 'least squares'}) is fitted to the final loss; its vertex is "
           "N*(C), and D*(C) is read off the budget's own D(N) line (= C / 6N* under C = 6ND). Only budgets with "
           "an interior minimum count; 'edge' marks a budget whose lowest observed loss is at an end of its sizes.",
           "", _table(t), "",
           f"- N* ∝ C^a: **a = {iso.a:.4f}** (OLS s.e. {_g(iso.a_se, 2)}; {ci}: {_ci(*iso.a_ci)})",
           f"- D* ∝ C^b: **b = {iso.b:.4f}** (OLS s.e. {_g(iso.b_se, 2)}; {ci}: {_ci(*iso.b_ci)})", ""]
    out += [f"> ⚠️ {w}" for w in iso.warnings] + ([""] if iso.warnings else [])
    return out + _figure(figs, "isoflop", "IsoFLOP profiles with their fitted minima")


def _approach1(rep) -> list[str]:
    env = rep.envelope
    f = env.frontier
    ci = f"{env.level:.0%} interval over {env.n_bootstrap} random 80% subsamples" if env.n_bootstrap else "no interval"
    out = ["## Approach 1: lower envelope of training curves", "",
           f"Each run's training-loss curve is smoothed (moving average over {env.smooth} logged points) and "
           f"interpolated in log C; at {env.n_points} log-spaced budgets where at least {env.min_runs} curves are "
           f"defined ({_g(f['C'].min(), 3)} – {_g(f['C'].max(), 3)} FLOPs) the lowest curve gives N_opt and D_opt.",
           "", f"- N_opt ∝ C^a: **a = {env.a:.4f}** ({ci}: {_ci(*env.a_ci)})",
           f"- D_opt ∝ C^b: **b = {env.b:.4f}** ({ci}: {_ci(*env.b_ci)})",
           f"- {len(env.runs_on_envelope)} runs are on the envelope, of sizes N = "
           f"{', '.join(_g(n, 3) for n in sorted(set(f['N_opt'])))}.", ""]
    return out + [f"> ⚠️ {w}" for w in env.warnings] + ([""] if env.warnings else [])


def _comparison(rep, figs) -> list[str]:
    rows = []
    if rep.envelope is not None:
        e = rep.envelope
        rows.append(["1 (envelope)", e.a, _ci(*e.a_ci), e.b, _ci(*e.b_ci)])
    if rep.isoflop is not None:
        i = rep.isoflop
        rows.append(["2 (IsoFLOP)", i.a, _ci(*i.a_ci), i.b, _ci(*i.b_ci)])
    if rep.fit is not None:
        f = rep.fit
        ci_a = ci_b = "–"
        if f.bootstrap is not None:
            t = f.bootstrap.param_table()
            ci_a = _ci(t.loc["a", "ci_low"], t.loc["a", "ci_high"])
            ci_b = _ci(t.loc["b", "ci_low"], t.loc["b", "ci_high"])
        rows.append(["3 (parametric)", f.a, ci_a, f.b, ci_b])
    if not rows:
        return []
    t = pd.DataFrame(rows, columns=["approach", "a (N_opt ∝ C^a)", "interval", "b (D_opt ∝ C^b)", "interval "])
    agreement = compare_exponents(rep)
    return ["## Compute-optimal exponents across approaches", "", _table(t), "",
            "For reference, Hoffmann et al. report a = 0.50, 0.49 and 0.46 for Approaches 1, 2 and 3.", "",
            agreement.verdict(), ""] + [f"> ⚠️ {w}" for w in agreement.warnings()] + \
        ([""] if agreement.warnings() else []) + \
        _figure(figs, "optimal_allocation", "Compute-optimal model size and tokens from each approach (band: the "
                "Approach 3 bootstrap interval)")


def _backtest(rep) -> list[str]:
    bt = rep.backtest
    t = bt.table.copy()
    cols = ["run_id", "N", "D", "C", "loss", "predicted", "rel_error"]
    t["run_id"] = t["run_id"].astype(str)
    if "ci_low" in t:
        t["CI"] = [_ci(lo, hi) for lo, hi in zip(t["ci_low"], t["ci_high"], strict=True)]
        cols.append("CI")
    return ["## Backtest: extrapolating to the largest runs", "",
            f"Approach 3 fitted on {bt.n_train} runs and used to predict {bt.holdout} ({len(t)} runs). "
            f"Mean |relative error| **{bt.mean_abs_rel_error:.2%}**, max {bt.max_abs_rel_error:.2%}.", "",
            _table(t[cols]), ""]


def render(rep, figs: dict[str, str]) -> str:
    out = [f"# Scaling-law report: {rep.source}", "",
           f"Generated {rep.settings['created']}" + (f" by `{rep.settings['command']}`" if rep.settings.get('command')
                                                     else "") + f"; seed {rep.settings['seed']}.", ""]
    out += _data(rep)
    if rep.fit is not None:
        out += _approach3(rep, figs)
    if rep.isoflop is not None:
        out += _approach2(rep, figs)
    if rep.envelope is not None:
        out += _approach1(rep)
    out += _comparison(rep, figs)
    if rep.backtest is not None:
        out += _backtest(rep)
    if rep.skipped:
        out += ["## Not fitted", ""] + [f"- **{k}**: {v}" for k, v in rep.skipped.items()] + [""]
    out += ["## Files", "", "Every number above is also in `fit.json`, `isoflop.json`, `frontier.json` and "
            "`backtest.json` next to this file; each figure is there as PNG and SVG.", ""]
    return "\n".join(out)
