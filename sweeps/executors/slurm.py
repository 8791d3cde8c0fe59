"""Slurm executor: a submitit job array of workers, each the same worker loop as a local process.

Resources (partition, time, GPUs per task, nodes per run) come from the sweep's `Resources`, overridden on the
command line. With nodes > 1 every array task spans that many hosts, one process each: they join one
`jax.distributed` job, process 0 claims runs and announces each to the others, and all of them train it together.
Completion is tracked through the run directories; Slurm is asked only whether our workers are still queued or
running (squeue works without accounting, unlike sacct).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sweeps.executors.driver import DriveResult, drive
from sweeps.manifest import Plan, read_plan
from sweeps.runner import WorkerOptions
from sweeps.spec import Resources, SweepError


def slurm_parameters(plan: Plan, resources: Resources, workers: int) -> dict:
    """submitit.SlurmExecutor parameters for one array of `workers` tasks."""
    params = {"job_name": f"sweep-{plan.name}", "time": resources.time_min, "nodes": resources.nodes,
              "ntasks_per_node": 1, "array_parallelism": workers}
    if resources.partition:
        params["partition"] = resources.partition
    if resources.gpus_per_task:
        params["gpus_per_task"] = resources.gpus_per_task
    if resources.cpus_per_task:
        params["cpus_per_task"] = resources.cpus_per_task
    if resources.mem_gb:
        params["mem"] = f"{int(resources.mem_gb * 1024)}M"
    return params


def slurm_worker(out: str, options: dict) -> dict:
    """One array task (all its processes): join jax.distributed if it spans several, then work the sweep."""
    import submitit

    # JAX: only in the Slurm task that trains
    from research.train.compile_cache import enable_compilation_cache
    from sweeps.multihost import work

    env = submitit.JobEnvironment()
    worker_id = f"slurm-{env.job_id}" + (f"/{env.global_rank}" if env.num_tasks > 1 else "")
    enable_compilation_cache()
    report = work(out, read_plan(out), WorkerOptions(worker_id=worker_id, **options))
    return {"worker": worker_id, "outcomes": dict(report.outcomes), "trained": report.trained}


class SlurmLauncher:
    def __init__(self, out: Path, plan: Plan, resources: Resources, options: WorkerOptions):
        import submitit

        self.out, self.plan, self.resources = Path(out), plan, resources
        self.options = {"stale_after_s": options.stale_after_s, "heartbeat_s": options.heartbeat_s}
        self.executor = submitit.SlurmExecutor(folder=str(self.out / "slurm" / "%j"))
        self.jobs: list = []

    def launch(self, count: int, round_index: int) -> None:
        self.executor.update_parameters(**slurm_parameters(self.plan, self.resources, count))
        jobs = self.executor.map_array(slurm_worker, [str(self.out)] * count, [self.options] * count)
        self.jobs += jobs
        ids = sorted({j.job_id.split("_")[0] for j in jobs})
        print(f"submitted Slurm array {', '.join(ids)}: {count} task(s); logs in {self.out / 'slurm'}", flush=True)

    def alive(self) -> int:
        """Our array tasks still queued or running: squeue, else submitit's result files."""
        pending = [j for j in self.jobs if not j.done()]
        if not pending:
            return 0
        queued = _squeue_ids({j.job_id.split("_")[0] for j in pending})
        if queued is None:
            return len(pending)
        return sum(1 for j in pending if j.job_id in queued or j.job_id.split("_")[0] in queued)

    def stop(self) -> None:
        for j in self.jobs:
            if not j.done():
                j.cancel(check=False)


def _squeue_ids(array_ids: set[str]) -> set[str] | None:
    """Job ids ('123_4', and '123' for a still unexpanded array) of ours that Slurm still lists; None if unknown."""
    if shutil.which("squeue") is None:
        return None
    try:
        res = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(sorted(array_ids))],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return set() if "Invalid job id" in res.stderr else None
    ids = set(res.stdout.split())
    return ids | {i.split("_")[0] for i in ids if "[" in i}  # '123_[2-3]': tasks not yet started


def run_slurm(out: str | Path, plan: Plan, resources: Resources, workers: int, options: WorkerOptions,
              max_rounds: int = 3, wait: bool = True, show=None) -> DriveResult | None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SweepError("the Slurm executor needs submitit. Fix: pip install -e '.[sweeps]'") from None
    if shutil.which("sbatch") is None:
        raise SweepError("--executor slurm: no `sbatch` on PATH. Fix: run on a Slurm login node, or use "
                         "--executor local")
    launcher = SlurmLauncher(Path(out), plan, resources, options)
    if not wait:
        launcher.launch(workers, 0)
        return None
    return drive(out, plan, launcher, workers, stale_after_s=options.stale_after_s, poll_s=options.poll_s,
                 max_rounds=max_rounds, log=options.log, show=show)

