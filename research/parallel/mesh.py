"""Build the device mesh from a `ParallelConfig` and derive shardings from logical axis names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from research.config import ConfigError, ParallelConfig, RunConfig
from research.parallel.rules import LOGICAL_AXIS_RULES, MESH_AXES


def make_mesh(cfg: ParallelConfig, devices: list | None = None) -> Mesh:
    """A Mesh with axes (data, pipeline, fsdp, tensor); a size mismatch is a ConfigError before any compile."""
    devices = jax.devices() if devices is None else devices
    shape = cfg.mesh_shape(len(devices))
    sizes = tuple(shape[a] for a in MESH_AXES)
    try:
        grid = mesh_utils.create_device_mesh(sizes, devices=devices)
    except (AssertionError, ValueError, NotImplementedError):
        grid = np.asarray(devices).reshape(sizes)
    return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


@contextlib.contextmanager
def activate(mesh: Mesh) -> Iterator[None]:
    """Mesh and logical rules in scope, so the model's activation constraints resolve while tracing."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        yield


def logical_to_sharding(logical_specs, mesh: Mesh, shapes=None):
    """Map a pytree of logical PartitionSpecs to NamedShardings on `mesh`.

    With `shapes` (a matching pytree of arrays or ShapeDtypeStructs), a dimension that its mesh axes do not divide
    evenly (a 259-token byte vocabulary over tensor=2, say) stays replicated along that dimension.
    """
    shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, LOGICAL_AXIS_RULES)
    if shapes is None:
        return shardings
    # optax leaves a MaskedNode (an empty subtree) where an optimiser holds no state for a frozen parameter
    return jax.tree.map(lambda x, s: x if isinstance(x, optax.MaskedNode) else
                        NamedSharding(mesh, fit_spec(s.spec, x.shape, dict(mesh.shape))),
                        shapes, shardings, is_leaf=lambda x: isinstance(x, optax.MaskedNode))


def fit_spec(spec: PartitionSpec, shape: tuple, axis_sizes: dict[str, int]) -> PartitionSpec:
    """`spec` with every dimension its mesh axes do not divide evenly left unsharded."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        fitted.append(axes if dim % axes_size(axes, axis_sizes) == 0 else None)
    return PartitionSpec(*fitted)


def axes_size(axes, axis_sizes: dict[str, int]) -> int:
    """Number of shards along one PartitionSpec entry (None, an axis name, or a tuple of names)."""
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return int(np.prod([axis_sizes[a] for a in names])) if names else 1


def batch_sharding(mesh: Mesh, stacked: bool = False) -> NamedSharding:
    """Token batches [batch, T] (stacked: [steps, batch, T]): rows over data x fsdp, replicated elsewhere."""
    rows = PartitionSpec(("data", "fsdp"), None)
    return NamedSharding(mesh, PartitionSpec(None, *rows) if stacked else rows)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_split(config: RunConfig, shape: dict, processes: int = 1) -> None:
    """ConfigError unless every microbatch (of accumulation, and of the pipeline) splits over data x fsdp of the mesh
    `shape` and the global batch over the processes: checked before anything is read or compiled."""
    rows = config.batch_size // config.train.accum_steps
    dp = shape["data"] * shape["fsdp"]
    if rows % dp:
        raise ConfigError(
            f"train.batch_size={config.batch_size}: each microbatch has {rows} sequences, which the "
            f"{dp} data-parallel shards (parallel.data x parallel.fsdp) cannot split evenly. Fix: use a batch "
            f"divisible by {dp * config.train.accum_steps}, or change parallel.data / parallel.fsdp.")
    micro = config.parallel.microbatches if config.parallel.pipeline > 1 else 1
    if (rows // micro) % dp:
        raise ConfigError(
            f"train.batch_size={config.batch_size}, parallel.microbatches={micro}: each pipeline microbatch has "
            f"{rows // micro} sequences, which the {dp} data-parallel shards cannot split evenly. Fix: use a batch "
            f"divisible by {dp * micro * config.train.accum_steps}, fewer microbatches, or smaller parallel.data / "
            "parallel.fsdp.")
    if processes > 1 and config.batch_size % processes:
        raise ConfigError(f"train.batch_size={config.batch_size} does not split over {processes} processes. Fix: "
                          "use a multiple of the process count.")
