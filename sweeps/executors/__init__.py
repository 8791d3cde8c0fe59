"""Executors: where workers run. local: in this process, or K worker processes; slurm: a submitit job array.

`execute` is the one place that picks among them (the sweeps CLI and the named experiments both call it). The
executors import their heavy dependencies (the model stack, submitit) only when they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweeps.executors.local import run_in_process, run_processes
from sweeps.executors.slurm import run_slurm
from sweeps.spec import SweepError

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class Execution:
    submitted_only: bool = False  # slurm without waiting: the jobs run on after this returns
    stopped: bool = False  # the in-process worker was stopped by a signal


def execute(out: str | Path, plan, executor: str, workers: int, options, *, resources=None, max_rounds: int = 3,
            wait: bool = True, show=None) -> Execution:
    """Train a plan's unfinished runs: `workers` Slurm array tasks, or 1 worker in this process, or K processes."""
    if executor not in EXECUTORS:
        raise SweepError(f"--executor {executor!r}: unknown. Fix: use one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise SweepError(f"--workers {workers}: must be >= 1. Fix: give --workers 1 or more")
    if executor == "slurm":
        result = run_slurm(out, plan, resources or plan.resources, workers, options, max_rounds, wait=wait, show=show)
        return Execution(submitted_only=result is None)
    if workers == 1:
        return Execution(stopped=run_in_process(out, plan, options).stopped)
    run_processes(out, plan, workers, options, max_rounds, show=show)
    return Execution()
