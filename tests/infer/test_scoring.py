"""Scoring against NumPy log-softmax of the plain forward pass: per-token log-probabilities (texts shorter and
longer than the window), sequence log-likelihoods and perplexity."""

from __future__ import annotations

import math

import numpy as np

from research.infer import perplexity, sequence_loglik, token_logprobs
from tests.infer.common import full_logits, served
from tests.model.harness import VOCAB, tiny

CFG = tiny(positions="alibi", n_kv_heads=1)
EOS = 36
WINDOW = 8


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - x.max(-1, keepdims=True) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))


def reference(forward, params, stream: np.ndarray) -> np.ndarray:
    """log p(stream[i + 1] | the window's tokens before it), window by window, each window a separate forward."""
    out = []
    for start in range(0, len(stream) - 1, WINDOW):
        x, y = stream[start:start + WINDOW], stream[start + 1:start + WINDOW + 1]
        out.append(log_softmax(full_logits(forward, params, x))[np.arange(len(y)), y])
    return np.concatenate(out)


def test_token_logprobs_and_loglik_match_numpy():
    model, params, forward = served(CFG)
    rng = np.random.default_rng(0)
    texts = [rng.integers(0, VOCAB - 1, n).tolist() for n in (3, 7, 19)]  # the last spans three windows
    got = token_logprobs(model, texts, context_id=EOS, window=WINDOW)
    for text, lp in zip(texts, got):
        stream = np.asarray([EOS] + text)
        assert lp.shape == (len(text),)
        np.testing.assert_allclose(lp, reference(forward, params, stream), rtol=1e-5, atol=1e-5)
    # a short text in one window: the first token after EOS, the rest after their prefix
    short = log_softmax(full_logits(forward, params, [EOS] + texts[0]))
    np.testing.assert_allclose(got[0], [short[i, t] for i, t in enumerate(texts[0])], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sequence_loglik(model, texts, EOS, WINDOW), [lp.sum() for lp in got], rtol=1e-6)


def test_perplexity_of_a_stream():
    model, params, forward = served(CFG)
    stream = np.random.default_rng(1).integers(0, VOCAB, 30).astype(np.int32)
    result = perplexity(model, stream, window=WINDOW, batch=2)  # 4 windows in 2 batches
    ref = reference(forward, params, stream)
    assert result.tokens == len(stream) - 1
    np.testing.assert_allclose(result.nll, -ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(result.perplexity, math.exp(-ref.mean()), rtol=1e-5)
