"""Run an ablation through the sweep machinery: plan into OUT, train what is missing (local or Slurm), then the
post-training evaluations (length extrapolation), each stored once in its run directory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.ablations import build
from experiments.ablations.scales import ExperimentError
from experiments.extrapolation import ensure_extrapolation
from experiments.table import EXPERIMENT
from research.files import write_json_atomic
from sweeps.claims import STALE_AFTER_S
from sweeps.executors import EXECUTORS, execute
from sweeps.expansion import expand
from sweeps.manifest import Plan, plan_from_sweep, write_plan
from sweeps.results import write_results
from sweeps.rundir import read_json, run_state
from sweeps.runner import WorkerOptions
from sweeps.spec import Resources


@dataclass(frozen=True)
class RunOptions:
    scale: str = "tiny"
    seeds: int = 3
    executor: str = "local"  # local | slurm
    workers: int = 1
    overrides: tuple[str, ...] = ()  # dotted overrides of the scale's base config (e.g. data.source=...)
    resources: Resources = field(default_factory=Resources)
    progress: bool = False


def plan_experiment(name: str, out: str | Path, options: RunOptions) -> Plan:
    """Check everything, write OUT/experiment.json and the sweep plan; trains nothing."""
    if options.executor not in EXECUTORS:
        raise ExperimentError(f"--executor {options.executor!r}: use one of {', '.join(EXECUTORS)}")
    if options.workers < 1:
        raise ExperimentError(f"--workers {options.workers}: must be >= 1")
    ablation, base = build(name, options.scale, list(options.overrides))
    sweep = ablation.sweep(base, options.seeds, options.scale)
    out = Path(out)
    existing = read_json(out / EXPERIMENT)
    if existing and (existing["ablation"], existing["scale"]) != (ablation.name, options.scale):
        raise ExperimentError(f"--out {str(out)!r} holds experiment {existing['ablation']} at scale "
                              f"{existing['scale']}, not {ablation.name} at {options.scale}. Fix: use another --out")
    plan = plan_from_sweep(sweep, expand(sweep).runs, f"experiments:{ablation.name}:{options.scale}",
                           resources=options.resources)
    out.mkdir(parents=True, exist_ok=True)
    record = ablation.to_dict(base, options.scale, options.seeds) | {"overrides": list(options.overrides)}
    write_json_atomic(out / EXPERIMENT, record)
    write_plan(out, plan)
    return plan


def run_experiment(name: str, out: str | Path, options: RunOptions, log=print) -> dict:
    """Plan, train every unfinished run, evaluate; returns counts of run states and the wall time."""
    started = time.perf_counter()
    out = Path(out)
    plan = plan_experiment(name, out, options)
    todo = [r for r in plan.runs if not run_state(r.workdir(out), STALE_AFTER_S).terminal]
    log(f"{name}: {len(plan.runs)} runs, {len(plan.runs) - len(todo)} already finished, {len(todo)} to run -> {out}")
    worker = WorkerOptions(worker_id="main", wait=True, progress=options.progress, log=log)
    execute(out, plan, options.executor, options.workers, worker)
    write_results(out)
    factors = tuple(json.loads((out / EXPERIMENT).read_text())["eval_lengths"])
    if factors:
        for r in plan.runs:
            if ensure_extrapolation(r.workdir(out), factors) is not None:
                continue
            log(f"{r.dirname}: not complete, no length evaluation")
    states = [run_state(r.workdir(out), STALE_AFTER_S).status for r in plan.runs]
    counts = {s: states.count(s) for s in sorted(set(states))}
    return {"runs": len(plan.runs), "states": counts, "wall_s": time.perf_counter() - started}
