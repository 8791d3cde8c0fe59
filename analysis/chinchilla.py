"""Approach 3 of Hoffmann et al. (2022): fit L(N, D) = E + A/N^alpha + B/D^beta, then allocate compute.

The fit is theirs exactly: log L^ = LSE(a - alpha log N, b - beta log D, e), summed Huber loss (delta = 1e-3) of
log-loss residuals, L-BFGS from all 4500 grid starts, best converged start kept. The compute-optimal allocation
under C = 6 N D is their eq. 4: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, a = beta/(alpha+beta), b = alpha/(alpha+beta),
G = (alpha A / (beta B))^(1/(alpha+beta)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from analysis.bootstrap import bootstrap
from analysis.fit import FitDiagnostics, FitError, FormFit, fit_form
from analysis.forms import PARAMS, allocation, chinchilla_loss, d_opt, get_form, n_opt
from analysis.load import Convention, fit_columns

__all__ = ["PARAMS", "ChinchillaFit", "allocation", "d_opt", "fit_chinchilla", "n_opt"]

@dataclass
class ChinchillaFit:
    """Fitted E, A, B, alpha, beta with the objective, diagnostics and the compute-optimal allocation."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    diagnostics: FitDiagnostics
    fit: FormFit  # the underlying form fit: raw parameters, data, Huber delta, reduction
    convention: dict
    flops_coefficient: float = 6.0
    bootstrap: object = None  # an analysis.bootstrap.Bootstrap once computed
    dropped: dict = field(default_factory=dict)

    @property
    def params(self) -> dict:
        return {k: getattr(self, k) for k in PARAMS}

    @property
    def a(self) -> float:
        return allocation(**self.params)["a"]

    @property
    def b(self) -> float:
        return allocation(**self.params)["b"]

    @property
    def G(self) -> float:
        return allocation(**self.params)["G"]

    @property
    def N(self) -> np.ndarray:
        return self.fit.inputs["N"]

    @property
    def D(self) -> np.ndarray:
        return self.fit.inputs["D"]

    @property
    def loss(self) -> np.ndarray:
        return self.fit.loss

    def predict(self, N, D) -> np.ndarray:
        return chinchilla_loss(np.asarray(N, float), np.asarray(D, float), *self.params.values())

    def N_opt(self, C) -> np.ndarray:
        return n_opt(C, *self.params.values(), flops_coefficient=self.flops_coefficient)

    def D_opt(self, C) -> np.ndarray:
        return d_opt(C, *self.params.values(), flops_coefficient=self.flops_coefficient)

    def L_opt(self, C) -> np.ndarray:
        return self.predict(self.N_opt(C), self.D_opt(C))

    def residuals(self) -> np.ndarray:
        """log(observed loss) - log(predicted loss) at the fitted runs."""
        return np.log(self.loss) - np.log(self.predict(self.N, self.D))

    def table(self) -> pd.DataFrame:
        """One row per quantity: estimate, and bootstrap SE and CI once `bootstrap` is set."""
        est = {**self.params, "a": self.a, "b": self.b, "G": self.G}
        df = pd.DataFrame({"estimate": est})
        if self.bootstrap is not None:
            df = df.join(self.bootstrap.param_table().drop(columns="estimate", errors="ignore"))
        df.index.name = "quantity"
        return df

    def frontier(self, C) -> pd.DataFrame:
        """N_opt, D_opt and L_opt at the given budgets (with CIs once `bootstrap` is set)."""
        C = np.atleast_1d(np.asarray(C, float))
        df = pd.DataFrame({"C": C, "N_opt": self.N_opt(C), "D_opt": self.D_opt(C), "L_opt": self.L_opt(C)})
        if self.bootstrap is not None:
            df = df.merge(self.bootstrap.frontier_table(C).drop(columns=["N_opt", "D_opt", "L_opt"]), on="C")
        return df

    def to_dict(self) -> dict:
        out = {"approach": 3, "params": {k: float(v) for k, v in self.params.items()},
               "allocation": {"a": float(self.a), "b": float(self.b), "G": float(self.G),
                              "flops": f"C = {self.flops_coefficient:g} N D"},
               "objective": self.objective, "n_runs": int(len(self.loss)), "huber_delta": self.fit.delta,
               "reduction": self.fit.reduction, "n_starts": self.diagnostics.n_starts, "convention": self.convention,
               "dropped": self.dropped, "diagnostics": self.diagnostics.to_dict()}
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.to_dict()
        return out


