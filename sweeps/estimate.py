"""Time estimates: run time = overhead + steps x (latency + FLOPs per step / rate).

The three numbers are fitted to the finished runs of the sweep being estimated when it has any (same machine,
same kind of model); otherwise the defaults below apply, measured on the project's 2-core CPU with the byte-level
ladder models (research.train.run, one device, 2026-11; expect other machines to differ by a lot).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Least squares over the 20 runs of a cold demo sweep (sweeps/configs/demo.py, 2026-11-29): 486 s in all.
DEFAULT_LATENCY_S = 0.00176  # per step: fixed work of a small model's step, dispatch amortised over steps_per_call
DEFAULT_RATE = 3.2e10  # achieved training FLOP/s (exact count) of small models on 2 cores
DEFAULT_OVERHEAD_S = 3.8  # per run: ~1.5 s with a warm compilation cache, ~8-10 s for a shape never compiled


@dataclass(frozen=True)
class Estimator:
    latency_s: float = DEFAULT_LATENCY_S
    rate: float = DEFAULT_RATE
    overhead_s: float = DEFAULT_OVERHEAD_S
    fitted_on: int = 0  # how many finished runs the numbers come from (0: defaults)

    def seconds(self, steps: int, flops: float, done_steps: int = 0) -> float:
        """Wall seconds left for a run of `steps` steps and `flops` training FLOPs, `done_steps` already done."""
        per_step = self.latency_s + flops / max(steps, 1) / self.rate
        overhead = self.overhead_s if done_steps == 0 else self.overhead_s / 2  # resumed or running: part paid
        return max(steps - done_steps, 0) * per_step + overhead

    @classmethod
    def fit(cls, rows: list[dict]) -> Estimator:
        """Least squares of step time on FLOPs per step over complete runs (summary rows); defaults if none."""
        pts = [(r["flops"] / r["steps"], r["train_time_s"] / r["steps"]) for r in rows
               if r.get("status") == "complete" and r.get("steps") and r.get("train_time_s") and r.get("flops")]
        if not pts:
            return cls()
        overhead = statistics.median(max(r["wall_time_s"] - r["train_time_s"], 0.0) for r in rows
                                     if r.get("status") == "complete" and r.get("wall_time_s") is not None)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        latency, rate = DEFAULT_LATENCY_S, None
        if len(set(xs)) >= 2:
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x in xs)
            intercept = my - slope * mx
            if slope > 0 and intercept >= 0:
                latency, rate = intercept, 1.0 / slope
        if rate is None:  # one shape, or a fit with a negative latency: keep the latency, fit the rate alone
            rate = sum(xs) / max(sum(ys) - latency * len(ys), 1e-9)
        return cls(latency, rate, overhead, len(pts))

    def describe(self) -> str:
        source = f"fitted on {self.fitted_on} finished runs" if self.fitted_on else "defaults for a 2-core CPU"
        return (f"estimate: {self.overhead_s:.1f}s per run + steps x ({self.latency_s * 1e3:.1f}ms + "
                f"FLOPs/step / {self.rate / 1e9:.1f} GFLOP/s) ({source})")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def human(x: float) -> str:
    """Two significant digits with a k/m/b/t suffix: 54080 -> '54k', 1099520 -> '1.1m'."""
    if x < 1000:
        return f"{x:.2g}" if x < 100 else f"{round(x, -1):.0f}"
    for suffix, scale in (("t", 1e12), ("b", 1e9), ("m", 1e6), ("k", 1e3)):
        if x >= scale * 0.9995:
            v = x / scale
            digits = 2 - 1 - math.floor(math.log10(v))
            v = round(v, max(digits, 0))
            return f"{v:.{max(digits, 0)}f}{suffix}" if v < 1000 else f"{v:.0f}{suffix}"
    return str(x)
