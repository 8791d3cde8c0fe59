"""Local executor: one in-process worker (default), or K worker processes sharing the sweep through claims.

In process, runs of equal shapes reuse one compiled train step (research.train.step caches it) and JAX's
persistent compilation cache serves every later process and sweep on this machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from research.train.host_memory import huge_pages_env
from sweeps.executors.driver import DriveResult, drive
from sweeps.manifest import Plan
from sweeps.runner import Worker, WorkerOptions, WorkerReport


def run_in_process(out: str | Path, plan: Plan, options: WorkerOptions) -> WorkerReport:
    from research.train.compile_cache import enable_compilation_cache  # JAX: only in the process that trains

    enable_compilation_cache()
    return Worker(out, plan, options).run()


class ProcessLauncher:
    """Worker processes: `python -m sweeps worker OUT`, each logging to OUT/logs/worker-<round>-<i>.log; they start
    with malloc's huge pages on (research.train.host_memory), unless `env` says otherwise."""

    def __init__(self, out: str | Path, worker_args: list[str], env: dict | None = None):
        self.out, self.worker_args, self.env = Path(out), worker_args, env
        self.procs: list[subprocess.Popen] = []

    def launch(self, count: int, round_index: int) -> None:
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = f"p{round_index}.{i}"
            with open(logs / f"worker-{name}.log", "ab") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "sweeps", "worker", str(self.out), "--worker-id", name, *self.worker_args],
                    stdout=log, stderr=subprocess.STDOUT, env=self.env or huge_pages_env()))

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)  # poll() also reaps exited workers

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # each saves a checkpoint and exits
        for p in self.procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_processes(out: str | Path, plan: Plan, workers: int, options: WorkerOptions, max_rounds: int = 3,
                  show=None) -> DriveResult:
    args = ["--stale-after", str(options.stale_after_s), "--heartbeat", str(options.heartbeat_s)]
    return drive(out, plan, ProcessLauncher(out, args), workers, stale_after_s=options.stale_after_s,
                 poll_s=min(options.poll_s, 2.0), max_rounds=max_rounds, log=options.log, show=show)
