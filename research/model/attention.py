"""Attention cores: softmax(q k^T / sqrt(D) + bias) v, with causal, sliding-window and KV-cache masks.

Training self-attention runs `blocked_attention`: query blocks that skip the key blocks a causal or sliding-window
mask hides, and a hand-written backward pass (FlashAttention's recurrence: recompute each block's probabilities from
its log-sum-exp instead of storing the [batch, heads, T, T] matrix). On CPU this is about twice as fast as
`jax.nn.dot_product_attention`'s XLA path, which materialises and stores every layer's full probability matrix.
Decoding over a KV cache (positions per row, empty slots) uses the masked `jax.nn.dot_product_attention`.
Packed documents (`segments`, the document of each token) add one rule to either path: a query sees only keys of
its own document.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from research.config import ModelConfig
from research.model.positions import alibi_bias, alibi_slopes

QUERY_BLOCK = 128  # rows per query block: a [batch, heads, 128, S] float32 score block stays near the caches
MAX_BLOCKS = 16  # longer sequences use larger blocks, so the unrolled block loop (and compile time) stays bounded


def attend(q, k, v, cfg: ModelConfig, q_positions, k_positions, *, k_valid=None, segments=None) -> jnp.ndarray:
    """Attention over grouped KV heads. q: [batch, T, heads, D]; k, v: [batch, S, kv_heads, D].

    positions: [T], [S] or per row [batch, T], [batch, S]. Without `k_valid` (a KV cache's filled slots [batch, S])
    and with queries and keys one span, masks follow the index (key j is visible to query i when j <= i and, with a
    window, i - j < window) and the blocked path runs; otherwise masks follow the positions. `segments` [batch, T]
    (self-attention of packed documents, positions restarting in each) keeps each query within its document: there
    index distance equals position distance, so the index masks and the ALiBi bias on the index are exact.
    """
    blocked = cfg.kernels == "tuned"  # model.kernels=reference: jax.nn.dot_product_attention below
    if segments is not None:
        return _attend_documents(q, k, v, cfg, segments, blocked)
    if blocked and k_valid is None and q_positions is k_positions and q_positions.ndim == 1:
        slopes = alibi_slopes(cfg.n_heads) if cfg.positions == "alibi" else None
        return blocked_attention(q, k, v, q_positions, slopes, causal=cfg.causal, window=cfg.sliding_window)
    bias = alibi_bias(cfg.n_heads, q_positions, k_positions) if cfg.positions == "alibi" else None
    if k_valid is None and q_positions is k_positions:  # one span: index masks, fused path
        window = (cfg.sliding_window - 1, 0) if cfg.sliding_window is not None else None
        return jax.nn.dot_product_attention(
            q, k, v, bias=None if bias is None else bias.astype(q.dtype), is_causal=cfg.causal,
            local_window_size=window)
    delta = q_positions[..., :, None] - k_positions[..., None, :]  # [(batch,) T, S]: how far back each key is
    mask = jnp.ones(delta.shape, dtype=bool)
    if cfg.causal:
        mask &= delta >= 0
    if cfg.sliding_window is not None:
        mask &= delta < cfg.sliding_window
    mask = mask.reshape((-1, 1) + mask.shape[-2:])  # [1 or batch, 1, T, S]
    if k_valid is not None:
        mask = mask & k_valid[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias.astype(q.dtype), mask=mask)


def _attend_documents(q, k, v, cfg: ModelConfig, segments, blocked: bool) -> jnp.ndarray:
    """Self-attention of packed documents: the index masks, and keys of the query's own document only."""
    index = jnp.arange(q.shape[1])
    if blocked:
        slopes = alibi_slopes(cfg.n_heads) if cfg.positions == "alibi" else None
        return blocked_attention(q, k, v, index, slopes, causal=cfg.causal, window=cfg.sliding_window,
                                 segments=segments)
    delta = index[:, None] - index[None, :]  # [T, T] query - key index
    mask = segments[:, None, :, None] == segments[:, None, None, :]  # [batch, 1, T, T]
    if cfg.causal:
        mask &= delta >= 0
    if cfg.sliding_window is not None:
        mask &= delta < cfg.sliding_window
    bias = alibi_bias(cfg.n_heads, index, index).astype(q.dtype) if cfg.positions == "alibi" else None
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)


