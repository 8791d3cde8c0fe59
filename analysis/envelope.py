"""Approach 1 of Hoffmann et al. (2022): the lower envelope of training curves over FLOPs.

Each run's training-loss curve is smoothed and interpolated in log C. At `n_points` (1500 in the paper)
log-spaced budgets, the run with the lowest loss gives N_opt(C) (its size) and D_opt(C) (the tokens it has seen at
C). Power laws N_opt = k_N C^a and D_opt = k_D C^b are fitted by least squares in log-log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.fit import FitError
from analysis.isoflop import SubsampleIntervals, _power_law, percentile_ci
from analysis.load import Convention


@dataclass
class EnvelopeFit(SubsampleIntervals):
    """The envelope (one row per budget) and the power laws fitted to it."""

    frontier: pd.DataFrame  # C, N_opt, D_opt, loss, run_id, n_available
    a: float
    k_N: float
    b: float
    k_D: float
    convention: dict
    n_points: int
    smooth: int
    min_runs: int

    @property
    def runs_on_envelope(self) -> list:
        return list(dict.fromkeys(self.frontier["run_id"]))

    def N_opt(self, C):
        return self.k_N * np.asarray(C, float) ** self.a

    def D_opt(self, C):
        return self.k_D * np.asarray(C, float) ** self.b

    def to_dict(self) -> dict:
        return {"approach": 1, "a": self.a, "a_ci": list(self.a_ci), "k_N": self.k_N, "b": self.b,
                "b_ci": list(self.b_ci), "k_D": self.k_D, "level": self.level, "n_bootstrap": self.n_bootstrap,
                "subsample_fraction": self.fraction, "seed": self.seed, "n_points": self.n_points,
                "smooth": self.smooth, "min_runs": self.min_runs,
                "convention": self.convention, "runs_on_envelope": self.runs_on_envelope, "warnings": self.warnings,
                "C_range": [float(self.frontier["C"].min()), float(self.frontier["C"].max())]}


def _prepare(curves: pd.DataFrame, convention: Convention, loss: str, smooth: int, statuses) -> list[dict]:
    """Per run: size, FLOPs per token, and the smoothed curve as (log C, loss), sorted by C."""
    runs = []
    n_col = convention.n_column
    for run_id, g in curves.groupby("run_id", sort=True):
        if statuses and "status" in g and not g["status"].isin(statuses).all():
            continue
        g = g[np.isfinite(g[loss]) & (g["tokens"] > 0)].sort_values("tokens")
        if len(g) < 2:
            continue
        N = float(g[n_col].iloc[0])
        tokens = g["tokens"].to_numpy(float)
        C = convention.flops_coefficient * N * tokens if convention.flops == "6ND" else g["C"].to_numpy(float)
        values = g[loss].to_numpy(float)
        if smooth > 1:  # centred moving average over `smooth` logged points
            values = pd.Series(values).rolling(smooth, center=True, min_periods=1).mean().to_numpy()
        runs.append({"run_id": run_id, "N": N, "logC": np.log(C), "loss": values, "per_token": C[-1] / tokens[-1]})
    return runs


def _envelope(runs: list[dict], grid: np.ndarray, min_runs: int):
    logC = np.log(grid)
    L = np.full((len(runs), len(grid)), np.inf)
    for i, r in enumerate(runs):
        inside = (logC >= r["logC"][0]) & (logC <= r["logC"][-1])
        L[i, inside] = np.interp(logC[inside], r["logC"], r["loss"])
    available = np.isfinite(L).sum(axis=0)
    best = np.argmin(L, axis=0)
    keep = available >= min_runs
    return best[keep], grid[keep], L[best[keep], np.flatnonzero(keep)], available[keep]


def _fit(runs, grid, min_runs, convention):
    best, C, loss, available = _envelope(runs, grid, min_runs)
    N = np.array([runs[i]["N"] for i in best])
    if len(np.unique(N)) < 2:
        raise FitError(f"the envelope holds {len(np.unique(N))} model size(s) where at least {min_runs} curves "
                       "overlap: N_opt(C) needs 2 or more sizes on it. Fix: train more sizes over overlapping budgets")
    tokens = C / np.array([runs[i]["per_token"] for i in best])  # C is linear in tokens along a run
    frontier = pd.DataFrame({"C": C, "N_opt": N, "D_opt": tokens, "loss": loss,
                             "run_id": [runs[i]["run_id"] for i in best], "n_available": available})
    a, k_N, _ = _power_law(C, N)
    b, k_D, _ = _power_law(C, tokens)
    return frontier, a, k_N, b, k_D


def fit_envelope(curves: pd.DataFrame, *, n_points: int = 1500, smooth: int = 5, min_runs: int = 2,
                 loss: str = "loss", n_bootstrap: int = 0, fraction: float = 0.8, seed: int = 0, level: float = 0.8,
                 statuses=("complete",), convention: Convention | None = None) -> EnvelopeFit:
    """Approach 1 on curves from `analysis.load_curves`.

    smooth: moving-average window over logged points before interpolation. min_runs: only budgets where at least
    this many curves are defined count (below that the envelope is not a choice). loss: "loss" (train) or
    "eval_loss". n_bootstrap, fraction, level: CIs on a and b as in Hoffmann et al.'s Table 2 (refits on random
    `fraction` subsets of the runs, seeded; level 0.8 gives their 10th and 90th percentiles).
    """
    convention = convention or curves.attrs.get("convention") or Convention()
    runs = _prepare(curves, convention, loss, smooth, statuses)
    if len(runs) < 2:
        raise FitError(f"{len(runs)} usable training curve(s): Approach 1 needs curves from 2 or more runs")
    lo = min(r["logC"][0] for r in runs)
    hi = max(r["logC"][-1] for r in runs)
    grid = np.exp(np.linspace(lo, hi, n_points))
    frontier, a, k_N, b, k_D = _fit(runs, grid, min_runs, convention)
    out = EnvelopeFit(frontier, a, k_N, b, k_D, convention.to_dict(), n_points, smooth, min_runs, level=level,
                      n_bootstrap=n_bootstrap, fraction=fraction, seed=seed)
    sizes = sorted({r["N"] for r in runs})
    on = sorted(set(frontier["N_opt"]))
    if on and on[-1] == sizes[-1]:
        out.warnings.append("the largest model is on the envelope at the top budgets: N_opt there is capped by the "
                            "sizes trained, which flattens the fitted exponent")
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        size = max(2, int(round(fraction * len(runs))))
        a_s, b_s = [], []
        for _ in range(n_bootstrap):
            sample = [runs[i] for i in sorted(rng.choice(len(runs), size, replace=False))]
            try:
                _, a_i, _, b_i, _ = _fit(sample, grid, min_runs, convention)
            except FitError:
                continue
            a_s.append(a_i)
            b_s.append(b_i)
        out.a_ci, out.b_ci = percentile_ci(a_s, level), percentile_ci(b_s, level)
    return out
