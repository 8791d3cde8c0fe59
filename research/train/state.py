"""Train state (step, params, optimiser state) initialised directly into its shardings: nothing is ever whole."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from research.config import RunConfig
from research.model import Transformer
from research.parallel import activate, logical_to_sharding
from research.train.compile_cache import INIT_CPU_COMPILER_OPTIONS, compile_lowered
from research.train.executables import ExecutableCache, compile_key


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any


def _boxed_state(model: Transformer, tx: optax.GradientTransformation, rng: jax.Array, seq_len: int) -> TrainState:
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    params = model.init(rng, tokens)["params"]  # boxed: nn.Partitioned leaves carry logical axis names
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


_SHARDINGS = ExecutableCache(capacity=16)  # (abstract state, shardings)
_INITS = ExecutableCache()  # compiled init: later runs of the same shapes reuse it


def state_shardings(config: RunConfig, model: Transformer, tx: optax.GradientTransformation, mesh: Mesh):
    """(abstract unboxed state, its NamedShardings), from shapes alone (traced once per shape key)."""

    def build():
        with activate(mesh):
            boxed = jax.eval_shape(lambda r: _boxed_state(model, tx, r, config.data.seq_len), jax.random.key(0))
        unboxed = nn.meta.unbox(boxed)
        shardings = logical_to_sharding(nn.get_partition_spec(boxed), mesh, unboxed)
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), unboxed, shardings)
        return abstract, shardings

    built = (type(model).__name__, model.cfg, getattr(model, "pipeline", None))  # what the caller really built
    return _SHARDINGS.get(compile_key(config, mesh, model=built), build)


def compiled_init(config: RunConfig, model: Transformer, tx: optax.GradientTransformation, mesh: Mesh, shardings):
    """init(rng) -> unboxed TrainState, compiled ahead of time with output shardings, shared by equal shapes.

    The seed is an input, so runs that differ in seed, length or schedule share one compiled init.
    """

    def build():
        def init(rng):
            return nn.meta.unbox(_boxed_state(model, tx, rng, config.data.seq_len))

        with activate(mesh):
            lowered = jax.jit(init, out_shardings=shardings).lower(jax.random.key(0))
            return compile_lowered(lowered, mesh.devices.flat[0].platform, INIT_CPU_COMPILER_OPTIONS)

    return _INITS.get(compile_key(config, mesh), build)


def init_state(config: RunConfig, model: Transformer, tx: optax.GradientTransformation, mesh: Mesh, shardings):
    """Initialise with output shardings: each device creates only its own shard (values independent of mesh)."""
    return compiled_init(config, model, tx, mesh, shardings)(jax.random.key(config.seed))
