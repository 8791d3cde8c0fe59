"""A decoder-only transformer in Flax Linen, every ablation axis a `ModelConfig` field.

Reads top to bottom: norms, attention, MLP, block, the stacked model. Parameters are float32 and carry logical axis
names (research.parallel.rules maps them to mesh axes); activations are constrained only at block boundaries.
Layers are stacked with `nn.scan`, so compile time does not grow with depth, and stored as `[layers, ...]`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from research.config import ModelConfig
from research.model.attention import attend
from research.model.kernels import kernels
from research.model.positions import apply_rope, sinusoidal_table

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _param(module: nn.Module, name: str, shape: tuple, axes: tuple, init) -> jnp.ndarray:
    """A float32 parameter annotated with logical axis names."""
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def _constrain(x: jnp.ndarray, axes: tuple) -> jnp.ndarray:
    return nn.with_logical_constraint(x, axes)


def _matrix_init(cfg: ModelConfig, residual_out: bool = False):
    std = cfg.init_std / (2 * cfg.n_layers) ** 0.5 if residual_out and cfg.scaled_residual_init else cfg.init_std
    return nn.initializers.normal(stddev=std)


def _adapted(module: nn.Module, target: str, x, w, axes: tuple, contract: int, dense, adapt) -> jnp.ndarray:
    """x · w, plus LoRA's low-rank update (alpha / rank) (x · A) · B when `target` is one of LoRA's targets.

    w: [*in, *out] with logical axes `axes`; A: [*in, rank] (random), B: [rank, *out] (zero): a new adapter leaves
    the model as it was."""
    y = dense(x, w, contract)
    if adapt is None or target not in adapt.targets:
        return y
    in_shape, out_shape = w.shape[:contract], w.shape[contract:]
    fan_in = math.prod(in_shape)
    a = _param(module, f"lora_a_{target}", (*in_shape, adapt.lora_rank), (*axes[:contract], None),
               nn.initializers.normal(stddev=fan_in ** -0.5))
    b = _param(module, f"lora_b_{target}", (adapt.lora_rank, *out_shape), (None, *axes[contract:]),
               nn.initializers.zeros)
    h = nn.Dropout(adapt.lora_dropout, deterministic=module.deterministic)(x) if adapt.lora_dropout else x
    low = dense(dense(h, a.astype(x.dtype), contract), b.astype(x.dtype))  # [..., *out] through [..., rank]
    return y + (adapt.lora_alpha / adapt.lora_rank) * low


class Adapter(nn.Module):
    """Bottleneck gelu(h W_down + b_down) W_up + b_up [..., d_model] (ADAPT-4); W_up and b_up start at zero, so a new
    adapter adds nothing. Serial (Houlsby) adds it to the sublayer's output, parallel (He et al.) to its input."""

    cfg: ModelConfig
    size: int

    @nn.compact
    def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
        d, dense = self.cfg.d_model, kernels(self.cfg).dense
        w_down = _param(self, "w_down", (d, self.size), ("embed", None), nn.initializers.normal(stddev=d ** -0.5))
        b_down = _param(self, "b_down", (self.size,), (None,), nn.initializers.zeros)
        w_up = _param(self, "w_up", (self.size, d), (None, "embed"), nn.initializers.zeros)
        b_up = _param(self, "b_up", (d,), ("embed",), nn.initializers.zeros)
        z = kernels(self.cfg).gelu(dense(h, w_down.astype(h.dtype)) + b_down.astype(h.dtype))  # [..., size]
        return dense(z, w_up.astype(h.dtype)) + b_up.astype(h.dtype)


def _with_adapter(module: nn.Module, place: str, sublayer, h: jnp.ndarray):
    """sublayer(h), with the block's adapter for `place` (attn, mlp) after it (serial) or beside it (parallel)."""
    adapt = module.adapt
    if adapt is None or place not in adapt.places:
        return sublayer(h)
    adapter = Adapter(module.cfg, adapt.adapter_size, name=f"adapter_{place}")
    out = sublayer(h)
    y, rest = out if isinstance(out, tuple) else (out, None)
    if adapt.method == "adapter_serial":
        y = y + adapter(y)
    else:
        y = y + adapt.adapter_scale * adapter(h)
    return (y, rest) if isinstance(out, tuple) else y


