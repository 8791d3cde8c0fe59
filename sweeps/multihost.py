"""Runs that span several processes (hosts): the processes of one worker join a `jax.distributed` job
(research.parallel.distributed); process 0 claims and announces each run (its index in the plan, -1 when done)
and every process trains it, so all call `research.train.run` with the same config at the same time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeps.manifest import Plan
from sweeps.runner import Worker, WorkerOptions, WorkerReport


def _broadcast(value: int) -> int:
    from jax.experimental import multihost_utils  # JAX: only in a multi-process worker

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def announce(index: int) -> None:
    """Process 0: tell the others which run comes next (-1: no more)."""
    _broadcast(index)


def follow(out: str | Path, plan: Plan) -> list[str]:
    """Processes > 0: train whatever process 0 announces, until it announces -1."""
    from research.train import run  # JAX loads in the worker that trains, not in the CLI that plans
    from research.train.signals import FenceLost

    trained = []
    while (index := _broadcast(-1)) >= 0:
        spec = plan.runs[index]
        try:
            run(spec.config, spec.workdir(out), progress=False)
        except FenceLost:  # process 0 lost its claim on this run: it moves on, and so do we
            continue
        trained.append(spec.dirname)
    return trained


def work(out: str | Path, plan: Plan, options: WorkerOptions, coordinator: str | None = None,
         num_processes: int | None = None, process_id: int | None = None,
         local_cpu_devices: int | None = None) -> WorkerReport:
    """One worker, single- or multi-process: join jax.distributed if asked (or under a multi-task Slurm step),
    then process 0 works the plan and the others follow it."""
    import jax  # in the worker only: the CLI that plans never loads JAX

    from research.parallel.distributed import initialize

    initialize(coordinator, num_processes, process_id, local_cpu_devices)
    if jax.process_count() == 1:
        return Worker(out, plan, options).run()
    if jax.process_index() == 0:
        return Worker(out, plan, options, announce=announce).run()
    report = WorkerReport()
    report.trained = follow(out, plan)
    return report
