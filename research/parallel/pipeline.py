"""Pipeline parallelism in pure jit: the layer stack as [repeats, stages, layers_per_stage], stages vmapped.

The stacked block parameters [L, ...] are viewed as [R, S, K, ...] (L = R S K); layer (r S + s) K + k runs on stage
s. A `lax.scan` over R M + S - 1 ticks feeds microbatch items (repeat r, microbatch m), in the order i = r M + m,
into stage 0; every tick each stage runs its K layers on what it holds (`vmap` over stages, sharded on the
`pipeline` mesh axis by `spmd_axis_name`) and the results roll one stage on (a roll of the stage dimension under a
sharding constraint, which XLA lowers to a collective permute). The last stage's output of item (r, m) becomes
stage 0's input of (r + 1, m) M - S + 1 ticks later (circular) or the output of microbatch m (last repeat).
GPipe is R = 1. Each stage is idle on S - 1 of the R M + S - 1 ticks: bubble (S - 1) / (R M + S - 1).

Storage stays [L, ...] sharded contiguously over `pipeline` (layers -> pipeline), so checkpoints do not depend on
the layout. For GPipe that storage is exactly the stage view. For circular (R > 1) stage s needs the strided layers
{(r S + s) K + k}: the view [S, R, K, ...] is a transpose of the storage, and XLA reshuffles the weights (an
all-to-all over `pipeline`) once per step, and the gradients once back; the tick loop itself moves only activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from research.config import ConfigError, RunConfig
from research.model import Transformer
from research.model.transformer import REMAT_POLICIES, Block

ACT = ("act_batch", "act_seq", "act_embed")  # a microbatch's activations [rows, T, d_model]


@dataclass(frozen=True)
class Pipeline:
    """How the layer stack runs: `stages` pipeline stages, `microbatches` per batch, `repeats` circular passes."""

    stages: int
    microbatches: int
    repeats: int = 1
    schedule: Literal["gpipe", "circular"] = "gpipe"

    def __post_init__(self) -> None:
        for name in ("stages", "microbatches", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"parallel.{_FIELD[name]}={getattr(self, name)}: must be >= 1. Fix: use a positive "
                                  "integer.")
        if self.schedule == "gpipe" and self.repeats != 1:
            raise ConfigError(f"parallel.pipeline_repeats={self.repeats}: repeats apply to the circular schedule "
                              "only. Fix: set parallel.pipeline_schedule=circular, or parallel.pipeline_repeats=1.")
        if self.repeats > 1 and self.microbatches < self.stages:
            raise ConfigError(
                f"parallel.microbatches={self.microbatches}: the circular schedule needs at least as many "
                f"microbatches as stages ({self.stages}), or a microbatch would come back to stage 0 before it is "
                f"free. Fix: set parallel.microbatches >= {self.stages}.")

    @property
    def ticks(self) -> int:
        return self.repeats * self.microbatches + self.stages - 1

    @property
    def bubble(self) -> float:
        """Theoretical idle share of stage-ticks: (S - 1) / (R M + S - 1)."""
        return (self.stages - 1) / self.ticks

    def run_blocks(self, module: nn.Module, x: jnp.ndarray, positions: jnp.ndarray, segments, deterministic: bool):
        """The Transformer `module`'s block stack, run as this pipeline on the scanned stack's own parameters [L, ...]
        (the parameter tree does not depend on the layout). Dropout keys: fold_in(fold_in(key, layer), micro).
        Per-row positions and segments [B, T] go with their rows into the microbatches."""
        cfg = module.cfg
        params = nn.meta.unbox(module.variables["params"]["blocks"])
        dropout = cfg.dropout or (module.adapt is not None and bool(module.adapt.targets) and module.adapt.lora_dropout)
        base = None if deterministic or not dropout else module.make_rng("dropout")
        per_row = [a if a is not None and a.ndim == 2 else None for a in (positions, segments)]
        per_row = [None if a is None else self.microbatched(a) for a in per_row]  # [M, rows, T]

        def layer(p, h, index, micro):  # one Block on one microbatch h [rows, T, d_model]
            rngs = {} if base is None else {"dropout": jax.random.fold_in(jax.random.fold_in(base, index), micro)}
            pos, seg = [whole if rows is None else rows[micro] for whole, rows in zip((positions, segments), per_row)]
            return Block(cfg, deterministic, module.adapt, parent=None).apply({"params": p}, h, pos, seg,
                                                                         rngs=rngs)[0]

        if cfg.remat != "none":
            layer = jax.checkpoint(layer, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False)
        x, busy = self(layer, params, x)
        module.sow("intermediates", "pipeline_busy", busy)  # [ticks, stages] bool, read by the bubble measurement
        return x

    def microbatched(self, x: jnp.ndarray) -> jnp.ndarray:
        """[B, ...] -> [M, B / M, ...]: microbatch m takes rows m, m + M, ... so every data shard feeds every one."""
        if x.shape[0] % self.microbatches:
            raise ConfigError(f"parallel.microbatches={self.microbatches}: does not divide the batch of {x.shape[0]} "
                              "sequences. Fix: choose microbatches dividing batch_size / accum_steps.")
        return x.reshape(x.shape[0] // self.microbatches, self.microbatches, *x.shape[1:]).swapaxes(0, 1)

    def __call__(self, layer_fn: Callable, params, x: jnp.ndarray):
        """(layer stack applied to x, busy [ticks, stages] bool: which stage held real work at which tick).

        layer_fn(layer_params, h, layer, microbatch) -> h applies one layer (global index `layer`, an int32
        scalar) to one microbatch h [rows, T, d]; params: pytree of stacked layer parameters [L, ...]; x [B, T, d].
        """
        S, M, R = self.stages, self.microbatches, self.repeats
        n_layers = jax.tree.leaves(params)[0].shape[0]
        if n_layers % (S * R):
            raise ConfigError(f"parallel.pipeline={S}: x pipeline_repeats={R} does not divide the {n_layers} layers. "
                              "Fix: choose stages (times repeats) dividing model.n_layers.")
        micro = nn.with_logical_constraint(self.microbatched(x), (None, *ACT))  # [M, rows, T, d]
        K, rows = n_layers // (S * R), x.shape[0] // M
        mesh = jax.sharding.get_abstract_mesh()
        spmd = "pipeline" if not mesh.empty and "pipeline" in mesh.axis_names else None
        if spmd is not None:
            shards = mesh.shape["data"] * mesh.shape["fsdp"] if "fsdp" in mesh.axis_names else 1
            if rows % shards:
                raise ConfigError(f"parallel.microbatches={M}: each pipeline microbatch has {rows} sequences, which "
                                  f"the {shards} data-parallel shards cannot split. Fix: use fewer microbatches or "
                                  "a larger batch.")

        def stage_view(p):  # [L, ...] -> [S, R, K, ...]: stage s holds layers (r S + s) K + k
            return _on_stages(p.reshape(R, S, K, *p.shape[1:]).swapaxes(0, 1), spmd)

        stage_params = jax.tree.map(stage_view, params)

        def stage(p, h, item, s):  # one stage, one tick: K layers of repeat item // M on microbatch item % M
            r = jnp.clip(item // M, 0, R - 1)
            layers = jax.tree.map(lambda a: a[r], p)  # [K, ...]

            def layer(h, xs):
                lp, k = xs
                return layer_fn(lp, h, (r * S + s) * K + k, item % M), None

            return jax.lax.scan(layer, h, (layers, jnp.arange(K)))[0]

        run_stages = jax.vmap(stage, spmd_axis_name=spmd)
        stage_ids = jnp.arange(S)

        def tick(carry, t):
            held, valid, item, done = carry  # [S, rows, T, d], [S] bool, [S] int32, [M, rows, T, d]
            # stage 0 takes item t (repeat t // M of microbatch t % M); stage s takes what stage s - 1 made
            first = jnp.where(t // M == 0, micro[t % M], done[t % M])
            held = jnp.where((stage_ids == 0)[:, None, None, None], first[None], jnp.roll(held, 1, axis=0))
            valid = jnp.where(stage_ids == 0, t < R * M, jnp.roll(valid, 1))
            item = jnp.where(stage_ids == 0, t, jnp.roll(item, 1))
            held = _on_stages(run_stages(stage_params, _on_stages(held, spmd, ACT), item, stage_ids), spmd, ACT)
            last = item[S - 1] % M  # the last stage's result: the next repeat's input, or the output
            done = done.at[last].set(jnp.where(valid[S - 1], held[S - 1], done[last]))
            return (held, valid, item, done), valid

        init = (jnp.zeros((S, *micro.shape[1:]), x.dtype), jnp.zeros((S,), bool), jnp.zeros((S,), jnp.int32),
                jnp.zeros_like(micro))
        (_, _, _, done), busy = jax.lax.scan(tick, init, jnp.arange(self.ticks))
        y = done.swapaxes(0, 1).reshape(x.shape)  # back to [B, T, d] in the original row order
        return nn.with_logical_constraint(y, ACT), busy


_FIELD = {"stages": "pipeline", "microbatches": "microbatches", "repeats": "pipeline_repeats"}


def _on_stages(x: jnp.ndarray, spmd: str | None, logical: tuple | None = None) -> jnp.ndarray:
    """Constrain the leading stage dimension to the `pipeline` mesh axis (the rest: `logical`, or left free)."""
    if spmd is None:
        return x
    rest = tuple(nn.logical_to_mesh_axes(logical)) if logical else (PartitionSpec.UNCONSTRAINED,) * (x.ndim - 1)
    return jax.lax.with_sharding_constraint(x, PartitionSpec(spmd, *rest))


def pipeline_for(config: RunConfig) -> Pipeline | None:
    """The pipeline `config.parallel` asks for (None without pipeline parallelism); bad values fail here."""
    p = config.parallel
    if p.pipeline == 1:
        return None
    return Pipeline(stages=p.pipeline, microbatches=p.microbatches, repeats=p.pipeline_repeats,
                    schedule=p.pipeline_schedule)


def model_for(config: RunConfig):
    """The Transformer for this run: the plain scanned stack, or the same parameters run as a pipeline; adapted
    (LoRA, adapters) when adapt.method is not full."""
    adapt = config.adapt if config.adapt.method != "full" else None
    return Transformer(config.model, pipeline=pipeline_for(config), adapt=adapt)
