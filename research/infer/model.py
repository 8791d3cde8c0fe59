"""A model ready to serve: its config, its parameters laid out on a mesh by the training rules, and the jitted
prefill and decode-step functions that fill and extend a preallocated KV cache.

Inference uses the training mesh and logical-axis table (research.parallel), so a tensor-parallel model decodes with
its heads split; the cache is constrained to ("layers", "act_batch", -, "kv_heads", -) and holds only the KV heads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from research.config import ConfigError, ModelConfig, ParallelConfig
from research.model.transformer import KVCache, Transformer
from research.parallel import activate, logical_to_sharding, make_mesh

CACHE_AXES = KVCache(k=PartitionSpec("layers", "act_batch", None, "kv_heads", None),
                     v=PartitionSpec("layers", "act_batch", None, "kv_heads", None),
                     positions=PartitionSpec("act_batch", None), index=PartitionSpec())


def check_decodable(cfg: ModelConfig) -> None:
    """Autoregressive decoding needs a causal model: a bidirectional one sees tokens it is asked to predict."""
    if not cfg.causal:
        raise ConfigError("model.causal=False: a bidirectional model cannot generate token by token. "
                          "Fix: generate with a causal model (model.causal=true).")


def param_shardings(cfg: ModelConfig, mesh: Mesh, adapt=None):
    """NamedShardings of the unboxed parameter tree, from the parameters' logical axes (as training lays them out)."""
    with activate(mesh):
        boxed = jax.eval_shape(Transformer(cfg, adapt=adapt).init, jax.random.key(0),
                               jnp.zeros((1, 1), jnp.int32))["params"]
    return logical_to_sharding(nn.get_partition_spec(boxed), mesh, nn.meta.unbox(boxed))


def cache_shardings(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int) -> KVCache:
    """NamedShardings of a [batch, max_len] cache; a dimension the mesh does not divide stays replicated."""
    shapes = jax.eval_shape(lambda: KVCache.empty(cfg, batch, max_len))
    return logical_to_sharding(CACHE_AXES, mesh, shapes)


def empty_cache(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int) -> KVCache:
    """An empty cache inside a jitted function, constrained to its sharding."""
    return jax.lax.with_sharding_constraint(KVCache.empty(cfg, batch, max_len),
                                            cache_shardings(cfg, mesh, batch, max_len))


@dataclasses.dataclass(frozen=True, eq=False)
class InferenceModel:
    """Config + parameters on a mesh; `jitted` compiles each inference function once per shape and reuses it."""

    cfg: ModelConfig
    params: Any  # unboxed parameter tree, laid out by param_shardings(cfg, mesh)
    mesh: Mesh
    compiler_options: dict | None = None  # XLA options for every compile (tests use cheaper CPU code generation)
    adapt: Any = None  # research.config.AdaptConfig of a model that runs with its adapters, or None
    _fns: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, cfg: ModelConfig, params: Any, mesh: Mesh | None = None,
               compiler_options: dict | None = None, adapt=None) -> InferenceModel:
        """Lay `params` (e.g. a checkpoint's or a test's) out on `mesh` (default: the first device)."""
        check_decodable(cfg)
        mesh = make_mesh(ParallelConfig(data=1), jax.devices()[:1]) if mesh is None else mesh
        return cls(cfg, jax.device_put(params, param_shardings(cfg, mesh, adapt)), mesh, compiler_options, adapt)

    @property
    def module(self) -> Transformer:
        return Transformer(self.cfg, adapt=self.adapt)

    def jitted(self, key: tuple, build: Callable[[], Callable]) -> Callable:
        """The function `build()` returns, compiled once per `key` (its static shapes) and called under the mesh."""
        if key not in self._fns:
            fn, compiled = jax.jit(build()), []

            def call(*args):
                with activate(self.mesh):
                    if not compiled:
                        compiled.append(fn.lower(*args).compile(self.compiler_options))
                    return compiled[0](*args)

            self._fns[key] = call
        return self._fns[key]

    def apply(self, params, tokens, positions=None, cache: KVCache | None = None):
        """The model itself: logits [batch, T, vocab] (and the updated cache when given one)."""
        return self.module.apply({"params": params}, tokens, positions, cache=cache)

    @property
    def virtual_tokens(self) -> int:
        """Context positions a prompt- or prefix-tuned model's virtual tokens take before every sequence (else 0)."""
        return 0 if self.adapt is None else self.adapt.virtual

    def new_cache(self, params, batch: int, max_len: int) -> KVCache:
        """An empty cache for `max_len` tokens per row, made inside a jitted function. A prompt-tuned model's soft
        prompt is run into its first slots; a prefix-tuned model's prefix keys and values are written there."""
        n = self.virtual_tokens
        cache = empty_cache(self.cfg, self.mesh, batch, max_len + n)
        if n and self.adapt.method == "prompt_tuning":
            _, cache = self.module.apply({"params": params}, jnp.zeros((batch, 0), jnp.int32), cache=cache,
                                         prime_prompt=True)
        elif n:
            attn = params["blocks"]["attn"]  # prefix_k, prefix_v: [layers, k, kv_heads, head_dim]
            k, v = (jnp.broadcast_to(attn[f"prefix_{x}"][:, None], (cache.k.shape[0], batch) + attn[f"prefix_{x}"]
                                     .shape[1:]).astype(cache.k.dtype) for x in "kv")
            cache = KVCache(k=cache.k.at[:, :, :n].set(k), v=cache.v.at[:, :, :n].set(v),
                            positions=cache.positions.at[:, :n].set(jnp.arange(n, dtype=jnp.int32)),
                            index=jnp.asarray(n, jnp.int32))
        return cache

    def prefill(self, tokens, positions, max_len: int):
        """Run prompts [batch, T] (positions [batch, T], -1 = left padding) into a new cache of `max_len` slots.

        Returns (logits [batch, T, vocab], cache).
        """
        batch, length = tokens.shape

        def build():
            def prefill(params, tokens, positions):
                cache = self.new_cache(params, batch, max_len)
                logits, cache = self.apply(params, tokens, positions, cache)
                return logits, jax.lax.with_sharding_constraint(cache, cache_shardings(self.cfg, self.mesh,
                                                                                       batch, cache.k.shape[2]))
            return prefill

        return self.jitted(("prefill", batch, length, max_len), build)(self.params, tokens, positions)

    def decode_step(self, cache: KVCache, tokens, positions):
        """Feed tokens [batch, T] (usually T = 1) at positions [batch, T]: (logits [batch, T, vocab], new cache)."""
        batch, length = tokens.shape
        max_len = cache.k.shape[2]

        def build():
            shardings = cache_shardings(self.cfg, self.mesh, batch, max_len)

            def step(params, cache, tokens, positions):
                logits, cache = self.apply(params, tokens, positions, cache)
                return logits, jax.lax.with_sharding_constraint(cache, shardings)
            return step

        return self.jitted(("step", batch, length, max_len), build)(self.params, cache, tokens, positions)
