"""An ablation's results table from its output directory: one row per variant (x extra-axis cell), with the seed
statistics, the difference from the baseline in the same cell, the compute, and the extra measures it asks for."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from experiments.ablations.scales import ExperimentError
from experiments.extrapolation import EXTRAPOLATION
from experiments.stats import SeedSummary, WelchTest, summarize, welch
from sweeps.claims import STALE_AFTER_S
from sweeps.manifest import read_plan
from sweeps.rundir import METRICS, read_json, read_jsonl, run_state

EXPERIMENT = "experiment.json"
ALPHA = 0.05


@dataclass(frozen=True)
class RunResult:
    """One planned run as its files describe it (status pending/running/... if it has not finished)."""

    dirname: str
    cell: tuple  # extra-axis values, in the order of the experiment's axes
    variant: str
    seed: int
    status: str
    eval_loss: float | None
    params: int
    flops: float
    wall_s: float | None
    kv_bytes_per_token: int
    curve: list[dict] = field(default_factory=list)  # metrics.jsonl records
    lengths: dict = field(default_factory=dict)  # factor (str) -> eval loss at factor x seq_len


@dataclass(frozen=True)
class Row:
    variant: str
    cell: tuple
    is_baseline: bool
    runs: list[RunResult]
    loss: SeedSummary
    test: WelchTest | None  # None for the baseline row
    lengths: dict  # factor -> SeedSummary
    gaps: dict  # factor -> SeedSummary of (loss at factor x) - (loss at 1x), paired within each run

    @property
    def statuses(self) -> dict:
        found: dict = {}
        for r in self.runs:
            found[r.status] = found.get(r.status, 0) + 1
        return found

    @property
    def verdict(self) -> str:
        if self.loss.n == 0 and self.statuses.get("diverged"):
            return "diverged"
        if self.is_baseline:
            return "baseline"
        if self.test is None or math.isnan(self.test.p):
            return "n/a"
        if self.test.p >= ALPHA:
            return "no significant difference"
        return "better" if self.test.diff < 0 else "worse"


def kv_bytes_per_token(model: dict) -> int:
    """K and V for every layer: 2 x layers x kv heads x head_dim x bytes of the compute dtype."""
    heads = model["n_heads"] if model["n_kv_heads"] is None else model["n_kv_heads"]
    head_dim = model["head_dim"] or model["d_model"] // model["n_heads"]
    return 2 * model["n_layers"] * heads * head_dim * (2 if model["compute_dtype"] == "bfloat16" else 4)


def load_runs(out: str | Path) -> tuple[dict, list[RunResult]]:
    """(experiment.json, every planned run's result) of an experiment's output directory."""
    out = Path(out)
    experiment = read_json(out / EXPERIMENT)
    if experiment is None:
        raise ExperimentError(f"{out}: no {EXPERIMENT}. Fix: point at the --out of `python -m experiments run`")
    tags = [a["tag"] for a in experiment["axes"]]
    results = []
    for spec in read_plan(out).runs:
        run_dir = spec.workdir(out)
        summary = read_json(run_dir / "summary.json") or {}
        status = run_state(run_dir, STALE_AFTER_S).status
        loss = summary.get("final_eval_loss") if status == "complete" else None
        extra = read_json(run_dir / EXTRAPOLATION) or {}
        results.append(RunResult(
            dirname=spec.dirname, cell=tuple(spec.tags.get(t) for t in tags), variant=spec.tags["variant"],
            seed=spec.tags["seed"], status=status, eval_loss=loss if loss is None or math.isfinite(loss) else None,
            params=spec.params, flops=spec.flops, wall_s=summary.get("wall_time_s"),
            kv_bytes_per_token=kv_bytes_per_token(spec.config.to_dict()["model"]),
            curve=read_jsonl(run_dir / METRICS), lengths=extra.get("eval_loss", {})))
    return experiment, results


def build_rows(experiment: dict, results: list[RunResult]) -> list[Row]:
    """Rows in the order of the experiment's variants within each cell; baseline first."""
    baseline = experiment["baseline"]
    order = [v["variant"] for v in experiment["variants"]]
    cells = list(dict.fromkeys(r.cell for r in results))
    rows = []
    for cell in cells:
        losses = {v: [r.eval_loss for r in results if r.cell == cell and r.variant == v and r.eval_loss is not None]
                  for v in order}
        for v in sorted(order, key=lambda name: (name != baseline, order.index(name))):
            runs = [r for r in results if r.cell == cell and r.variant == v]
            lengths = {f: summarize([r.lengths[str(f)] for r in runs if str(f) in r.lengths])
                       for f in experiment["eval_lengths"]}
            gaps = {f: summarize([r.lengths[str(f)] - r.lengths["1"] for r in runs if str(f) in r.lengths])
                    for f in experiment["eval_lengths"] if f != 1 and 1 in experiment["eval_lengths"]}
            test = None if v == baseline else welch(losses[v], losses[baseline])
            rows.append(Row(v, cell, v == baseline, runs, summarize(losses[v]), test, lengths, gaps))
    return rows
