"""Backtest a scaling law: fit on the smaller runs, predict the largest, report the relative error.

This is the honest check of a law's use, extrapolation: the held-out runs are the ones with the most compute (or
the largest N), never a random subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.bootstrap import bootstrap
from analysis.chinchilla import ChinchillaFit, fit_chinchilla
from analysis.load import Convention, fit_columns


@dataclass
class Backtest:
    """Held-out runs with predicted losses (and bootstrap CIs when asked), and the fit they were predicted from."""

    table: pd.DataFrame  # run_id, N, D, C, loss, predicted, rel_error (= predicted / observed - 1), [ci_low, ci_high]
    fit: ChinchillaFit
    by: str
    holdout: str  # how the held-out runs were chosen, in words
    n_train: int

    @property
    def mean_abs_rel_error(self) -> float:
        return float(np.mean(np.abs(self.table["rel_error"])))

    @property
    def max_abs_rel_error(self) -> float:
        return float(np.max(np.abs(self.table["rel_error"])))

    def to_dict(self) -> dict:
        return {"by": self.by, "holdout": self.holdout, "n_train": self.n_train, "n_holdout": len(self.table),
                "mean_abs_rel_error": self.mean_abs_rel_error, "max_abs_rel_error": self.max_abs_rel_error,
                "fit": self.fit.to_dict(), "runs": self.table.replace({np.nan: None}).to_dict(orient="records")}


def _holdout_mask(values: np.ndarray, holdout) -> tuple[np.ndarray, str]:
    n = len(values)
    if isinstance(holdout, (pd.Series, np.ndarray, list)) and len(holdout) == n and \
            np.asarray(holdout).dtype == bool:
        return np.asarray(holdout, bool), "the runs marked"
    if isinstance(holdout, (int, np.integer)) and not isinstance(holdout, bool) and holdout >= 1:
        k = int(holdout)
        mask = np.zeros(n, bool)
        mask[np.argsort(values, kind="stable")[n - k:]] = True
        return mask, f"the {k} largest runs"
    if isinstance(holdout, float) and 0 < holdout < 1:
        k = max(1, int(round(holdout * n)))
        mask = np.zeros(n, bool)
        mask[np.argsort(values, kind="stable")[n - k:]] = True
        return mask, f"the largest {holdout:.0%}"
    if isinstance(holdout, float) and holdout > 1:
        return values >= holdout, f"the runs at or above {holdout:.3g}"
    raise ValueError(f"holdout={holdout!r}: give a fraction in (0, 1), a count >= 1, a threshold > 1 on `by`, or a "
                     "boolean mask over the rows")


def backtest(df: pd.DataFrame, holdout=0.2, *, by: str = "C", n_bootstrap: int = 0, seed: int = 0,
             level: float = 0.95, convention: Convention | None = None, **fit_kwargs) -> Backtest:
    """Fit Approach 3 on all but the largest runs by `by` ("C", "N" or "D") and predict the held-out ones.

    holdout: fraction of runs (0.2), count of runs (3), threshold on `by` (1e20), or a boolean mask over df's rows.
    n_bootstrap > 0 adds percentile CIs on each prediction. Other keyword arguments go to `fit_chinchilla`.
    """
    N, D, C, loss, convention, dropped, rows = fit_columns(df, convention)
    values = {"C": C, "N": N, "D": D}[by]
    if isinstance(holdout, (pd.Series, np.ndarray, list)) and len(holdout) == len(df):
        holdout = np.asarray(holdout, bool)[df.index.get_indexer(rows)]
    mask, how = _holdout_mask(values, holdout)
    if mask.all() or not mask.any():
        raise ValueError(f"holdout selects {int(mask.sum())} of {len(mask)} runs: need some to fit and some to predict")
    fit = fit_chinchilla(N[~mask], D[~mask], loss[~mask], convention=convention, **fit_kwargs)
    fit.dropped = dropped
    run_ids = df.loc[rows, "run_id"].to_numpy() if "run_id" in df.columns else np.arange(len(rows))
    table = pd.DataFrame({"run_id": run_ids[mask], "N": N[mask], "D": D[mask], "C": C[mask], "loss": loss[mask]})
    table["predicted"] = fit.predict(table["N"], table["D"])
    table["rel_error"] = table["predicted"] / table["loss"] - 1
    if n_bootstrap:
        fit.bootstrap = bootstrap(fit, n_samples=n_bootstrap, seed=seed, level=level, points=table[["N", "D"]])
        pred = fit.bootstrap.prediction_table()
        table["ci_low"], table["ci_high"] = pred["ci_low"].to_numpy(), pred["ci_high"].to_numpy()
    table = table.sort_values(by).reset_index(drop=True)
    return Backtest(table, fit, by, f"{how} by {by}", int((~mask).sum()))
