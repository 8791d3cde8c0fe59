"""python -m experiments list|run|report: named architecture ablations, run as sweeps, reported with seed statistics.

  list                                            every experiment: variants, runs and estimated time per scale
  run NAME --out OUT [--executor local|slurm] [--seeds K] [--scale tiny|chinchilla|small]
                                                  train what is missing; resumable
  report OUT                                      OUT/report.md, table.csv/json and curves.png
"""

from __future__ import annotations

import argparse
import sys
import time

from experiments.ablations import NAMES, build
from experiments.ablations.scales import SCALES
from experiments.report import write_report
from experiments.run import RunOptions, run_experiment
from research.cli import add_debug_flag, entry_point
from sweeps.estimate import fmt_duration
from sweeps.expansion import expand
from sweeps.spec import Resources
from sweeps.tables import render


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="the experiments, their variants, run counts and estimated times")
    s.add_argument("--seeds", type=int, default=3)
    s = sub.add_parser("run", help="run an experiment (skips finished runs, resumes interrupted ones)")
    s.add_argument("name")
    s.add_argument("--out", required=True, help="output directory (one experiment per directory)")
    s.add_argument("--executor", choices=("local", "slurm"), default="local")
    s.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 for every variant (default 3)")
    s.add_argument("--scale", default="tiny", help=f"one of {', '.join(SCALES)} (default tiny)")
    s.add_argument("--workers", type=int, default=1, help="local: worker processes; slurm: array tasks")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the scale's base config, e.g. --set train.steps=50")
    s.add_argument("--partition", help="Slurm partition")
    s.add_argument("--time", type=int, dest="time_min", default=60, help="Slurm time limit per worker, minutes")
    s.add_argument("--gpus-per-task", type=int, default=0)
    s.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    s = sub.add_parser("report", help="write OUT/report.md, table.csv, table.json and curves.png")
    s.add_argument("out")
    return p


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = add_debug_flag(_parser()).parse_args(argv)
    return {"list": _list, "run": _run, "report": _report}[args.command](args)


def _list(args) -> int:
    rows = []
    for name in NAMES:
        cells = []
        for scale in SCALES.values():
            ablation, base = build(name, scale.name)
            runs = expand(ablation.sweep(base, args.seeds, scale.name)).runs
            seconds = sum(scale.estimator.seconds(r.config.num_steps, r.flops) for r in runs)
            cells += [len(runs), fmt_duration(seconds)]
        variants = ", ".join(v.name + ("*" if v.name == ablation.baseline else "") for v in ablation.variants)
        axes = "".join(f" x {a.tag} {list(a.values)}" for a in build(name, "tiny")[0].axes)
        rows.append([name, variants + axes, *cells, ablation.description])
    head = ["name", "variants (*baseline) x extra axes (tiny)"]
    for scale in SCALES:
        head += [f"runs {scale}", f"est {scale} (CPU)"]
    print(render(head + ["description"], rows, right={2, 3, 4, 5}))
    print(f"\n{args.seeds} seeds each. Estimated time: one worker on the project's 2-core CPU, idle (per-run "
          "overhead and step rate measured with the tiny runs); small is meant for a GPU or a Slurm partition.")
    for scale in SCALES.values():
        b = scale.base
        print(f"{scale.name}: {scale.description}; d_model {b.model.d_model}, {b.model.n_layers} layers, "
              f"{b.model.n_heads} heads, seq {b.data.seq_len}, batch {b.batch_size}, {b.num_steps} steps")
    return 0


def _run(args) -> int:
    started = time.perf_counter()
    resources = Resources(partition=args.partition, time_min=args.time_min, gpus_per_task=args.gpus_per_task)
    options = RunOptions(scale=args.scale, seeds=args.seeds, executor=args.executor, workers=args.workers,
                         overrides=tuple(args.overrides), resources=resources, progress=False)
    if args.seeds < 3:
        print(f"note: --seeds {args.seeds}: the report's confidence intervals and tests want 3 or more", flush=True)
    result = run_experiment(args.name, args.out, options, log=lambda line: print(line, flush=True))
    print(f"{args.name}: {result['runs']} runs, {result['states']}; wall time {time.perf_counter() - started:.1f}s",
          flush=True)
    if not args.no_report:
        paths = write_report(args.out)
        print(f"report: {paths['report']}  curves: {paths['curves']}")
    return 0 if set(result["states"]) <= {"complete", "diverged"} else 1


def _report(args) -> int:
    paths = write_report(args.out)
    print(paths["report"].read_text())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
