"""python -m research.train --config PATH_OR_PRESET --workdir DIR [--set key=value ...]"""

from __future__ import annotations

import argparse
import sys

from research.cli import add_debug_flag, entry_point
from research.config_files import load_config

EXIT_CODES = {"complete": 0, "diverged": 3, "interrupted": 130}


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.train", description=__doc__)
    parser.add_argument("--config", required=True,
                        help="a Python file defining config(), an earlier run's config.json or workdir, or a preset")
    parser.add_argument("--workdir", required=True, help="where config.json, metrics, checkpoints and summary go")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. --set model.d_model=256 --set optim.lr=3e-3 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    group = parser.add_argument_group("multi-process (auto-detected under Slurm)")
    group.add_argument("--coordinator", help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int)
    group.add_argument("--process-id", type=int)
    group.add_argument("--local-cpu-devices", type=int, help="simulated CPU devices per process (testing)")
    args = add_debug_flag(parser).parse_args(argv)
    config = load_config(args.config, args.overrides)
    from research.parallel.distributed import initialize  # before anything touches JAX's backends

    initialize(args.coordinator, args.num_processes, args.process_id, args.local_cpu_devices)
    from research.train import run  # heavy imports after the config is known to be valid
    from research.train.compile_cache import enable_compilation_cache

    enable_compilation_cache()

    summary = run(config, args.workdir, progress=not args.quiet)
    print(f"run {summary.run_id}: {summary.status} at step {summary.step}/{summary.steps}; "
          f"train loss {_fmt(summary.final_train_loss)}, eval loss {_fmt(summary.final_eval_loss)}, "
          f"{summary.tokens_per_s:,.0f} tok/s, MFU {summary.mfu:.1%}")
    if summary.status == "diverged":
        print(f"diverged at step {summary.diverged_at_step}; last good checkpoint: {summary.last_good_checkpoint}")
    print(f"outputs: {args.workdir}/  (config.json, metrics.jsonl, summary.json, checkpoints/)")
    return EXIT_CODES[summary.status]


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


if __name__ == "__main__":
    sys.exit(main())
