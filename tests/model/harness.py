"""Shared test plumbing: tiny configs, randomised parameters, and one jitted forward per config (compiled once)."""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.config import ModelConfig
from research.model.transformer import Transformer
from research.train.compile_cache import FAST_COMPILE_OPTIONS

VOCAB = 37
SEQ = 12


def tiny(**overrides) -> ModelConfig:
    """A 2-layer, d_model 16 model; every test shape starts here."""
    base = dict(vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=16, d_ff=24)
    return ModelConfig(**(base | overrides))


def randomize(params: dict, cfg: ModelConfig, seed: int = 0) -> dict:
    """Replace every leaf (zero biases and unit norm scales included) so that no term can hide.

    Matrices get std 1/sqrt(fan_in) (so attention is far from uniform), embeddings std 1, norm scales 1 +- 0.2,
    biases std 0.2.
    """
    rng = np.random.default_rng(seed)
    fan_in = {"wq": cfg.d_model, "wk": cfg.d_model, "wv": cfg.d_model, "wo": cfg.n_heads * cfg.resolved().head_dim,
              "w_in": cfg.d_model, "w_gate": cfg.d_model, "w_out": cfg.resolved().d_ff, "lm_head": cfg.d_model,
              "embedding": 1, "pos_embedding": 1}

    def leaf(path, x):
        name = path[-1].key
        noise = rng.standard_normal(x.shape)
        if name == "scale":
            value = 1.0 + 0.2 * noise
        elif name in fan_in:
            value = noise / np.sqrt(fan_in[name])
        else:
            assert name == "bias" or name.startswith("b"), name
            value = 0.2 * noise
        return jnp.asarray(value, dtype=x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, params)


def abstract_params(module: nn.Module, *args) -> dict:
    """The unboxed params tree of `module.init(key, *args)` as shapes only: nothing is compiled or allocated.

    (A real `init` compiles the whole forward pass once more per config; the tests fill parameters themselves.)
    """
    return nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), *args))["params"]


# Cheaper CPU code generation: compiling the tiny models dominates this suite's time, and these options cut it ~4x
# without changing the program (same HLO; results agree with default compilation to float32 rounding).
FAST_CPU_COMPILE = FAST_COMPILE_OPTIONS


class fast_jit:  # noqa: N801 (used like jax.jit)
    """`jax.jit(fn)`, compiled once per argument shapes with `FAST_CPU_COMPILE` on CPU (default options elsewhere)."""

    def __init__(self, fn):
        self._jitted, self._compiled = jax.jit(fn), {}

    def __call__(self, *args):
        leaves, treedef = jax.tree.flatten(args)
        key = (treedef, tuple((jnp.shape(x), jax.typeof(x).dtype) for x in leaves))
        if key not in self._compiled:
            options = FAST_CPU_COMPILE if jax.default_backend() == "cpu" else {}
            self._compiled[key] = self._jitted.lower(*args).compile(options)
        return self._compiled[key](*args)


@functools.cache
def model(cfg: ModelConfig):
    """(randomised params, jitted forward(params, tokens)) for `cfg`, built once per config per session."""
    params = randomize(abstract_params(Transformer(cfg), jnp.zeros((1, SEQ), jnp.int32)), cfg)
    forward = fast_jit(lambda p, tokens: Transformer(cfg).apply({"params": p}, tokens))
    return params, forward


def tokens(seed: int = 0, batch: int = 2, length: int = SEQ) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(batch, length)).astype(np.int32)


def replace(cfg: ModelConfig, **changes) -> ModelConfig:
    return dataclasses.replace(cfg, **changes)
