"""Seeded bootstrap over runs for Approach 3: standard errors and percentile CIs, propagated to the allocation.

Each resample draws the runs with replacement (multinomial counts become Huber weights) and is refitted by L-BFGS
from the full-data fit plus a few random grid starts, keeping the best converged; all resamples run as one batch.
Every derived quantity (a, G, N_opt(C), D_opt(C), L_opt(C), predicted losses) is computed per resample, so its CI
is the percentile interval of that quantity, not a propagated approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import optim
from analysis.fit import run_starts
from analysis.forms import PARAMS, allocation, chinchilla_loss, d_opt, get_form, n_opt

# A resample starts next to its optimum (the full-data fit), where scipy's absolute stopping rule (while |f| < 1)
# would stop at once; its stop is therefore relative: f changes by under 1e-10 of |f| or max|g| <= 1e-5.
RESAMPLE_OPTS = optim.LBFGSOptions(ftol=1e-10, ftol_floor=0.0)


@dataclass
class Bootstrap:
    """Per-resample estimates (`samples`) and the frontier and predictions they imply."""

    n_samples: int
    seed: int
    level: float
    estimate: dict  # the full-data fit, for reference
    samples: pd.DataFrame  # one row per resample: E, A, B, alpha, beta, a, b, G, objective, converged
    C: np.ndarray
    N_opt: np.ndarray  # [n_samples, len(C)]
    D_opt: np.ndarray
    L_opt: np.ndarray
    points: pd.DataFrame | None = None  # (N, D) where losses were predicted
    predicted: np.ndarray | None = None  # [n_samples, len(points)]
    extra_starts: int = 4
    flops_coefficient: float = 6.0

    @property
    def ok(self) -> np.ndarray:
        return self.samples["converged"].to_numpy(bool)

    def _interval(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = values[self.ok]
        q = 100 * (1 - self.level) / 2
        return v.std(axis=0, ddof=1), np.percentile(v, q, axis=0), np.percentile(v, 100 - q, axis=0)

    def param_table(self) -> pd.DataFrame:
        names = list(PARAMS) + ["a", "b", "G"]
        se, lo, hi = self._interval(self.samples[names].to_numpy(float))
        return pd.DataFrame({"estimate": [self.estimate[k] for k in names], "se": se, "ci_low": lo, "ci_high": hi},
                            index=pd.Index(names, name="quantity"))

    def frontier_table(self, C=None) -> pd.DataFrame:
        """N_opt, D_opt, L_opt at budgets C with SEs and CIs (computed per resample at exactly these C)."""
        C = self.C if C is None else np.atleast_1d(np.asarray(C, float))
        p = self.samples[list(PARAMS)].to_numpy(float)
        per_sample = [p[:, j:j + 1] for j in range(5)]
        est = [self.estimate[k] for k in PARAMS]
        cols = {"C": C}
        for params, row in ((per_sample, None), (est, "estimate")):
            N = n_opt(C[None, :] if row is None else C, *params, flops_coefficient=self.flops_coefficient)
            D = d_opt(C[None, :] if row is None else C, *params, flops_coefficient=self.flops_coefficient)
            values = {"N_opt": N, "D_opt": D, "L_opt": chinchilla_loss(N, D, *params)}
            for name, v in values.items():
                if row is None:
                    cols[name + "_se"], cols[name + "_ci_low"], cols[name + "_ci_high"] = self._interval(v)
                else:
                    cols[name] = v
        order = ["C"] + [f"{q}{s}" for q in ("N_opt", "D_opt", "L_opt") for s in ("", "_se", "_ci_low", "_ci_high")]
        return pd.DataFrame(cols)[order]

    def prediction_table(self) -> pd.DataFrame | None:
        if self.points is None:
            return None
        se, lo, hi = self._interval(self.predicted)
        e = [self.estimate[k] for k in PARAMS]
        pred = chinchilla_loss(self.points["N"].to_numpy(float), self.points["D"].to_numpy(float), *e)
        return self.points.assign(predicted=pred, se=se, ci_low=lo, ci_high=hi)

    def to_dict(self) -> dict:
        return {"n_samples": self.n_samples, "seed": self.seed, "level": self.level,
                "n_converged": int(self.ok.sum()), "extra_starts": self.extra_starts,
                "params": self.param_table().reset_index().to_dict(orient="records"),
                "frontier": self.frontier_table().to_dict(orient="records")}


def default_budgets(C_data: np.ndarray, decades_beyond: int = 3) -> np.ndarray:
    """Powers of ten from the smallest budget in the data to `decades_beyond` decades past the largest."""
    lo, hi = np.floor(np.log10(np.min(C_data))), np.ceil(np.log10(np.max(C_data))) + decades_beyond
    return 10.0 ** np.arange(lo, hi + 1)


def bootstrap(fit, n_samples: int = 1000, seed: int = 0, level: float = 0.95, C=None, points=None,
              extra_starts: int = 4) -> Bootstrap:
    """Resample the runs of a `ChinchillaFit` n_samples times (seeded) and refit each resample.

    C: budgets for N_opt/D_opt/L_opt (default: powers of ten over the data and 3 decades beyond).
    points: a DataFrame (or dict) with N and D where predicted losses get CIs, e.g. held-out runs.
    """
    form = get_form("chinchilla")
    rng = np.random.default_rng(seed)
    n = len(fit.loss)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_samples).astype(float)
    if fit.fit.reduction == "mean":
        counts /= n
    grid = form.starts()
    full = np.array([fit.fit.raw[k] for k in form.params])
    k = 1 + extra_starts
    starts = np.empty((n_samples, k, len(form.params)))
    starts[:, 0] = full
    starts[:, 1:] = grid[rng.integers(0, len(grid), size=(n_samples, extra_starts))]
    res = run_starts(form, {"N": fit.N, "D": fit.D}, fit.loss, starts.reshape(-1, len(form.params)), counts,
                     np.repeat(np.arange(n_samples), k), delta=fit.fit.delta, opts=RESAMPLE_OPTS)
    f = np.where(res.converged & np.isfinite(res.fun), res.fun, np.inf).reshape(n_samples, k)
    best = np.argmin(f, axis=1)
    x = res.x.reshape(n_samples, k, -1)[np.arange(n_samples), best]
    raw = dict(zip(form.params, x.T, strict=True))
    nat = form.natural(raw)
    samples = pd.DataFrame({p: np.asarray(nat[p], float) for p in PARAMS})
    samples = samples.assign(**allocation(*(samples[p] for p in PARAMS)))
    samples["objective"] = f[np.arange(n_samples), best]
    samples["converged"] = np.isfinite(samples["objective"])
    C = default_budgets(fit.fit.inputs["N"] * fit.fit.inputs["D"] * fit.flops_coefficient) if C is None else \
        np.atleast_1d(np.asarray(C, float))
    p = samples[list(PARAMS)].to_numpy(float)
    cols = [p[:, j:j + 1] for j in range(5)]
    N_opt = n_opt(C[None, :], *cols, flops_coefficient=fit.flops_coefficient)
    D_opt = d_opt(C[None, :], *cols, flops_coefficient=fit.flops_coefficient)
    estimate = {**fit.params, "a": fit.a, "b": fit.b, "G": fit.G}
    out = Bootstrap(n_samples, seed, level, estimate, samples, C, N_opt, D_opt, chinchilla_loss(N_opt, D_opt, *cols),
                    extra_starts=extra_starts, flops_coefficient=fit.flops_coefficient)
    if points is not None:
        pts = pd.DataFrame(points)[["N", "D"]].reset_index(drop=True)
        out.points = pts
        out.predicted = chinchilla_loss(pts["N"].to_numpy(float)[None, :], pts["D"].to_numpy(float)[None, :], *cols)
    return out
