"""The plan written into OUT: `OUT/sweep.json` (every run's config, for workers that never import the sweep file)
and `OUT/runs/<name>-<id>/point.json` (each run directory describes itself). Both are plain files, rewritten
atomically; a worker needs only OUT.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from research.config import RunConfig
from research.files import write_json_atomic
from sweeps.expansion import RunSpec
from sweeps.rundir import POINT, read_json
from sweeps.spec import Resources, Sweep, SweepError

MANIFEST = "sweep.json"


@dataclass(frozen=True)
class Plan:
    """What workers execute: the runs (in order) and the sweep-level settings."""

    name: str
    runs: list[RunSpec]
    max_attempts: int
    resources: Resources
    source: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "max_attempts": self.max_attempts,
                "resources": dataclasses.asdict(self.resources), "written_at": time.time(),
                "runs": [point_record(r, self.name) for r in self.runs]}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        runs = [RunSpec(r["name"], r["run_id"], RunConfig.from_dict(r["config"]), r.get("tags", {}),
                        r.get("budget", "")) for r in d["runs"]]
        for spec, r in zip(runs, d["runs"], strict=True):
            if spec.config.run_id() != r["run_id"]:
                raise SweepError(f"{MANIFEST}: run {r['name']} has id {r['run_id']} but its config hashes to "
                                 f"{spec.config.run_id()} (the RunConfig schema changed?). Fix: plan the sweep again "
                                 "with `python -m sweeps run CONFIG --out OUT`")
        return cls(d["name"], runs, int(d["max_attempts"]), Resources(**d.get("resources", {})), d.get("source", ""))


def point_record(spec: RunSpec, sweep: str) -> dict:
    return {"name": spec.name, "run_id": spec.run_id, "dirname": spec.dirname, "sweep": sweep, "tags": spec.tags,
            "budget": spec.budget, "steps": spec.config.num_steps, "params": spec.params, "tokens": spec.tokens,
            "flops": spec.flops, "flops_6nd": spec.flops_6nd, "config": spec.config.to_dict()}


def plan_from_sweep(sweep: Sweep, runs: list[RunSpec], source: str = "", max_attempts: int | None = None,
                    resources: Resources | None = None) -> Plan:
    return Plan(sweep.name, order_for_reuse(runs), max_attempts or sweep.max_attempts,
                resources or sweep.resources, source)


def order_for_reuse(runs: list[RunSpec]) -> list[RunSpec]:
    """Runs of one compiled shape (model, batch, sequence) next to each other, smallest model first, so an
    in-process worker compiles each shape once. Stable within a shape."""
    def shape(r: RunSpec):
        c = r.config
        return (repr(c.model), c.batch_size, c.data.seq_len, c.train.accum_steps)

    groups: dict = {}
    for r in runs:
        groups.setdefault(shape(r), []).append(r)
    ordered = sorted(groups.values(), key=lambda g: (g[0].params, g[0].config.batch_size, g[0].name))
    return [r for g in ordered for r in g]


def write_plan(out: Path, plan: Plan) -> None:
    """OUT/sweep.json plus every run directory with its point.json (existing runs are left as they are)."""
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for spec in plan.runs:
        run_dir = spec.workdir(out)
        run_dir.mkdir(exist_ok=True)
        record = point_record(spec, plan.name)
        existing = read_json(run_dir / POINT)
        if existing is None or {k: v for k, v in existing.items() if k != "sweep"} != \
                {k: v for k, v in record.items() if k != "sweep"}:
            write_json_atomic(run_dir / POINT, record)
    write_json_atomic(out / MANIFEST, plan.to_dict())


def read_plan(out: Path) -> Plan:
    d = read_json(Path(out) / MANIFEST)
    if d is None:
        raise SweepError(f"{out}/{MANIFEST} is missing or not valid JSON. Fix: start the sweep with `python -m sweeps "
                         f"run CONFIG --out {out}` (workers read the plan it writes)")
    return Plan.from_dict(d)
