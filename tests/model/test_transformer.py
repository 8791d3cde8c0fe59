"""The whole model: forward pass against the NumPy reference, causality, dtype policy, remat and dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.model.transformer import Transformer

from . import reference as ref
from .harness import SEQ, VOCAB, abstract_params, fast_jit, model, randomize, replace, tiny, tokens

# Every axis at least once: norm placement x norm type x bias x activation x tying x positions x head layout x masks.
CASES = {
    "rope-pre-rms-swiglu-tied-gqa": tiny(positions="rope"),
    "learned-post-ln-bias-gelu-untied-mha": tiny(positions="learned", norm_placement="post", norm="layernorm",
                                                 use_bias=True, activation="gelu", tie_embeddings=False,
                                                 n_kv_heads=4),
    "sinusoidal-pre-ln-relu-untied-mqa": tiny(positions="sinusoidal", norm="layernorm", activation="relu",
                                              tie_embeddings=False, n_kv_heads=1),
    "alibi-pre-geglu-qkvbias-6heads": tiny(positions="alibi", activation="geglu", qkv_bias=True, n_heads=6,
                                           n_kv_heads=3, head_dim=4),
    "none-post-window3-untied": tiny(positions="none", norm_placement="post", sliding_window=3,
                                     tie_embeddings=False),
    "rope-pre-window2-headdim6": tiny(positions="rope", sliding_window=2, head_dim=6, rope_base=100.0),
    "rope-noncausal-post": tiny(positions="rope", causal=False, norm_placement="post"),
}
CAUSAL = [name for name, cfg in CASES.items() if cfg.causal]
WINDOWED = [name for name, cfg in CASES.items() if cfg.sliding_window is not None]


@pytest.mark.parametrize("kernels", ["tuned", "reference"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_numpy_reference(case, kernels):
    cfg = replace(CASES[case], kernels=kernels)
    params, forward = model(cfg)
    toks = tokens(0)
    logits = forward(params, toks)
    assert logits.shape == (2, SEQ, VOCAB) and logits.dtype == jnp.float32
    expected = ref.transformer(params, cfg, toks)
    scale = np.abs(expected).max()  # float32 vs float64: observed errors are ~5e-7 of the largest logit
    np.testing.assert_allclose(logits, expected, atol=5e-6 * scale, rtol=0)


def _changed_after(toks: np.ndarray, t: int) -> np.ndarray:
    """The same tokens up to position t, every later one replaced by a different token."""
    out = toks.copy()
    out[:, t + 1:] = (toks[:, t + 1:] + 1 + np.arange(toks.shape[1] - t - 1)) % VOCAB
    assert (out[:, t + 1:] != toks[:, t + 1:]).all()
    return out


@pytest.mark.parametrize("case", CAUSAL)
def test_causal_future_tokens_do_not_change_past_logits(case):
    params, forward = model(CASES[case])
    toks = tokens(1)
    for t in (0, 5, SEQ - 2):
        a, b = np.asarray(forward(params, toks)), np.asarray(forward(params, _changed_after(toks, t)))
        np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
        assert (np.abs(a[:, t + 1:] - b[:, t + 1:]).max(axis=(0, 2)) > 1e-4).all()  # every later position moves


def test_noncausal_sees_the_future():
    params, forward = model(CASES["rope-noncausal-post"])
    toks = tokens(1)
    a, b = np.asarray(forward(params, toks)), np.asarray(forward(params, _changed_after(toks, SEQ - 2)))
    assert (np.abs(a - b).max(axis=(0, 2)) > 1e-4).all()


@pytest.mark.parametrize("case", WINDOWED)
def test_sliding_window_receptive_field(case):
    """L layers of window W: position p sees tokens p - L (W - 1) .. p. Changing token 0 moves exactly 0..L (W - 1)."""
    cfg = CASES[case]
    params, forward = model(cfg)
    toks = tokens(2)
    other = toks.copy()
    other[:, 0] = (toks[:, 0] + 1) % VOCAB
    diff = np.abs(np.asarray(forward(params, toks)) - np.asarray(forward(params, other))).max(axis=(0, 2))
    reach = cfg.n_layers * (cfg.sliding_window - 1)
    assert reach + 1 < SEQ
    assert (diff[: reach + 1] > 1e-5).all(), diff
    np.testing.assert_allclose(diff[reach + 1:], 0.0, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    cfg = replace(CASES["rope-pre-rms-swiglu-tied-gqa"], compute_dtype="bfloat16")
    toks = tokens(0)
    # Parameters are created float32 whatever compute_dtype (test_counts also checks one concrete init).
    abstract = jax.eval_shape(Transformer(cfg).init, jax.random.key(0), toks)
    assert {leaf.dtype for leaf in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}

    params, forward32 = model(replace(cfg, compute_dtype="float32"))
    bf16 = fast_jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))
    out16 = bf16(params, toks)
    assert out16.dtype == jnp.float32
    logits16, logits32 = np.asarray(out16), np.asarray(forward32(params, toks))
    err = np.abs(logits16 - logits32).max()
    assert 0 < err < 0.05 * np.abs(logits32).max(), err  # bf16 really ran, and stayed close
    assert "bf16" in str(jax.make_jaxpr(lambda p: Transformer(cfg).apply({"params": p}, toks))(params))


def _loss_fn(cfg):
    def loss(params, toks):
        logits = Transformer(cfg).apply({"params": params}, toks[:, :-1])
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, toks[:, 1:, None], axis=-1).mean()

    return loss


@pytest.mark.parametrize("case", list(CASES))
def test_tuned_kernels_equal_the_reference_math_in_loss_and_gradients(case):
    """model.kernels=tuned (custom derivatives, blocked attention) against plain autodiff of the jax.nn math."""
    cfg = CASES[case]
    params, _ = model(cfg)
    toks = tokens(5, length=SEQ + 1)
    (loss, grads), (loss_ref, grads_ref) = (fast_jit(jax.value_and_grad(_loss_fn(replace(cfg, kernels=k))))(
        params, toks) for k in ("tuned", "reference"))
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-6)
    scale = max(np.abs(g).max() for g in jax.tree.leaves(grads_ref))  # (the key bias's gradient is 0 up to rounding)
    jax.tree.map(lambda g, g0: np.testing.assert_allclose(g, g0, atol=2e-6 * scale, rtol=0), grads, grads_ref)


def test_remat_policies_give_identical_loss_and_gradients(capsys):
    base = tiny(n_layers=3)
    params = randomize(abstract_params(Transformer(base), jnp.zeros((1, SEQ), jnp.int32)), base)
    toks = tokens(3, length=SEQ + 1)
    results = {r: fast_jit(jax.value_and_grad(_loss_fn(replace(base, remat=r))))(params, toks)
               for r in ("none", "block", "full")}
    loss0, grads0 = results["none"]
    assert np.isfinite(loss0) and float(loss0) > 0
    for remat in ("block", "full"):
        loss, grads = results[remat]
        assert float(loss) == pytest.approx(float(loss0), abs=1e-6)
        jax.tree.map(lambda g, g0: np.testing.assert_allclose(g, g0, atol=1e-6, rtol=1e-5), grads, grads0)

    # And they really differ in what the backward pass keeps from each layer (stacked [layers, ...] by the scan):
    # full keeps each block's input; block also the mid-block residual; none keeps every intermediate...
    stacked = {}
    for remat in ("none", "block", "full"):
        jax.ad_checkpoint.print_saved_residuals(_loss_fn(replace(base, remat=remat)), params, toks)
        lines = capsys.readouterr().out.splitlines()  # e.g. "f32[3,2,12,16] output of scan from ..."
        shapes = [(line.split("[", 1)[1].split("]", 1)[0], line) for line in lines]
        stacked[remat] = [tuple(map(int, dims.split(","))) for dims, line in shapes
                          if "output of scan" in line and dims.startswith(f"{base.n_layers},")]
    hidden = (base.n_layers, 2, SEQ, base.d_model)
    assert stacked["full"] == [hidden]
    assert stacked["block"] == [hidden, hidden]
    assert len(stacked["none"]) > 10
    # but never a [T, T] attention matrix: blocked attention keeps its log-sum-exp and recomputes probabilities
    assert not any(s[-2:] == (SEQ, SEQ) for remat in stacked for s in stacked[remat])


def test_dropout_only_in_training_and_reproducible():
    cfg = tiny(dropout=0.3)
    params = randomize(abstract_params(Transformer(cfg), jnp.zeros((1, SEQ), jnp.int32)), cfg)
    toks = tokens(4)

    @fast_jit
    def train(p, t, key):
        return Transformer(cfg).apply({"params": p}, t, deterministic=False, rngs={"dropout": key})

    @fast_jit
    def infer(p, t, key):  # an rng is offered, and must be ignored
        return Transformer(cfg).apply({"params": p}, t, deterministic=True, rngs={"dropout": key})

    k0, k1 = jax.random.key(0), jax.random.key(1)
    clean = np.asarray(infer(params, toks, k0))
    np.testing.assert_array_equal(clean, np.asarray(infer(params, toks, k1)))
    np.testing.assert_allclose(clean, ref.transformer(params, cfg, toks), atol=1e-4, rtol=1e-4)  # as without dropout
    a, a_again, b = (np.asarray(train(params, toks, k)) for k in (k0, k0, k1))
    np.testing.assert_array_equal(a, a_again)
    assert np.abs(a - clean).max() > 1e-2
    assert np.abs(a - b).max() > 1e-2
