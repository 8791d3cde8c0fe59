"""Executors: where workers run. local: in this process, or K worker processes; slurm: a submitit job array.

`execute` is the one place that picks among them (the sweeps CLI and the named experiments both call it). The
executors import their dependencies (the model stack, submitit) only when chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class Execution:
    submitted_only: bool = False  # slurm without waiting: the jobs run on after this returns
    stopped: bool = False  # the in-process worker was stopped by a signal


def execute(out: str | Path, plan, executor: str, workers: int, options, *, resources=None, max_rounds: int = 3,
            wait: bool = True, show=None) -> Execution:
    """Train a plan's unfinished runs: `workers` Slurm array tasks, or 1 worker in this process, or K processes."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ValueError(f"--workers {workers}: must be >= 1")
    if executor == "slurm":
        from sweeps.executors.slurm import run_slurm

        result = run_slurm(out, plan, resources or plan.resources, workers, options, max_rounds, wait=wait, show=show)
        return Execution(submitted_only=result is None)
    if workers == 1:
        from sweeps.executors.local import run_in_process

        return Execution(stopped=run_in_process(out, plan, options).stopped)
    from sweeps.executors.local import run_processes

    run_processes(out, plan, workers, options, max_rounds, show=show)
    return Execution()
