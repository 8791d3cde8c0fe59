"""python -m research.parallel.audit CONFIG [--devices N] [--set k=v ...]: where every parameter lives.

Prints each parameter's logical axes, PartitionSpec and bytes per device for the config's layout on N devices
(computed from shapes alone: nothing is allocated, N may exceed the devices present), and exits 1 when more than
--max-replicated of the parameter bytes are replicated on every device although the layout shards parameters.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.cli import add_debug_flag, entry_point
from research.config import RunConfig
from research.config_files import load_config
from research.model import Transformer
from research.parallel.mesh import axes_size, fit_spec
from research.parallel.rules import LOGICAL_AXIS_RULES


@dataclass(frozen=True)
class ParamPlacement:
    path: str
    shape: tuple
    logical: tuple
    spec: tuple
    bytes_total: int
    bytes_per_device: int

    @property
    def replicated(self) -> bool:
        """Whole on every device: no mesh axis of size > 1 splits it."""
        return self.bytes_per_device == self.bytes_total


def audit(config: RunConfig, devices: int) -> list[ParamPlacement]:
    """Placement of every parameter (float32) under `config.parallel` on `devices` devices."""
    axis_sizes = config.parallel.mesh_shape(devices)
    model = Transformer(config.model)
    boxed = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, config.data.seq_len), jnp.int32))["params"]
    logical = nn.get_partition_spec(boxed)
    shapes = nn.meta.unbox(boxed)
    out = []
    for (path, spec), shape in zip(jax.tree_util.tree_flatten_with_path(logical)[0], jax.tree.leaves(shapes)):
        mesh_spec = fit_spec(nn.logical_to_mesh_axes(spec, LOGICAL_AXIS_RULES), shape.shape, axis_sizes)
        total = math.prod(shape.shape) * shape.dtype.itemsize
        shards = math.prod(axes_size(a, axis_sizes) for a in mesh_spec)
        out.append(ParamPlacement(jax.tree_util.keystr(path), shape.shape, tuple(spec), tuple(mesh_spec), total,
                                  total // shards))
    return out


def replicated_share(placements: list[ParamPlacement]) -> float:
    return sum(p.bytes_total for p in placements if p.replicated) / sum(p.bytes_total for p in placements)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1024


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.parallel.audit", description=__doc__)
    parser.add_argument("config", help="a config file, run directory or preset")
    parser.add_argument("--devices", type=int, default=None, help="device count (default: the devices present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-replicated", type=float, default=0.05,
                        help="largest acceptable share of parameter bytes replicated on every device")
    args = add_debug_flag(parser).parse_args(argv)

    config = load_config(args.config, args.overrides)
    devices = args.devices or jax.device_count()
    placements = audit(config, devices)
    mesh = config.parallel.mesh_shape(devices)
    print(f"layout {mesh} on {devices} devices")
    width = max(len(p.path) for p in placements)
    for p in placements:
        spec = ", ".join(str(a) for a in p.spec)
        print(f"{p.path:{width}s}  {str(p.shape):22s}  P({spec}){'':4s}{_fmt_bytes(p.bytes_per_device):>12s}/device")
    total = sum(p.bytes_total for p in placements)
    per_device = sum(p.bytes_per_device for p in placements)
    share = replicated_share(placements)
    print(f"parameters: {_fmt_bytes(total)} in all, {_fmt_bytes(per_device)} per device "
          f"({per_device / total:.1%}); replicated on every device: {share:.1%} of bytes")
    shards_params = mesh["fsdp"] * mesh["tensor"] * mesh["pipeline"] > 1
    if shards_params and share > args.max_replicated:
        print(f"FAIL: {share:.1%} of parameter bytes are replicated (limit {args.max_replicated:.0%}). Fix: shard the "
              "replicated axes (see research/parallel/rules.py) or raise --max-replicated.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