class Norm(nn.Module):
    """LayerNorm (x - mean) / std * g + b, or RMSNorm x / rms(x) * g; computed in float32."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        cfg = self.cfg
        scale = _param(self, "scale", (cfg.d_model,), ("embed",), nn.initializers.ones)
        xf = x.astype(jnp.float32)
        if cfg.norm == "rmsnorm":
            y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + cfg.norm_eps)
        else:
            mean = jnp.mean(xf, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
            y = (xf - mean) * jax.lax.rsqrt(var + cfg.norm_eps)
        y = y * scale
        if cfg.norm == "layernorm" and cfg.use_bias:
            y = y + _param(self, "bias", (cfg.d_model,), ("embed",), nn.initializers.zeros)
        return y.astype(x.dtype)


@flax.struct.dataclass
class KVCache:
    """Every layer's keys and values in `max_len` preallocated slots, so decoding attends to the prefix without
    recomputing it. Slot s of row b holds the token at position positions[b, s]; -1 marks an empty or padding slot."""

    k: jnp.ndarray  # [layers, batch, max_len, kv_heads, head_dim] (only the KV heads: GQA/MQA caches are smaller)
    v: jnp.ndarray  # [layers, batch, max_len, kv_heads, head_dim]
    positions: jnp.ndarray  # [batch, max_len] int32
    index: jnp.ndarray  # int32 scalar: the next slot to write

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, max_len: int) -> KVCache:
        cfg = cfg.resolved()
        shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
        dtype = DTYPES[cfg.compute_dtype]
        return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                   positions=jnp.full((batch, max_len), -1, jnp.int32), index=jnp.zeros((), jnp.int32))


class Attention(nn.Module):
    """Multi-head attention with n_kv_heads key/value heads (MHA = n_heads, GQA in between, MQA = 1).

    With a cache (this layer's (k, v) [batch, max_len, kv_heads, head_dim]; slots: (the cache's slot positions
    [batch, max_len] with this chunk already written, the write index)), the chunk's keys and values are written at
    the index, the queries attend over every filled slot, and the result is (y, updated (k, v)).
    """

    cfg: ModelConfig
    adapt: Any = None  # research.config.AdaptConfig of an adapted model (LoRA on its targets), or None
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, positions: jnp.ndarray, cache=None, slots=None, segments=None):
        cfg, dtype, dense = self.cfg.resolved(), DTYPES[self.cfg.compute_dtype], kernels(self.cfg).dense

        def project(target, x, w, axes, contract=1):
            return _adapted(self, target, x, w.astype(dtype), axes, contract, dense, self.adapt)

        d, h, kv, hd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        wq = _param(self, "wq", (d, h, hd), ("embed", "heads", "head_dim"), _matrix_init(cfg))
        wk = _param(self, "wk", (d, kv, hd), ("embed", "kv_heads", "head_dim"), _matrix_init(cfg))
        wv = _param(self, "wv", (d, kv, hd), ("embed", "kv_heads", "head_dim"), _matrix_init(cfg))
        wo = _param(self, "wo", (h, hd, d), ("heads", "head_dim", "embed"), _matrix_init(cfg, residual_out=True))
        q = project("q", x, wq, ("embed", "heads", "head_dim"))  # [batch, T, heads, head_dim]
        k = project("k", x, wk, ("embed", "kv_heads", "head_dim"))  # [batch, T, kv_heads, head_dim]
        v = project("v", x, wv, ("embed", "kv_heads", "head_dim"))
        if cfg.use_bias or cfg.qkv_bias:
            q = q + _param(self, "bq", (h, hd), ("heads", "head_dim"), nn.initializers.zeros).astype(dtype)
            k = k + _param(self, "bk", (kv, hd), ("kv_heads", "head_dim"), nn.initializers.zeros).astype(dtype)
            v = v + _param(self, "bv", (kv, hd), ("kv_heads", "head_dim"), nn.initializers.zeros).astype(dtype)
        if cfg.positions == "rope":
            q, k = apply_rope(q, positions, cfg.rope_base), apply_rope(k, positions, cfg.rope_base)
        n_prefix = self.adapt.virtual if self.adapt is not None and self.adapt.method == "prefix_tuning" else 0
        if n_prefix:  # learned keys and values at positions 0..k-1 (the keys as if already rotated), the tokens after
            prefix = [_param(self, f"prefix_{name}", (n_prefix, kv, hd), (None, "kv_heads", "head_dim"),
                             nn.initializers.normal(0.02)) for name in "kv"]
        if cache is None and n_prefix:
            k, v = (jnp.concatenate([jnp.broadcast_to(p.astype(dtype), (x.shape[0],) + p.shape), t], axis=1)
                    for p, t in zip(prefix, (k, v)))  # [batch, k + T, kv_heads, head_dim]
            out = attend(q, k, v, cfg, positions, jnp.concatenate([jnp.arange(n_prefix), positions]))
        elif cache is None:
            out = attend(q, k, v, cfg, positions, positions, segments=segments)  # [batch, T, heads, head_dim]
        else:
            k_positions, index = slots
            cache = tuple(jax.lax.dynamic_update_slice_in_dim(c, new.astype(c.dtype), index, axis=1)
                          for c, new in zip(cache, (k, v)))  # [batch, max_len, kv_heads, head_dim] each
            out = attend(q, cache[0], cache[1], cfg, positions, k_positions, k_valid=k_positions >= 0)
        y = project("o", out, wo, ("heads", "head_dim", "embed"), contract=2)
        if cfg.use_bias:
            y = y + _param(self, "bo", (d,), ("embed",), nn.initializers.zeros).astype(dtype)
        return y if cache is None else (y, cache)


class MLP(nn.Module):
    """Position-wise feed-forward: W_out act(W_in x), or W_out (act(W_gate x) * W_in x) for GeGLU / SwiGLU."""

    cfg: ModelConfig
    adapt: Any = None  # research.config.AdaptConfig of an adapted model (LoRA on its targets), or None
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        cfg, dtype, ops = self.cfg.resolved(), DTYPES[self.cfg.compute_dtype], kernels(self.cfg)

        def project(target, x, w, axes):
            return _adapted(self, target, x, w.astype(dtype), axes, 1, ops.dense, self.adapt)

        d, f = cfg.d_model, cfg.d_ff
        w_in = _param(self, "w_in", (d, f), ("embed", "mlp"), _matrix_init(cfg))
        hidden = project("mlp_in", x, w_in, ("embed", "mlp"))  # [batch, T, d_ff]
        if cfg.use_bias:
            hidden = hidden + _param(self, "b_in", (f,), ("mlp",), nn.initializers.zeros).astype(dtype)
        if cfg.is_glu:
            w_gate = _param(self, "w_gate", (d, f), ("embed", "mlp"), _matrix_init(cfg))
            gate = project("mlp_gate", x, w_gate, ("embed", "mlp"))
            if cfg.use_bias:
                gate = gate + _param(self, "b_gate", (f,), ("mlp",), nn.initializers.zeros).astype(dtype)
            hidden = (ops.silu if cfg.activation == "swiglu" else ops.gelu)(gate) * hidden
        elif cfg.activation == "relu":
            hidden = jax.nn.relu(hidden)
        else:
            hidden = ops.gelu(hidden)
        w_out = _param(self, "w_out", (f, d), ("mlp", "embed"), _matrix_init(cfg, residual_out=True))
        y = project("mlp_out", hidden, w_out, ("mlp", "embed"))
        if cfg.use_bias:
            y = y + _param(self, "b_out", (d,), ("embed",), nn.initializers.zeros).astype(dtype)
        return y


class Block(nn.Module):
    """Pre-norm: x + F(norm(x)). Post-norm (original Transformer): norm(x + F(x)). F = attention, then MLP."""

    cfg: ModelConfig
    deterministic: bool = True
    adapt: Any = None  # research.config.AdaptConfig of an adapted model (LoRA, adapters), or None

    @nn.compact
    def __call__(self, x: jnp.ndarray, positions: jnp.ndarray, segments=None, kv=None, slots=None):
        """(x, None); with a KV cache (see Attention), (x, this layer's updated (k, v)). segments [batch, T]: the
        document of each token of packed documents (attention stays within one), or None."""
        cfg = self.cfg
        drop = nn.Dropout(cfg.dropout, deterministic=self.deterministic)
        attn = Attention(cfg, self.adapt, self.deterministic, name="attn")
        mlp = MLP(cfg, self.adapt, self.deterministic, name="mlp")
        attn_norm, mlp_norm = Norm(cfg, name="attn_norm"), Norm(cfg, name="mlp_norm")

        def attention(h):
            out = attn(h, positions, kv, slots, segments)
            return (out, None) if kv is None else out

        def attention_block(h):  # (y, kv), with the adapter on y
            return _with_adapter(self, "attn", attention, h)

        def mlp_block(h):
            return _with_adapter(self, "mlp", mlp, h)

        if cfg.norm_placement == "pre":
            a, kv = attention_block(attn_norm(x))
            x = x + drop(a)
            x = checkpoint_name(_constrain(x, ("act_batch", "act_seq", "act_embed")), "attn_residual")
            x = x + drop(mlp_block(mlp_norm(x)))
        else:
            a, kv = attention_block(x)
            x = attn_norm(x + drop(a))
            x = checkpoint_name(_constrain(x, ("act_batch", "act_seq", "act_embed")), "attn_residual")
            x = mlp_norm(x + drop(mlp_block(x)))
        return _constrain(x, ("act_batch", "act_seq", "act_embed")), kv


REMAT_POLICIES = {
    "block": jax.checkpoint_policies.save_only_these_names("attn_residual"),  # keep mid-block residual
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each block's input
}


def stacked_blocks(cfg: ModelConfig, deterministic: bool, name: str = "blocks", cached: bool = False,
                   adapt=None) -> nn.Module:
    """`n_layers` blocks as one scanned module; parameters get a leading `layers` axis.

    Called as (x, positions, segments) -> (x, None); cached, as (x, positions, None, (k, v) [layers, ...] scanned per
    layer, slots broadcast) -> (x, updated (k, v)).
    """
    block = Block
    if cfg.remat != "none":
        block = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False)
    scanned = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast) if cached else (nn.broadcast, nn.broadcast),
        length=cfg.n_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return scanned(cfg, deterministic, adapt, name=name)


class Transformer(nn.Module):
    """tokens [batch, T] -> float32 logits [batch, T, vocab]. With `pipeline`, the block stack runs as a pipeline."""

    cfg: ModelConfig
    # None: the plain scanned stack. Else an object whose run_blocks(module, x, positions, segments, deterministic)
    # runs the stack's own parameters another way (research.parallel.pipeline.Pipeline): the model has no pipeline code
    pipeline: Any = None
    adapt: Any = None  # research.config.AdaptConfig of an adapted model (adapt.method other than full), or None

    @nn.compact
    def __call__(self, tokens: jnp.ndarray, positions: jnp.ndarray | None = None, deterministic: bool = True, *,
                 cache: KVCache | None = None, segments: jnp.ndarray | None = None, prime_prompt: bool = False):
        # With `cache` (inference): positions are per row [batch, T] (-1 marks left padding; default: the T after the
        # cache's index), the tokens' keys and values fill the cache's next T slots, and (logits, new cache) returns.
        # With `segments` [batch, T] (packed documents, data.document_mask): attention stays within each document,
        # and positions [batch, T] restart with each one.
        # Prompt tuning (k = adapt.virtual soft vectors): without a cache they precede every sequence (positions
        # 0..k-1, the tokens' k..k+T-1) and only the tokens' logits return; decoding first fills a cache's first k
        # slots with them (prime_prompt=True, tokens [batch, 0]), and shifts every later position by k. Prefix tuning
        # places the tokens at k.. too, its keys and values (Attention) in front of theirs.
        cfg, dtype = self.cfg, DTYPES[self.cfg.compute_dtype]
        n_virtual = 0 if self.adapt is None else self.adapt.virtual
        n_prompt = n_virtual if n_virtual and self.adapt.method == "prompt_tuning" else 0
        if positions is None and cache is not None:
            positions = jnp.broadcast_to(cache.index + jnp.arange(tokens.shape[1]), tokens.shape)
        elif n_virtual and cache is not None:
            positions = jnp.where(positions >= 0, positions + n_virtual, -1)
        embedding = _param(self, "embedding", (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), _matrix_init(cfg))
        x = jnp.take(embedding, tokens, axis=0)  # [batch, T, d_model]
        if n_prompt:
            prompt = _param(self, "soft_prompt", (n_prompt, cfg.d_model), (None, "embed"),
                            nn.initializers.normal(0.02))
            prompt = jnp.broadcast_to(prompt.astype(x.dtype), (x.shape[0], n_prompt, cfg.d_model))  # [batch, k, d]
            if cache is None:
                x, positions = jnp.concatenate([prompt, x], axis=1), None  # [batch, k + T, d_model]
            elif prime_prompt:
                x, positions = prompt, jnp.broadcast_to(jnp.arange(n_prompt), (x.shape[0], n_prompt))
        if positions is None:  # a prefix takes positions 0..k-1 in every layer's attention: the tokens follow
            positions = jnp.arange(x.shape[1]) + (n_virtual - n_prompt)
        if cfg.positions == "learned":
            table = _param(self, "pos_embedding", (cfg.max_seq_len, cfg.d_model), (None, "embed"), _matrix_init(cfg))
            x = x + jnp.take(table, positions if cache is None else jnp.maximum(positions, 0), axis=0)
        elif cfg.positions == "sinusoidal":  # Vaswani et al. 3.4: embeddings x sqrt(d), so the unit-amplitude
            x = x * cfg.d_model**0.5 + sinusoidal_table(positions, cfg.d_model)  # table does not drown the tokens
        x = nn.Dropout(cfg.dropout, deterministic=deterministic)(x.astype(dtype))
        x = _constrain(x, ("act_batch", "act_seq", "act_embed"))
        if cache is not None:
            slot_positions = jax.lax.dynamic_update_slice_in_dim(
                cache.positions, positions.astype(jnp.int32), cache.index, axis=1)  # [batch, max_len]
            x, (k, v) = stacked_blocks(cfg, deterministic, cached=True, adapt=self.adapt)(
                x, positions, None, (cache.k, cache.v), (slot_positions, cache.index))
            cache = KVCache(k=k, v=v, positions=slot_positions, index=cache.index + x.shape[1])
        elif self.pipeline is None or self.is_initializing():
            x, _ = stacked_blocks(cfg, deterministic, adapt=self.adapt)(x, positions, segments)
        else:
            x = self.pipeline.run_blocks(self, x, positions, segments, deterministic)
        if n_prompt and cache is None:
            x = x[:, n_prompt:]  # [batch, T, d_model]: the tokens' outputs
        if cfg.norm_placement == "pre":
            x = Norm(cfg, name="final_norm")(x)
        if cfg.tie_embeddings:
            head = embedding.T
        else:
            head = _param(self, "lm_head", (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), _matrix_init(cfg))
        logits = kernels(cfg).dense(x, head.astype(dtype), out_dtype=jnp.float32)  # [batch, T, vocab]
        logits = _constrain(logits, ("act_batch", "act_seq", "act_vocab"))
        return logits if cache is None else (logits, cache)
