"""Document masking (data.document_mask): packed documents are attended, positioned and scored as if each ran alone."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.data.packing import to_document_example
from research.model.attention import attend, blocked_attention
from research.model.positions import alibi_slopes
from research.model.transformer import Transformer
from research.train.losses import token_losses

from .harness import VOCAB, abstract_params, fast_jit, randomize, tiny

EOS, PAD = VOCAB - 1, -1
LENGTHS = (5, 7, 4)  # a window of 16 inputs: two whole documents (EOS included), then the start of a third


def test_packing_marks_documents_positions_and_boundary_targets_by_hand():
    e, p = 9, 8
    rows = np.array([[1, 2, e, 3, 4, 5, e, 6, 7], [e, 1, 2, 3, 4, 5, 6, 7, p]])  # [2, L + 1], L = 8
    example = to_document_example(rows, eos_id=e, pad_id=p)
    np.testing.assert_array_equal(example["inputs"], [[1, 2, e, 3, 4, 5, e, 6], [e, 1, 2, 3, 4, 5, 6, 7]])
    # the target after an EOS input belongs to the next document: not trained on
    np.testing.assert_array_equal(example["targets"], [[2, e, p, 4, 5, e, p, 7], [p, 2, 3, 4, 5, 6, 7, p]])
    np.testing.assert_array_equal(example["segments"], [[0, 0, 0, 1, 1, 1, 1, 2], [0, 1, 1, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(example["positions"], [[0, 1, 2, 0, 1, 2, 3, 0], [0, 0, 1, 2, 3, 4, 5, 6]])


def _documents(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, EOS, n).astype(np.int32) for n in LENGTHS]
    for d in docs[:-1]:
        d[-1] = EOS  # whole documents end with their EOS; the last one is cut by the window
    return docs


def _packed(docs: list[np.ndarray]) -> dict:
    stream = np.concatenate(docs + [np.array([7], np.int32)])[None]  # one row of 16 inputs (+ the last target)
    return {k: jnp.asarray(v) for k, v in to_document_example(stream, EOS, PAD).items()}


@functools.cache
def _model(cfg):
    params = randomize(abstract_params(Transformer(cfg), jnp.zeros((1, 16), jnp.int32)), cfg)

    def packed(p, batch):
        return Transformer(cfg).apply({"params": p}, batch["inputs"], batch["positions"], segments=batch["segments"])

    def alone(p, tokens):
        return Transformer(cfg).apply({"params": p}, tokens)

    def packed_loss(p, batch):
        return token_losses(packed(p, batch), batch["targets"], PAD, 0.0)[1]

    def alone_loss(p, docs):  # each document's own next-token loss, summed
        return sum(token_losses(alone(p, d[None, :-1]), d[None, 1:], PAD, 0.0)[1] for d in docs)

    return params, fast_jit(packed), fast_jit(alone), fast_jit(jax.grad(packed_loss)), fast_jit(jax.grad(alone_loss))


CASES = {
    "rope": dict(positions="rope"),
    "rope-reference-kernels": dict(positions="rope", kernels="reference"),
    "alibi": dict(positions="alibi"),
    "alibi-reference-kernels": dict(positions="alibi", kernels="reference"),
    "learned": dict(positions="learned"),
    "sinusoidal-window3": dict(positions="sinusoidal", sliding_window=3),
    "bidirectional": dict(positions="rope", causal=False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_packed_document_gets_the_logits_it_gets_alone(case):
    cfg = tiny(**CASES[case])
    params, packed, alone, *_ = _model(cfg)
    docs = _documents()
    logits = np.asarray(packed(params, _packed(docs)))[0]  # [16, vocab]
    start = 0
    for doc in docs:
        expected = np.asarray(alone(params, jnp.asarray(doc[None])))[0]
        np.testing.assert_allclose(logits[start:start + len(doc)], expected, atol=2e-5, rtol=2e-5)
        start += len(doc)


def test_the_packed_loss_and_its_gradients_are_the_documents_own():
    """Targets across a boundary are masked, so the packed sum of token losses (and its gradient) is the sum of each
    document's next-token loss computed alone."""
    cfg = tiny(positions="rope")
    params, packed, alone, packed_grad, alone_grad = _model(cfg)
    docs = _documents(seed=1)
    batch = _packed(docs)
    ends = [np.concatenate([d, [7]]) if d is docs[-1] else d for d in docs]  # the window's last target ends doc 3
    assert int(np.sum(np.asarray(batch["targets"]) != PAD)) == sum(len(d) - 1 for d in ends)
    for a, b in zip(jax.tree.leaves(packed_grad(params, batch)), jax.tree.leaves(alone_grad(params, ends))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * np.abs(np.asarray(b)).max() + 1e-7)


@functools.cache
def _blocked_and_masked(causal, window, alibi):
    """Blocked attention (blocks of 3 rows) with segments and its hand-written backward, and the explicit-mask path
    under autodiff: (value, grads) of a random projection of each."""
    cfg = tiny(d_model=32, n_heads=4, n_kv_heads=2, causal=causal, sliding_window=window,
               positions="alibi" if alibi else "none")
    projection = jnp.asarray(np.random.default_rng(3).standard_normal((2, 16, 4, 8)), jnp.float32)

    def blocked(q, k, v, segments):
        slopes = alibi_slopes(4) if alibi else None
        return blocked_attention(q, k, v, jnp.arange(16), slopes, causal=causal, window=window, segments=segments,
                                 block=3)

    def masked(q, k, v, segments):
        return attend(q, k, v, dataclasses.replace(cfg, kernels="reference"), None, None, segments=segments)

    def value_and_grads(f):
        return jax.value_and_grad(lambda q, k, v, s: jnp.sum(f(q, k, v, s) * projection), argnums=(0, 1, 2))

    return fast_jit(lambda q, k, v, s: (value_and_grads(blocked)(q, k, v, s), value_and_grads(masked)(q, k, v, s)))


@pytest.mark.parametrize("causal,window,alibi", [(True, None, False), (True, 4, True), (False, None, True)])
def test_blocked_attention_over_documents_matches_the_masked_path_in_values_and_gradients(causal, window, alibi):
    rng = np.random.default_rng(5)
    q = jnp.asarray(rng.standard_normal((2, 16, 4, 8)) * 2, jnp.float32)
    k, v = (jnp.asarray(rng.standard_normal((2, 16, 2, 8)), jnp.float32) for _ in range(2))
    segments = jnp.asarray([[0] * 5 + [1] * 7 + [2] * 4, [0] * 2 + [1] * 9 + [2] * 5], jnp.int32)
    (value, grads), (ref_value, ref_grads) = _blocked_and_masked(causal, window, alibi)(q, k, v, segments)
    np.testing.assert_allclose(value, ref_value, atol=1e-4, rtol=1e-5)
    for name, g, r in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")
        assert np.abs(np.asarray(r)).max() > 1e-2