def check_design(N, D, loss) -> None:
    """FitError naming why runs (N, D, loss) cannot identify L = E + A/N^alpha + B/D^beta: a non-finite loss, fewer
    runs than the law's 5 parameters, one model size, one token count, or every run on one line in (log N, log D)
    (one IsoFLOP budget, or one tokens-per-parameter ratio), along which alpha and beta cannot be told apart."""
    n_params = len(PARAMS)
    if not np.all(np.isfinite(loss)):
        raise FitError(f"{int((~np.isfinite(loss)).sum())} of {len(loss)} losses are not finite. Fix: leave out "
                       "diverged runs (analysis.load's table does)")
    if len(loss) < n_params:
        raise FitError(f"{len(loss)} runs cannot determine the {n_params} parameters of L(N, D). Fix: train "
                       f"{n_params} or more runs")
    for name, v in (("model size N", N), ("token count D", D)):
        if len(np.unique(v)) < 2:
            raise FitError(f"every run has the same {name} ({v[0]:.3g}), so its term of L(N, D) is not identified. "
                           f"Fix: vary {name.split()[-1]} across runs")
    log_n, log_d = np.log(N), np.log(D)
    slope, intercept = np.polyfit(log_n, log_d, 1)
    if np.std(log_d - (slope * log_n + intercept)) < 1e-3 * np.std(log_d):
        raise FitError(f"all {len(loss)} runs lie on one line D ∝ N^{slope:.2f} (one IsoFLOP budget, or one "
                       "tokens-per-parameter ratio): along it the N and D terms cannot be told apart. Fix: add runs "
                       "off that line (more budgets, or other token counts per size)")


def fit_chinchilla(N, D=None, loss=None, *, delta: float = 1e-3, reduction: Literal["sum", "mean"] = "sum",
                   starts: np.ndarray | None = None, convention: Convention | None = None,
                   exclude_highest: int = 0, n_bootstrap: int = 0, seed: int = 0, level: float = 0.95,
                   bootstrap_C=None) -> ChinchillaFit:
    """Hoffmann et al.'s Approach 3 on arrays (N, D, loss) or on a DataFrame from `analysis.load`.

    delta: Huber threshold on log-loss residuals. reduction: "sum" (theirs) or "mean" (a known way to break it).
    starts: override the 4500-start grid ([k, 5] in order a, b, e, alpha, beta... see `forms.FORMS`).
    exclude_highest: drop the runs with the k highest losses first (Besiroglu et al. drop 5 as outliers).
    n_bootstrap > 0 attaches a seeded bootstrap over runs (`analysis.bootstrap`).
    """
    dropped = {}
    if isinstance(N, pd.DataFrame):
        if D is not None or loss is not None:
            raise TypeError("pass either a DataFrame or the arrays N, D, loss, not both")
        N, D, _, loss, convention, dropped, _ = fit_columns(N, convention)
    else:
        convention = convention or Convention()
        N, D, loss = (np.asarray(v, float).ravel() for v in (N, D, loss))
    if exclude_highest:
        cut = np.sort(loss)[-exclude_highest]
        keep = loss < cut  # as Besiroglu et al.: strictly below the k-th highest loss
        dropped[f"{exclude_highest} highest losses excluded"] = int((~keep).sum())
        N, D, loss = N[keep], D[keep], loss[keep]
    check_design(N, D, loss)
    order = get_form("chinchilla").params
    if starts is not None and np.asarray(starts).shape[-1] != len(order):
        raise ValueError(f"starts must have {len(order)} columns in the order {order}")
    f = fit_form("chinchilla", {"N": N, "D": D}, loss, delta=delta, reduction=reduction, starts=starts,
                 convention=convention.to_dict())
    f.dropped = dropped
    out = ChinchillaFit(**{k: f.params[k] for k in PARAMS}, objective=f.objective, diagnostics=f.diagnostics, fit=f,
                        convention=convention.to_dict(), flops_coefficient=convention.flops_coefficient,
                        dropped=dropped)
    if n_bootstrap:
        out.bootstrap = bootstrap(out, n_samples=n_bootstrap, seed=seed, level=level, C=bootstrap_C)
    return out
