"""Do the approaches agree on the compute-optimal exponent a? A plain verdict, and the likely causes when they don't.

Two approaches agree when their intervals on a overlap. Where they don't, or where an interval is too wide to tell,
the sweep's design is checked for what usually causes it: IsoFLOP minima at a budget's edge, too few sizes per
budget, and too narrow a range of compute or model size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.load import fit_columns

MIN_SIZES_PER_BUDGET = 5
MIN_COMPUTE_DECADES = 1.5
MIN_SIZE_DECADES = 1.0
MAX_INTERVAL_WIDTH = 0.2  # an interval on a wider than this cannot tell Chinchilla's 0.5 from Kaplan's 0.73


@dataclass
class Agreement:
    intervals: dict[str, tuple[float, float]]  # approach -> interval on a
    levels: dict[str, float]  # approach -> the interval's coverage
    overlaps: dict[tuple[str, str], bool]
    causes: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool | None:
        """True if every pair of intervals overlaps, False if one pair does not, None with fewer than two."""
        return None if not self.overlaps else all(self.overlaps.values())

    def verdict(self) -> str:
        if self.agree is None:
            return "Fewer than two approaches gave an interval on a, so their agreement cannot be judged."
        names = ", ".join(f"{k} [{lo:.3f}, {hi:.3f}] ({self.levels[k]:.0%})" for k, (lo, hi) in self.intervals.items())
        if self.agree:
            return f"**The approaches agree**: their intervals on a overlap: {names}."
        apart = "; ".join(f"{a} and {b}" for (a, b), ok in self.overlaps.items() if not ok)
        return f"**The approaches disagree**: the intervals on a do not overlap for {apart} ({names})."

    def warnings(self) -> list[str]:
        if not self.causes or self.agree is None:
            return []
        lead = "Likely cause" if self.agree is False else "Weak spot even so"
        return [f"{lead}: {c}" for c in self.causes]


def _finite(ci) -> bool:
    return ci is not None and all(np.isfinite(v) for v in ci)


def compare_exponents(rep) -> Agreement:
    """The intervals on a of Approaches 1-3 in `rep` (an analysis.report.Report), their overlaps and design causes."""
    intervals, levels = {}, {}
    if rep.envelope is not None and _finite(rep.envelope.a_ci):
        intervals["Approach 1"], levels["Approach 1"] = tuple(rep.envelope.a_ci), rep.envelope.level
    if rep.isoflop is not None and _finite(rep.isoflop.a_ci):
        intervals["Approach 2"], levels["Approach 2"] = tuple(rep.isoflop.a_ci), rep.isoflop.level
    if rep.fit is not None and rep.fit.bootstrap is not None:
        t = rep.fit.bootstrap.param_table()
        ci = (float(t.loc["a", "ci_low"]), float(t.loc["a", "ci_high"]))
        if _finite(ci):
            intervals["Approach 3"], levels["Approach 3"] = ci, rep.fit.bootstrap.level
    names = list(intervals)
    overlaps = {(x, y): intervals[x][0] <= intervals[y][1] and intervals[y][0] <= intervals[x][1]
                for i, x in enumerate(names) for y in names[i + 1:]}
    return Agreement(intervals, levels, overlaps, design_causes(rep, intervals))


def design_causes(rep, intervals: dict) -> list[str]:
    """What in the sweep's design weakens the exponents: edge minima, few sizes, narrow ranges, wide intervals."""
    causes = []
    if rep.isoflop is not None:
        b = rep.isoflop.budgets
        edge = b[b["status"] != "ok"]
        if len(edge):
            causes.append(f"{len(edge)} of {len(b)} IsoFLOP budgets have no interior minimum "
                          f"({', '.join(f'C={c:.3g}: {s}' for c, s in zip(edge['C'], edge['status']))}); "
                          "centre each budget's sizes on its optimum")
        few = b[b["n_runs"] < MIN_SIZES_PER_BUDGET]
        if len(few):
            causes.append(f"{len(few)} budgets have fewer than {MIN_SIZES_PER_BUDGET} sizes "
                          f"(C={', '.join(f'{c:.3g}' for c in few['C'])}); train at least {MIN_SIZES_PER_BUDGET}")
    n, _, c, _, _, _, _ = fit_columns(rep.runs, rep.convention)
    c = rep.isoflop.budgets["C"].to_numpy(float) if rep.isoflop is not None else np.asarray(c, float)
    if len(c) > 1 and np.log10(c.max() / c.min()) < MIN_COMPUTE_DECADES - 1e-9:
        causes.append(f"the budgets span {np.log10(c.max() / c.min()):.2f} decades of compute; use at least "
                      f"{MIN_COMPUTE_DECADES}")
    n = np.asarray(n, float)
    if len(n) and np.log10(n.max() / n.min()) < MIN_SIZE_DECADES:
        causes.append(f"the model sizes span {np.log10(n.max() / n.min()):.2f} decades; use at least "
                      f"{MIN_SIZE_DECADES}")
    for name, (lo, hi) in intervals.items():
        if hi - lo > MAX_INTERVAL_WIDTH:
            causes.append(f"{name}'s interval on a is {hi - lo:.2f} wide (more than {MAX_INTERVAL_WIDTH}): too few or "
                          "too noisy runs to pin the exponent")
    return causes
