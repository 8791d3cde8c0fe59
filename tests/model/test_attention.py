"""Attention against a NumPy softmax(q k^T / sqrt(D) + bias) v: masks, GQA grouping, ALiBi, and the full module."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.model.attention import attend, blocked_attention
from research.model.positions import alibi_slopes
from research.model.transformer import Attention

from . import reference as ref
from .harness import abstract_params, fast_jit, randomize, tiny

B, T, H, D = 2, 7, 4, 8
ATOL = 1e-5

# (n_kv_heads, causal, sliding_window, positions): every mask and bias the model can build.
ATTEND_CASES = {
    "causal-mha": (4, True, None, "none"),
    "causal-gqa2": (2, True, None, "none"),
    "causal-mqa": (1, True, None, "none"),
    "window3-gqa2": (2, True, 3, "none"),
    "window1-mqa": (1, True, 1, "none"),
    "noncausal-gqa2": (2, False, None, "none"),
    "alibi-causal-gqa2": (2, True, None, "alibi"),
    "alibi-noncausal-mqa": (1, False, None, "alibi"),
    "alibi-window2": (4, True, 2, "alibi"),
}


def _qkv(kv: int, seed: int = 0, length: int = T):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, length, H, D)).astype(np.float32) * 2.0  # far from uniform attention
    k = rng.standard_normal((B, length, kv, D)).astype(np.float32)
    v = rng.standard_normal((B, length, kv, D)).astype(np.float32)
    return q, k, v


def _cfg(kv, causal, window, positions):
    return tiny(d_model=H * D, n_heads=H, n_kv_heads=kv, causal=causal, sliding_window=window, positions=positions)


def _attend(q, k, v, cfg):
    """Self-attention over one span, both ways `attend` can compute it: (blocked path, explicit-mask path)."""
    return _both_paths(cfg)(q, k, v)


@functools.cache
def _both_paths(cfg):
    """`attend` compiled once per config (eager dispatch would compile every op separately: slower)."""

    def f(q, k, v):
        pos = jnp.arange(q.shape[1])
        fused = attend(q, k, v, cfg, pos, pos)  # one position array: blocked_attention, masks by index
        masked = attend(q, k, v, cfg, pos, jnp.arange(q.shape[1]))  # two arrays: the mask built from positions
        return fused, masked

    return fast_jit(f)


@functools.cache
def _masked(cfg):
    return fast_jit(lambda q, k, v, qp, kp, valid: attend(q, k, v, cfg, qp, kp, k_valid=valid))


def _ref(q, k, v, cfg, **kw):
    slopes = ref.alibi_slopes(cfg.n_heads) if cfg.positions == "alibi" else None
    return ref.attention_core(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), causal=cfg.causal,
                              window=cfg.sliding_window, slopes=slopes, **kw)


@pytest.mark.parametrize("case", list(ATTEND_CASES))
def test_attend_matches_numpy_on_both_mask_paths(case):
    cfg = _cfg(*ATTEND_CASES[case])
    q, k, v = _qkv(cfg.resolved().n_kv_heads)
    expected = _ref(q, k, v, cfg)
    fused, masked = _attend(q, k, v, cfg)
    np.testing.assert_allclose(fused, expected, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(masked, expected, atol=ATOL, rtol=ATOL)


@functools.cache
def _blocked_and_masked_grads(cfg, block):
    """(value, d/dq, d/dk, d/dv) of a random projection of the output, through blocked_attention with `block` rows
    per query block and its hand-written backward, and through the explicit-mask path under autodiff."""

    def blocked(q, k, v):
        slopes = alibi_slopes(cfg.n_heads) if cfg.positions == "alibi" else None
        return blocked_attention(q, k, v, jnp.arange(q.shape[1]), slopes, causal=cfg.causal,
                                 window=cfg.sliding_window, block=block)

    def masked(q, k, v):
        return attend(q, k, v, cfg, jnp.arange(q.shape[1]), jnp.arange(q.shape[1]))

    def value_and_grads(f):
        projection = jnp.asarray(np.random.default_rng(9).standard_normal((B, T, H, D)), jnp.float32)
        return jax.value_and_grad(lambda q, k, v: jnp.sum(f(q, k, v) * projection), argnums=(0, 1, 2))

    return fast_jit(lambda q, k, v: (value_and_grads(blocked)(q, k, v), value_and_grads(masked)(q, k, v)))


@pytest.mark.parametrize("case", list(ATTEND_CASES))
def test_blocked_attention_over_several_blocks_matches_numpy_and_autodiff(case):
    """Blocks of 3 rows over T = 7 (an uneven last block): causal and window block skipping, the online
    log-sum-exp and the hand-written backward give NumPy's values and the masked path's autodiff gradients."""
    cfg = _cfg(*ATTEND_CASES[case])
    q, k, v = _qkv(cfg.resolved().n_kv_heads, seed=6)
    (value, grads), (ref_value, ref_grads) = _blocked_and_masked_grads(cfg, 3)(q, k, v)
    np.testing.assert_allclose(value, ref_value, atol=1e-4, rtol=1e-5)
    for name, g, r in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")
        if name == "v" or cfg.sliding_window != 1:  # a window of one makes the output v, whatever q and k
            assert np.abs(np.asarray(r)).max() > 1e-2  # a real gradient, not two zeros


def test_blocked_attention_output_matches_numpy_for_every_block_size():
    cfg = _cfg(2, True, 3, "alibi")
    q, k, v = _qkv(2, seed=7)
    expected = _ref(q, k, v, cfg)
    slopes = alibi_slopes(H)
    for block in (1, 2, 4, 7, 16):
        out = blocked_attention(q, k, v, jnp.arange(T), slopes, causal=True, window=3, block=block)
        np.testing.assert_allclose(out, expected, atol=ATOL, rtol=ATOL, err_msg=f"block {block}")


@pytest.mark.parametrize("kv", [2, 1])
def test_gqa_equals_mha_with_repeated_kv_heads(kv):
    """Query head h reads kv head h // (H / kv): repeating each kv head H / kv times gives the MHA answer."""
    q, k, v = _qkv(kv, seed=1)
    grouped = _attend(q, k, v, _cfg(kv, True, None, "none"))
    k_rep, v_rep = np.repeat(k, H // kv, axis=2), np.repeat(v, H // kv, axis=2)  # heads [0,0,1,1] for kv=2
    full = _attend(q, k_rep, v_rep, _cfg(H, True, None, "none"))
    for path in (0, 1):
        np.testing.assert_allclose(grouped[path], full[0], atol=ATOL, rtol=ATOL)
    if kv > 1:  # and not the other common layout, h % kv (heads [0,1,0,1])
        wrong = _attend(q, np.tile(k, (1, 1, H // kv, 1)), np.tile(v, (1, 1, H // kv, 1)), _cfg(H, True, None, "none"))
        assert np.abs(np.asarray(grouped[0]) - np.asarray(wrong[0])).max() > 1e-2


def test_window_of_one_returns_own_value():
    """With W = 1 each query sees only itself, so the output is its own (grouped) value vector."""
    q, k, v = _qkv(2, seed=2)
    for out in _attend(q, k, v, _cfg(2, True, 1, "none")):
        np.testing.assert_allclose(out, np.repeat(v, 2, axis=2), atol=1e-6)


@pytest.mark.parametrize("window", [2, 3])
def test_window_ignores_keys_older_than_w(window):
    """Changing keys/values at positions <= i - W leaves query i's output unchanged; changing i - W + 1 does not."""
    cfg = _cfg(2, True, window, "none")
    q, k, v = _qkv(2, seed=3)
    base = np.asarray(_attend(q, k, v, cfg)[0])
    i = T - 1
    k2, v2 = k.copy(), v.copy()
    k2[:, : i - window + 1] += 5.0
    v2[:, : i - window + 1] += 5.0
    moved = np.asarray(_attend(q, k2, v2, cfg)[0])
    np.testing.assert_allclose(moved[:, i], base[:, i], atol=1e-6)
    k3, v3 = k.copy(), v.copy()
    v3[:, i - window + 1] += 5.0  # the oldest key still inside the window
    assert np.abs(np.asarray(_attend(q, k3, v3, cfg)[0])[:, i] - base[:, i]).max() > 1e-2


@pytest.mark.parametrize("case", ["causal-gqa2", "window3-gqa2", "alibi-causal-gqa2"])
def test_attend_kv_cache_queries_with_valid_mask(case):
    """Queries at later positions over a partly filled cache: positions, window, ALiBi and k_valid all apply."""
    cfg = _cfg(*ATTEND_CASES[case])
    rng = np.random.default_rng(4)
    S, TQ = 9, 3
    q = rng.standard_normal((B, TQ, H, D)).astype(np.float32) * 2
    k = rng.standard_normal((B, S, 2, D)).astype(np.float32)
    v = rng.standard_normal((B, S, 2, D)).astype(np.float32)
    q_pos, k_pos = np.arange(5, 5 + TQ), np.arange(S)
    k_valid = np.ones((B, S), dtype=bool)
    k_valid[1, 8:] = False  # second sequence: last slot not yet written
    k_valid[0, 1] = False
    out = _masked(cfg)(q, k, v, q_pos, k_pos, k_valid)
    expected = _ref(q, k, v, cfg, q_positions=q_pos, k_positions=k_pos, k_valid=k_valid)
    np.testing.assert_allclose(out, expected, atol=ATOL, rtol=ATOL)


# (overrides of tiny()): projections with and without biases, RoPE / ALiBi, GQA / MQA, explicit head_dim.
MODULE_CASES = {
    "rope-gqa-qkvbias": dict(positions="rope", n_kv_heads=2, qkv_bias=True),
    "alibi-mqa-bias-window": dict(positions="alibi", n_kv_heads=1, use_bias=True, sliding_window=3),
    "none-noncausal-headdim6": dict(positions="none", n_kv_heads=4, head_dim=6, causal=False),
    "rope-headdim6-window2": dict(positions="rope", n_heads=6, n_kv_heads=3, head_dim=6, sliding_window=2,
                                  rope_base=50.0),
}


@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_attention_module_matches_numpy_projections(case):
    cfg = tiny(**MODULE_CASES[case])
    x = np.random.default_rng(5).standard_normal((B, T, cfg.d_model)).astype(np.float32)
    module = Attention(cfg)
    params = randomize(abstract_params(module, x, jnp.arange(T)), cfg)
    expected_names = {"wq", "wk", "wv", "wo"} | ({"bq", "bk", "bv"} if cfg.use_bias or cfg.qkv_bias else set()) | (
        {"bo"} if cfg.use_bias else set())
    assert set(params) == expected_names
    out = fast_jit(lambda p, x: module.apply({"params": p}, x, jnp.arange(T)))(params, x)
    expected = ref.attention(x.astype(np.float64), {n: np.asarray(p, np.float64) for n, p in params.items()}, cfg)
    np.testing.assert_allclose(out, expected, atol=ATOL, rtol=ATOL)
