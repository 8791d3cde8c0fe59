"""An independent NumPy (float64) transformer written from the textbook equations, for the model tests.

Nothing here imports `research`: each function is the paper's formula, written the plain way (explicit loops over
heads and rotation pairs where that is the clearer statement), so agreement with the JAX model is evidence.
"""

from __future__ import annotations

import math

import numpy as np


# ---------------------------------------------------------------------------------------------------- positions
def sinusoidal(positions: np.ndarray, dim: int) -> np.ndarray:
    """Vaswani et al. 2017: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)). [T, dim]."""
    table = np.zeros((len(positions), dim))
    for row, p in enumerate(positions):
        for i in range(dim // 2):
            angle = p / 10000.0 ** (2 * i / dim)
            table[row, 2 * i] = math.sin(angle)
            table[row, 2 * i + 1] = math.cos(angle)
    return table


def rope_matrix(p: float, dim: int, base: float) -> np.ndarray:
    """The [dim, dim] rotation RoPE applies at position p: a 2-D rotation by p * base^(-2i/dim) of (i, i + dim/2)."""
    half = dim // 2
    r = np.zeros((dim, dim))
    for i in range(half):
        theta = p * base ** (-2.0 * i / dim)
        c, s = math.cos(theta), math.sin(theta)
        r[i, i], r[i, i + half] = c, -s
        r[i + half, i], r[i + half, i + half] = s, c
    return r


def rope(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """x [batch, T, heads, D]; positions [T] or [batch, T]: rotate each vector by its position's matrix."""
    positions = np.broadcast_to(positions, x.shape[:2])
    out = np.empty(x.shape)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            out[b, t] = x[b, t] @ rope_matrix(float(positions[b, t]), x.shape[-1], base).T
    return out


def alibi_slopes(n: int) -> list[float]:
    """Press et al. 2022, the authors' `get_slopes` (github.com/ofirpress/attention_with_linear_biases)."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest_power_of_2) + alibi_slopes(2 * closest_power_of_2)[0::2][
        : n - closest_power_of_2
    ]


# ---------------------------------------------------------------------------------------------------- layers
def rms_norm(x, scale, eps):
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * scale


def layer_norm(x, scale, bias, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * scale
    return y if bias is None else y + bias


def norm(x, p: dict, cfg):
    if cfg.norm == "rmsnorm":
        return rms_norm(x, p["scale"], cfg.norm_eps)
    return layer_norm(x, p["scale"], p.get("bias"), cfg.norm_eps)


def relu(x):
    return np.maximum(x, 0.0)


def gelu_tanh(x):
    """Hendrycks & Gimpel's tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def mlp(x, p: dict, activation: str):
    """relu / gelu: W_out act(W_in x + b_in) + b_out; GeGLU / SwiGLU: W_out (act(W_gate x + b_gate) * (W_in x + b_in)).

    Each bias term is 0 when absent.
    """
    h = x @ p["w_in"] + p.get("b_in", 0.0)
    if activation in ("geglu", "swiglu"):
        g = x @ p["w_gate"] + p.get("b_gate", 0.0)
        h = (gelu_tanh(g) if activation == "geglu" else silu(g)) * h
    else:
        h = relu(h) if activation == "relu" else gelu_tanh(h)
    return h @ p["w_out"] + p.get("b_out", 0.0)


def attention_core(q, k, v, *, causal=True, window=None, slopes=None, q_positions=None, k_positions=None,
                   k_valid=None):
    """softmax(q_h k_g^T / sqrt(D) + bias) v_g per query head h, with g = h // (heads / kv_heads).

    q [B, T, H, D]; k, v [B, S, KV, D]. Key j is visible to query i when (causal) j <= i, (window) i - j < W, and
    k_valid[b, j]. ALiBi adds -slope_h * |i - j|.
    """
    B, T, H, D = q.shape
    S, KV = k.shape[1], k.shape[2]
    qp = np.arange(T) if q_positions is None else np.asarray(q_positions)
    kp = np.arange(S) if k_positions is None else np.asarray(k_positions)
    out = np.zeros((B, T, H, D))
    group = H // KV
    for b in range(B):
        for h in range(H):
            g = h // group
            for i in range(T):
                scores = np.array([q[b, i, h] @ k[b, j, g] for j in range(S)]) / math.sqrt(D)
                visible = np.ones(S, dtype=bool)
                for j in range(S):
                    dist = qp[i] - kp[j]
                    if causal and dist < 0:
                        visible[j] = False
                    if window is not None and dist >= window:
                        visible[j] = False
                    if k_valid is not None and not k_valid[b, j]:
                        visible[j] = False
                    if slopes is not None:
                        scores[j] -= slopes[h] * abs(dist)
                scores = np.where(visible, scores, -np.inf)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                out[b, i, h] = w @ v[b, :, g]
    return out


def attention(x, p: dict, cfg, positions=None):
    """The attention sublayer: project, (RoPE), attend, project back."""
    positions = np.arange(x.shape[1]) if positions is None else positions
    q = np.einsum("btd,dhk->bthk", x, p["wq"]) + p.get("bq", 0.0)
    k = np.einsum("btd,dhk->bthk", x, p["wk"]) + p.get("bk", 0.0)
    v = np.einsum("btd,dhk->bthk", x, p["wv"]) + p.get("bv", 0.0)
    if cfg.positions == "rope":
        q, k = rope(q, positions, cfg.rope_base), rope(k, positions, cfg.rope_base)
    slopes = alibi_slopes(cfg.n_heads) if cfg.positions == "alibi" else None
    o = attention_core(q, k, v, causal=cfg.causal, window=cfg.sliding_window, slopes=slopes,
                       q_positions=positions, k_positions=positions)
    return np.einsum("bthk,hkd->btd", o, p["wo"]) + p.get("bo", 0.0)


# ---------------------------------------------------------------------------------------------------- model
def adapter(h, p: dict):
    """Houlsby's bottleneck without its residual: gelu(h W_down + b_down) W_up + b_up."""
    return gelu_tanh(h @ p["w_down"] + p["b_down"]) @ p["w_up"] + p["b_up"]


def adapted(place: str, sublayer, h, blk: dict, adapt):
    """sublayer(h), with the adapter for `place` after it (serial) or beside it (parallel), per `adapt`."""
    y = sublayer(h)
    if adapt is None or place not in adapt.places:
        return y
    if adapt.method == "adapter_serial":
        return y + adapter(y, blk[f"adapter_{place}"])
    return y + adapt.adapter_scale * adapter(h, blk[f"adapter_{place}"])


def transformer(params: dict, cfg, tokens: np.ndarray, adapt=None) -> np.ndarray:
    """Logits [B, T, vocab] from the model's (unboxed) params dict; blocks are stored with a leading layer axis.
    `adapt`: an AdaptConfig with adapters (serial or parallel), whose weights the blocks hold."""
    p = _to_float64(params)
    positions = np.arange(tokens.shape[1])
    x = p["embedding"][tokens]
    if cfg.positions == "learned":
        x = x + p["pos_embedding"][positions]
    elif cfg.positions == "sinusoidal":  # Vaswani et al. 3.4: embeddings scaled by sqrt(d_model)
        x = x * np.sqrt(cfg.d_model) + sinusoidal(positions, cfg.d_model)
    for layer in range(cfg.n_layers):
        blk = _index(p["blocks"], layer)

        def attn(h, blk=blk):
            return adapted("attn", lambda h: attention(h, blk["attn"], cfg, positions), h, blk, adapt)

        def ffn(h, blk=blk):
            return adapted("mlp", lambda h: mlp(h, blk["mlp"], cfg.activation), h, blk, adapt)

        if cfg.norm_placement == "pre":
            x = x + attn(norm(x, blk["attn_norm"], cfg))
            x = x + ffn(norm(x, blk["mlp_norm"], cfg))
        else:
            x = norm(x + attn(x), blk["attn_norm"], cfg)
            x = norm(x + ffn(x), blk["mlp_norm"], cfg)
    if cfg.norm_placement == "pre":
        x = norm(x, p["final_norm"], cfg)
    head = p["embedding"].T if cfg.tie_embeddings else p["lm_head"]
    return x @ head


def _to_float64(tree):
    if isinstance(tree, dict):
        return {k: _to_float64(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float64)


def _index(tree, i):
    if isinstance(tree, dict):
        return {k: _index(v, i) for k, v in tree.items()}
    return tree[i]
