"""Positional encodings as pure functions: sinusoidal table, RoPE rotation, ALiBi slopes and bias."""

from __future__ import annotations

import math

import jax.numpy as jnp


def sinusoidal_table(positions: jnp.ndarray, dim: int) -> jnp.ndarray:
    """Vaswani et al.: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...). positions [T] -> [T, dim].

    Per-row positions [batch, T] (batched decoding) give [batch, T, dim].
    """
    half = dim // 2
    inv_freq = 1.0 / (10000.0 ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / dim))  # [half]
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [..., T, half]
    table = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(positions.shape + (2 * half,))
    if dim % 2:
        table = jnp.pad(table, ((0, 0),) * positions.ndim + ((0, 1),))
    return table


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, base: float) -> jnp.ndarray:
    """Rotate feature pairs (i, i + D/2) by angle p * base^(-2i/D) (the GPT-NeoX / LLaMA "rotate half" layout).

    x: [batch, length, heads, head_dim]; positions: [length] or [batch, length]. Computed in float32.
    """
    dim = x.shape[-1]
    half = dim // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / dim)  # [half]
    pos = positions.astype(jnp.float32)
    if pos.ndim == 1:
        pos = pos[None, :]
    angles = pos[..., None] * inv_freq  # [batch or 1, length, half]
    cos = jnp.cos(angles)[:, :, None, :]  # [b, length, 1, half]
    sin = jnp.sin(angles)[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., :half], xf[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def alibi_slopes(n_heads: int) -> jnp.ndarray:
    """Press et al.: geometric slopes 2^(-8i/n); for n not a power of two, interleave the next power's slopes."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest < n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return jnp.asarray(slopes, dtype=jnp.float32)


def alibi_bias(n_heads: int, q_positions: jnp.ndarray, k_positions: jnp.ndarray) -> jnp.ndarray:
    """Additive bias -slope_h * |i - j| for query position i and key position j: [1, heads, T, S].

    Per-row positions [batch, T] and [batch, S] (batched decoding) give [batch, heads, T, S].
    """
    distance = jnp.abs(q_positions[..., :, None] - k_positions[..., None, :]).astype(jnp.float32)  # [(batch,) T, S]
    distance = distance.reshape((-1, 1) + distance.shape[-2:])  # [1 or batch, 1, T, S]
    return -alibi_slopes(n_heads)[None, :, None, None] * distance
