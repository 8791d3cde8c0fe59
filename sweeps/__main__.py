"""python -m sweeps plan|run|status|worker|results: plan a sweep, run it to completion, watch it.

  plan CONFIG                       the table of runs (N, D, C, D/N, estimated time); trains nothing
  run CONFIG [--out OUT] [--executor local|slurm] [--workers K]    run every unfinished run; resumable
  status OUT [--watch [SECONDS]]    done, running, failed and pending runs, their losses and the ETA
  worker OUT                        one worker on a planned sweep (what `run` starts in processes or Slurm)
  results OUT                       rebuild OUT/results.jsonl from the run directories
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from research.cli import add_debug_flag, entry_point
from sweeps.claims import HEARTBEAT_S, STALE_AFTER_S
from sweeps.estimate import Estimator
from sweeps.executors import execute
from sweeps.expansion import expand
from sweeps.manifest import order_for_reuse, plan_from_sweep, read_plan, write_plan
from sweeps.multihost import work
from sweeps.results import collect, write_results
from sweeps.rundir import record_reset, run_state
from sweeps.runner import WorkerOptions
from sweeps.spec import SweepError
from sweeps.status import format_status, sweep_status
from sweeps.sweep_file import load_sweep
from sweeps.tables import plan_table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeps", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def sweep_args(s):
        s.add_argument("config", help="a sweep file defining sweep(), or a name in sweeps/configs/ (e.g. demo)")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field of the sweep's base config, e.g. --set train.eval_batches=2")
        s.add_argument("--out", help="sweep output directory (default runs/<sweep name>)")

    def claim_args(s):
        s.add_argument("--stale-after", type=float, default=STALE_AFTER_S,
                       help=f"seconds without a heartbeat before a claim is taken over (default {STALE_AFTER_S:g})")
        s.add_argument("--heartbeat", type=float, default=HEARTBEAT_S, help=f"seconds between heartbeats "
                                                                            f"(default {HEARTBEAT_S:g})")

    s = sub.add_parser("plan", help="print the runs without running anything")
    sweep_args(s)
    s = sub.add_parser("run", help="run the sweep to completion (skips finished runs, resumes interrupted ones)")
    sweep_args(s)
    claim_args(s)
    s.add_argument("--executor", choices=("local", "slurm"), default="local")
    s.add_argument("--workers", type=int, help="local: worker processes (default 1: in this process); "
                                               "slurm: array tasks (default: the sweep's resources.workers)")
    s.add_argument("--partition", help="Slurm partition")
    s.add_argument("--time", type=int, dest="time_min", help="Slurm time limit per worker, minutes")
    s.add_argument("--gpus-per-task", type=int)
    s.add_argument("--cpus-per-task", type=int)
    s.add_argument("--mem-gb", type=float)
    s.add_argument("--nodes", type=int, help="hosts per run (jax.distributed across them)")
    s.add_argument("--max-attempts", type=int, help="attempts before a run is marked failed (default: the sweep's)")
    s.add_argument("--max-rounds", type=int, default=3, help="launches of workers before giving up (default 3)")
    s.add_argument("--retry-failed", action="store_true", help="give failed runs a fresh set of attempts")
    s.add_argument("--no-wait", action="store_true", help="slurm: submit the workers and return")
    s = sub.add_parser("worker", help="work on a planned sweep until nothing is left to claim")
    s.add_argument("out")
    s.add_argument("--worker-id", default="w0")
    s.add_argument("--wait", action="store_true", help="keep polling while others hold unfinished runs")
    claim_args(s)
    group = s.add_argument_group("multi-process runs (auto-detected under a multi-task Slurm step)")
    group.add_argument("--coordinator", help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int)
    group.add_argument("--process-id", type=int)
    group.add_argument("--local-cpu-devices", type=int, help="simulated CPU devices per process (testing)")
    s = sub.add_parser("status", help="the state of every run and the ETA")
    s.add_argument("out")
    s.add_argument("--watch", type=float, nargs="?", const=10.0, metavar="SECONDS", help="refresh until done")
    s.add_argument("--stale-after", type=float, default=STALE_AFTER_S)
    s = sub.add_parser("results", help="rebuild OUT/results.jsonl")
    s.add_argument("out")
    return p


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = add_debug_flag(_parser()).parse_args(argv)
    return {"plan": _plan, "run": _run, "worker": _worker, "status": _status, "results": _results}[
        args.command](args)


def _expand(args):
    sweep, path = load_sweep(args.config)
    sweep = sweep.with_base_overrides(args.overrides)
    return sweep, path, expand(sweep), Path(args.out or f"runs/{sweep.name}")


def _plan(args) -> int:
    sweep, _, expansion, out = _expand(args)
    estimator = Estimator.fit(collect(out)) if out.is_dir() else Estimator()
    print(plan_table(sweep, expansion, order_for_reuse(expansion.runs), estimator))
    return 0


def _run(args) -> int:
    started = time.perf_counter()
    sweep, path, expansion, out = _expand(args)
    overrides = {k: v for k, v in (("partition", args.partition), ("time_min", args.time_min),
                                   ("gpus_per_task", args.gpus_per_task), ("cpus_per_task", args.cpus_per_task),
                                   ("mem_gb", args.mem_gb), ("nodes", args.nodes)) if v is not None}
    resources = dataclasses.replace(sweep.resources, **overrides)
    plan = plan_from_sweep(sweep, expansion.runs, str(path), args.max_attempts, resources)
    estimator = Estimator.fit(collect(out)) if out.is_dir() else Estimator()
    print(plan_table(sweep, expansion, plan.runs, estimator), flush=True)
    write_plan(out, plan)
    before = {r.dirname: run_state(r.workdir(out), args.stale_after) for r in plan.runs}
    if args.retry_failed:
        for r in plan.runs:
            if before[r.dirname].status == "failed":
                record_reset(r.workdir(out))
                before[r.dirname] = run_state(r.workdir(out), args.stale_after)
    todo = [d for d, s in before.items() if not s.terminal]
    print(f"{len(plan.runs) - len(todo)} of {len(plan.runs)} runs already finished; {len(todo)} to run -> {out}",
          flush=True)
    options = WorkerOptions(worker_id="main", stale_after_s=args.stale_after, heartbeat_s=args.heartbeat,
                            wait=True, progress=sys.stdout.isatty())
    workers = args.workers if args.workers is not None else (resources.workers if args.executor == "slurm" else 1)
    if workers < 1:
        raise SweepError(f"--workers {workers}: must be >= 1. Fix: give --workers 1 (train in this process) or more")

    def show() -> str:
        st = sweep_status(out, args.stale_after)
        return format_status(st).split("\n", 1)[0]

    execution = execute(out, plan, args.executor, workers, options, resources=resources, max_rounds=args.max_rounds,
                        wait=not args.no_wait, show=show)
    if execution.submitted_only:
        print(f"submitted; watch with: python -m sweeps status {out} --watch")
        return 0
    stopped = execution.stopped
    results = write_results(out)
    wall = time.perf_counter() - started
    st = sweep_status(out, args.stale_after)
    print(format_status(st))
    rows = {r["dirname"]: r for r in collect(out)}
    trained = sum(rows[d].get("train_time_s") or 0.0 for d in todo if d in rows)
    if todo:
        print(f"wall time {wall:.1f}s for {len(todo)} run(s); {trained:.1f}s ({trained / wall:.0%}) inside "
              "training steps")
    print(f"results: {results}  (one line per run; each run's record is {out}/runs/<run>/summary.json)")
    failed = st.count("failed")
    if stopped:
        return 130
    return 0 if st.done and not failed else 1


def _worker(args) -> int:
    from research.train.compile_cache import enable_compilation_cache  # JAX: only the commands that train load it

    enable_compilation_cache()
    plan = read_plan(Path(args.out))
    options = WorkerOptions(worker_id=args.worker_id, stale_after_s=args.stale_after, heartbeat_s=args.heartbeat,
                            wait=args.wait)
    report = work(args.out, plan, options, args.coordinator, args.num_processes, args.process_id,
                  args.local_cpu_devices)
    print(f"[{args.worker_id}] done: {dict(report.outcomes) or 'nothing to do'}", flush=True)
    return 130 if report.stopped else 0


def _status(args) -> int:
    out = Path(args.out)
    if not (out / "runs").is_dir():
        raise SweepError(f"{out}: no runs/ directory. Fix: point at a sweep's --out directory")
    while True:
        st = sweep_status(out, args.stale_after)
        text = format_status(st)
        if args.watch is None or st.done:
            print(text)
            return 0
        print("\033[2J\033[H" + text if sys.stdout.isatty() else text, flush=True)
        time.sleep(args.watch)


def _results(args) -> int:
    print(write_results(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
