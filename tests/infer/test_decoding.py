"""Decoding methods against independent references: greedy = repeated argmax of the full recompute; beam width 1 =
greedy; beam search = a plain-Python beam search and, wide enough, exhaustive search; sampling frequencies = the
renormalised truncated distribution (chi-square, fixed seed)."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.infer import Sampling, beam_generate, generate
from research.infer.beam import search
from research.infer.decode import stop_array
from research.infer.sampling import select
from tests.infer.common import greedy_reference, served
from tests.model.harness import fast_jit, tiny

CFG = tiny(positions="rope", n_kv_heads=2)
PROMPTS = [[3, 14, 15, 9, 2], [6, 5]]
NEW = 7


def test_greedy_equals_repeated_argmax_of_full_recompute():
    model, params, forward = served(CFG)
    out = generate(model, PROMPTS, NEW)
    for prompt, tokens in zip(PROMPTS, out.tokens):
        assert tokens == greedy_reference(forward, params, prompt, NEW)
    stop = out.tokens[0][2]  # a stop token the first row meets at its third step
    stopped = generate(model, PROMPTS, NEW, stop_ids=[stop])
    for prompt, tokens in zip(PROMPTS, stopped.tokens):
        assert tokens == greedy_reference(forward, params, prompt, NEW, stop_ids=[stop])
    assert stopped.stopped[0] and stopped.tokens[0][-1] == stop


def test_beam_width_one_equals_greedy():
    model, _, _ = served(CFG)
    greedy = generate(model, PROMPTS, NEW)
    assert beam_generate(model, PROMPTS, NEW, width=1, length_penalty=0.0).tokens == greedy.tokens
    stop = greedy.tokens[0][2]
    assert (beam_generate(model, PROMPTS, NEW, width=1, length_penalty=0.0, stop_ids=[stop]).tokens
            == generate(model, PROMPTS, NEW, stop_ids=[stop]).tokens)


def test_sampling_is_deterministic_given_a_seed():
    model, _, _ = served(CFG)
    method = Sampling(temperature=3.0, top_k=20, top_p=0.95)
    runs = [generate(model, PROMPTS, NEW, method, seed=s).tokens for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


# ---- sampling frequencies --------------------------------------------------------------------------------------------
PROBS = np.array([0.30, 0.22, 0.16, 0.12, 0.09, 0.06, 0.05])  # a small fixed distribution, distinct probabilities
CHI2_CRITICAL_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}  # chi-square 0.999 quantiles


def truncated_reference(probs, temperature, top_k, top_p) -> np.ndarray:
    """NumPy: softmax(log p / T), keep the top k, then the smallest prefix with mass >= top_p, renormalise."""
    p = np.exp(np.log(probs) / temperature)
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[:top_k] if top_k else order
    q = p[keep] / p[keep].sum()
    n = int(np.searchsorted(np.cumsum(q), top_p - 1e-12) + 1) if top_p < 1 else len(q)
    out = np.zeros_like(p)
    out[keep[:n]] = p[keep[:n]]
    return out / out.sum()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 3, 1.0), (1.0, 0, 0.6), (0.7, 5, 0.8), (1.5, 0, 1.0)])
def test_sampling_frequencies_match_truncated_distribution(temperature, top_k, top_p):
    n = 20000
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(PROBS, jnp.float32)), (n, len(PROBS)))
    draws = np.asarray(_select(logits, jax.random.key(7), np.float32(temperature), np.int32(top_k), np.float32(top_p)))
    counts = np.bincount(draws, minlength=len(PROBS))
    expected = truncated_reference(PROBS, temperature, top_k, top_p)
    assert np.all(counts[expected == 0] == 0), "a truncated token was sampled"
    kept = expected > 0
    chi2 = float(np.sum((counts[kept] - n * expected[kept]) ** 2 / (n * expected[kept])))
    assert chi2 < CHI2_CRITICAL_999[int(kept.sum()) - 1], (chi2, counts, expected)


_select = fast_jit(select)


# ---- beam search on a toy model --------------------------------------------------------------------------------------
V, N, M = 4, 3, 3  # toy vocabulary, steps, state classes
TABLE = np.random.default_rng(3).normal(0.0, 1.5, size=(N, M, V + 1, V)).astype(np.float32)


def toy_logprobs(step: int, tokens: list[int]) -> np.ndarray:
    """log p(next | tokens so far): depends on the step, the last token and sum(tokens) mod M (so beams carry state)."""
    logits = TABLE[step, sum(tokens) % M, tokens[-1] if tokens else V].astype(np.float64)
    return logits - np.log(np.exp(logits).sum())


def toy_search(width: int, stop_ids, length_penalty):
    """`search` driven by the toy model, compiled once per width."""
    if width not in _TOY:
        _TOY[width] = fast_jit(functools.partial(_toy_search, width))
    seqs, scores = _TOY[width](stop_array(stop_ids), np.float32(length_penalty))
    return np.asarray(seqs)[0], np.asarray(scores)[0]


_TOY: dict = {}


def _toy_search(width: int, stop_ids, length_penalty):
    """state = (step, token sum) per row: the logits depend on both, so reordering beams matters."""

    def feed(state, tokens):
        step, total = state
        total = total + tokens
        logits = jnp.asarray(TABLE)[step, total % M, tokens]
        return jax.nn.log_softmax(logits), (step + 1, total)

    def reorder(state, rows):
        step, total = state
        return step, total[rows]

    first = jax.nn.log_softmax(jnp.asarray(TABLE)[0, 0, V])[None]  # [1, V]
    state = (jnp.int32(1), jnp.zeros(width, jnp.int32))
    return search(first, feed, reorder, state, width, N, stop_ids, length_penalty, -1)


def reference_beam(width: int, stop_ids, length_penalty):
    """Plain Python beam search with the same rules: extend every alive beam by every token; the `width` best
    non-stop extensions stay alive, stop tokens among the `width` best extensions finish with score logp / len^penalty;
    at the end the alive beams finish."""
    alive, finished = [((), 0.0)], []
    for step in range(N):
        cands = [(seq + (t,), lp + toy_logprobs(step, list(seq))[t]) for seq, lp in alive for t in range(V)]
        cands.sort(key=lambda c: -c[1])
        finished += [(s, lp / len(s) ** length_penalty) for s, lp in cands[:width] if s[-1] in stop_ids]
        finished = sorted(finished, key=lambda c: -c[1])[:width]
        alive = [c for c in cands if c[0][-1] not in stop_ids][:width]
    finished += [(s, lp / N ** length_penalty) for s, lp in alive]
    return sorted(finished, key=lambda c: -c[1])[:width]


def exhaustive_best(stop_ids, length_penalty):
    """The best-scoring sequence over every sequence that ends at its first stop token or after N tokens."""
    best = None
    for n in range(1, N + 1):
        for seq in itertools.product(range(V), repeat=n):
            if any(t in stop_ids for t in seq[:-1]) or (n < N and seq[-1] not in stop_ids):
                continue
            lp = sum(toy_logprobs(i, list(seq[:i]))[t] for i, t in enumerate(seq))
            score = lp / n ** length_penalty
            if best is None or score > best[1]:
                best = (seq, score)
    return best


@pytest.mark.parametrize("width,stop_ids,length_penalty", [(2, (1,), 0.0), (3, (1, 2), 1.0), (2, (), 0.5)])
def test_beam_search_matches_python_reference(width, stop_ids, length_penalty):
    seqs, scores = toy_search(width, stop_ids, length_penalty)
    expected = reference_beam(width, stop_ids, length_penalty)
    for (seq, score), got, got_score in zip(expected, seqs, scores):
        assert tuple(got[:len(seq)]) == seq and np.all(got[len(seq):] == -1)
        np.testing.assert_allclose(got_score, score, rtol=1e-5)


@pytest.mark.parametrize("stop_ids,length_penalty", [((1,), 0.0), ((0, 3), 1.0)])
def test_wide_beam_search_is_exhaustive(stop_ids, length_penalty):
    seqs, scores = toy_search(V ** N, stop_ids, length_penalty)  # wide enough to keep every prefix alive
    seq, score = exhaustive_best(stop_ids, length_penalty)
    assert tuple(seqs[0][:len(seq)]) == seq
    np.testing.assert_allclose(scores[0], score, rtol=1e-5)