def blocked_attention(q, k, v, positions, slopes=None, *, causal: bool = True, window: int | None = None,
                      segments=None, block: int = QUERY_BLOCK) -> jnp.ndarray:
    """Self-attention of one span. q: [batch, T, heads, D]; k, v: [batch, T, kv_heads, D] -> [batch, T, heads, D].

    positions [T] only feed the ALiBi bias -slope_h |p_i - p_j| (slopes [heads], or None for no bias); segments
    [batch, T] (or None) hide keys of other documents.
    """
    batch, length, heads, dim = q.shape
    kv_heads = k.shape[2]
    block = max(block, -(-length // MAX_BLOCKS))
    # head-major [batch, kv_heads, group, T, D]: every block matmul below reads its operands without a transpose
    qh = q.reshape(batch, length, kv_heads, heads // kv_heads, dim).transpose(0, 2, 3, 1, 4)
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [batch, kv_heads, T, D]
    alibi = None
    if slopes is not None:
        alibi = (slopes.reshape(kv_heads, heads // kv_heads), positions.astype(jnp.float32))
    # float, like every differentiable input of the custom derivative (exact: ids stay far below 2^24)
    documents = None if segments is None else segments.astype(jnp.float32)
    out = _flash(qh, kh, vh, (alibi, documents), (causal, window, block))
    return out.transpose(0, 3, 1, 2, 4).reshape(batch, length, heads, dim)


def _key_range(start: int, stop: int, length: int, causal: bool, window: int | None) -> tuple[int, int]:
    """The keys [lo, hi) that queries [start, stop) can see."""
    hi = stop if causal else length
    lo = 0 if window is None else max(0, start - window + 1)
    return lo, hi


def _scores(qb, kb, masks, start, lo, causal, window):
    """Scaled scores of one query block against keys [lo, lo + S), masked: [batch, kv, group, rows, S] float32."""
    s = jnp.einsum("bkgqd,bksd->bkgqs", qb, kb, preferred_element_type=jnp.float32) / math.sqrt(qb.shape[-1])
    rows, keys = qb.shape[3], kb.shape[2]
    alibi, documents = masks
    if alibi is not None:
        slopes, positions = alibi  # [kv, group], [T]
        distance = jnp.abs(positions[start:start + rows, None] - positions[None, lo:lo + keys])  # [rows, S]
        s = s - slopes[None, :, :, None, None] * distance
    if causal or window is not None:
        delta = (start + jnp.arange(rows))[:, None] - (lo + jnp.arange(keys))[None, :]  # [rows, S] query - key index
        visible = delta >= 0 if causal else jnp.ones_like(delta, dtype=bool)
        if window is not None:
            visible &= delta < window
        s = jnp.where(visible, s, -jnp.inf)
    if documents is not None:  # [batch, T]
        same = documents[:, start:start + rows, None] == documents[:, None, lo:lo + keys]  # [batch, rows, S]
        s = jnp.where(same[:, None, None], s, -jnp.inf)
    return s


def _blocks(length: int, block: int, causal: bool, window: int | None):
    for start in range(0, length, block):
        stop = min(start + block, length)
        yield (start, stop, *_key_range(start, stop, length, causal, window))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q, k, v, masks, static):
    return _flash_forward(q, k, v, masks, static)[0]


def _flash_forward(q, k, v, masks, static):
    """q [batch, kv, group, T, D]; k, v [batch, kv, T, D]; masks (alibi (slopes, positions) or None, documents
    [batch, T] or None) -> (out like q, (q, k, v, masks, out, lse))."""
    causal, window, block = static
    outs, lses = [], []
    for start, stop, lo, hi in _blocks(q.shape[3], block, causal, window):
        s = _scores(q[:, :, :, start:stop], k[:, :, lo:hi], masks, start, lo, causal, window)
        m = jnp.max(s, axis=-1, keepdims=True)  # every row sees at least its own key, so m is finite
        p = jnp.exp(s - m)
        denom = jnp.sum(p, axis=-1, keepdims=True)  # [batch, kv, group, rows, 1]
        o = jnp.einsum("bkgqs,bksd->bkgqd", p.astype(v.dtype), v[:, :, lo:hi], preferred_element_type=jnp.float32)
        outs.append((o / denom).astype(q.dtype))
        lses.append(m + jnp.log(denom))
    out, lse = jnp.concatenate(outs, axis=3), jnp.concatenate(lses, axis=3)
    return out, (q, k, v, masks, out, lse)


def _flash_backward(static, residuals, d_out):
    """Per block: P = exp(S - lse); dV += P^T dO; dS = P (dO V^T - rowsum(dO * O)); dQ = dS K; dK += dS^T Q."""
    causal, window, block = static
    q, k, v, masks, out, lse = residuals
    scale = 1.0 / math.sqrt(q.shape[-1])
    delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)  # [.., T, 1]
    dq_blocks = []
    dk_t = dv_t = jnp.zeros(k.shape[:2] + (k.shape[3], k.shape[2]), jnp.float32)  # [batch, kv, D, T]
    for start, stop, lo, hi in _blocks(q.shape[3], block, causal, window):
        qb, kb, vb, dob = q[:, :, :, start:stop], k[:, :, lo:hi], v[:, :, lo:hi], d_out[:, :, :, start:stop]
        p = jnp.exp(_scores(qb, kb, masks, start, lo, causal, window) - lse[:, :, :, start:stop])
        # dK and dV are accumulated transposed, [batch, kv, D, T]: their matmuls then transpose the [rows, D]
        # operand, not the [rows, S] scores (XLA copies whichever operand a matmul reads transposed)
        dv_t = _add_keys(dv_t, lo, jnp.einsum("bkgqd,bkgqs->bkds", dob, p.astype(dob.dtype),
                                             preferred_element_type=jnp.float32))
        dp = jnp.einsum("bkgqd,bksd->bkgqs", dob, vb, preferred_element_type=jnp.float32)
        ds = (p * (dp - delta[:, :, :, start:stop]) * scale).astype(q.dtype)
        dq_blocks.append(jnp.einsum("bkgqs,bksd->bkgqd", ds, kb, preferred_element_type=jnp.float32))
        dk_t = _add_keys(dk_t, lo, jnp.einsum("bkgqd,bkgqs->bkds", qb, ds, preferred_element_type=jnp.float32))
    dq = jnp.concatenate(dq_blocks, axis=3).astype(q.dtype)
    d_masks = jax.tree.map(jnp.zeros_like, masks)  # slopes, positions and documents are constants
    return dq, dk_t.swapaxes(2, 3).astype(k.dtype), dv_t.swapaxes(2, 3).astype(v.dtype), d_masks


def _add_keys(total, lo, block):
    """total[..., lo:lo + S] += block ([batch, kv, D, S]), as a slice update (a scatter-add would be slower)."""
    hi = lo + block.shape[-1]
    return jax.lax.dynamic_update_slice_in_dim(total, total[..., lo:hi] + block, lo, axis=3)


_flash.defvjp(_flash_forward, _flash_backward)
