"""python -m research.train.plan --config CONFIG --devices N [--set k=v ...] [--device-memory 80GB]: will it fit?

Per-device bytes of parameters, optimiser state and activations for the config's layout on N devices, and whether
they fit a device's memory. The real train step is lowered and compiled ahead of time on abstract shapes (nothing
is allocated); parameter and optimiser bytes come from the shardings, activations from the compiled program's
temporary buffers. N may exceed the devices present: the plan then runs in a child process on N simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), because XLA compiles only for devices it has.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import jax

from research.cli import add_debug_flag, entry_point
from research.config import ConfigError, RunConfig
from research.config_files import load_config
from research.parallel.mesh import check_batch_split
from research.parallel.pipeline import pipeline_for
from research.train.setup import setup

_CHILD = "SCALELAB_PLAN_CHILD"
_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}
CPU_CAVEAT = ("activations come from XLA:CPU's buffer assignment: an accelerator compiler fuses, schedules and "
              "rematerialises differently (and uses fused attention, where XLA:CPU materialises [batch, heads, T, T] "
              "scores), so treat them as an estimate; parameter and optimiser bytes are exact")


@dataclass(frozen=True)
class Plan:
    """Bytes per device of one training step's state and working memory."""

    mesh: dict
    pipeline: str
    params: int  # float32 parameters (this device's shards)
    optimizer: int  # optimiser state
    batch: int  # the step's token inputs
    activations: int  # compiled temporaries: activations, gradients, workspace
    compile_s: float
    platform: str

    @property
    def total(self) -> int:
        return self.params + self.optimizer + self.batch + self.activations


def parse_bytes(text: str) -> int:
    """'80GB' (SI), '80GiB' (binary), '8e9' -> bytes; anything else is a ConfigError naming the flag."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?I?B?)\s*", text.upper())
    if not m or m.group(2) not in _UNITS:
        raise ConfigError(f"--device-memory={text}: not a size. Fix: write e.g. 80GB, 80GiB or 8e10.")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _shard_bytes(tree) -> int:
    """Bytes on one device of a pytree of ShapeDtypeStructs with shardings (every shard the same size)."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def check_layout(config: RunConfig, devices: int) -> dict:
    """The mesh's axis sizes; a batch or layout that cannot split fails here, before anything is compiled."""
    shape = config.parallel.mesh_shape(devices)
    pipeline_for(config)  # schedule / microbatch errors
    check_batch_split(config, shape)
    return shape


def plan(config: RunConfig, devices: list) -> Plan:
    """Compile the train step for `config` on `devices` from abstract shapes and read its memory."""
    check_layout(config, len(devices))
    started = time.perf_counter()
    run_setup = setup(config, devices)
    mesh, abstract = run_setup.mesh, run_setup.abstract
    compiled = run_setup.train_step(pad_id=-1)
    memory = compiled.memory_analysis()
    pipe = pipeline_for(config)
    return Plan(mesh=dict(mesh.shape), pipeline="none" if pipe is None else
                f"{pipe.schedule}, {pipe.stages} stages x {pipe.repeats} repeats, {pipe.microbatches} microbatches, "
                f"bubble {pipe.bubble:.1%}",
                params=_shard_bytes(abstract.params), optimizer=_shard_bytes(abstract.opt_state),
                batch=2 * 4 * config.batch_size * config.data.seq_len // (mesh.shape["data"] * mesh.shape["fsdp"]),
                activations=int(memory.temp_size_in_bytes), compile_s=time.perf_counter() - started,
                platform=devices[0].platform)


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} B" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024


def report(config: RunConfig, p: Plan, devices: int, memory: int | None, simulated: bool) -> tuple[str, bool]:
    """The printed plan and whether it fits `memory` bytes per device (True when no memory is given)."""
    lines = [f"layout   {p.mesh} on {devices} devices; pipeline: {p.pipeline}",
             f"step     batch {config.batch_size} x seq {config.data.seq_len}, accum {config.train.accum_steps}, "
             f"{config.model.compute_dtype} compute, remat {config.model.remat}",
             f"{'per device':<40s}{'bytes':>14s}"]
    for name, value in (("parameters (float32)", p.params), ("optimiser state", p.optimizer),
                        ("input batch", p.batch), ("activations + gradients + workspace", p.activations),
                        ("total", p.total)):
        lines.append(f"  {name:<38s}{_fmt(value):>14s}")
    fits = True
    if memory is not None:
        fits = p.total <= memory
        lines.append(f"fits     {'yes' if fits else 'NO'}: {p.total / memory:.1%} of {memory / 1e9:,.3g} GB "
                     f"({_fmt(memory)}) per device")
    where = f"{devices} simulated CPU devices" if simulated else f"{devices} {p.platform} devices"
    lines.append(f"compiled ahead of time on {where} in {p.compile_s:.1f} s (nothing allocated)")
    if p.platform == "cpu":
        lines.append(f"note     {CPU_CAVEAT}")
    return "\n".join(lines), fits


def simulate_devices(module: str, argv: list[str], devices: int) -> int:
    """Rerun `python -m module argv` in a child process that sees `devices` simulated CPU devices (the flag must be
    set before JAX starts, so it cannot be changed in this process)."""
    if os.environ.get(_CHILD):  # already the child: the flag did not take
        raise ConfigError(f"--devices={devices}: only {jax.device_count()} devices could be simulated. Fix: use "
                          "fewer devices, or run on a host that has them.")
    env = dict(os.environ, JAX_PLATFORMS="cpu", **{_CHILD: "1"})
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    return subprocess.run([sys.executable, "-m", module, *argv], env=env).returncode


@entry_point
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m research.train.plan", description=__doc__)
    parser.add_argument("--config", required=True, help="a preset, config file or run directory")
    parser.add_argument("--devices", type=int, required=True, help="device count of the layout to plan")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device-memory", default=None, help="memory per device, e.g. 80GB or 80GiB")
    args = add_debug_flag(parser).parse_args(argv)

    if args.devices < 1:
        raise ConfigError(f"--devices={args.devices}: must be >= 1. Fix: pass the cluster's device count.")
    memory = None if args.device_memory is None else parse_bytes(args.device_memory)
    config = load_config(args.config, args.overrides)
    check_layout(config, args.devices)  # before any compile or child process
    if jax.device_count() < args.devices:
        return simulate_devices("research.train.plan", argv, args.devices)
    result = plan(config, jax.devices()[:args.devices])
    text, fits = report(config, result, args.devices, memory, simulated=bool(os.environ.get(_CHILD)))
    print(text)
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
