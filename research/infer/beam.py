"""Beam search: keep the `width` most likely continuing sequences per prompt, and the `width` best finished ones.

At step i every alive beam is extended by every token. The `width` best extensions that are not stop tokens stay
alive; stop tokens among the `width` best extensions overall finish (so width 1 is greedy), with score
logprob / length^length_penalty (length counts the generated tokens, stop included; length_penalty 0 ranks by raw
log-probability, larger values favour longer outputs). After `max_new_tokens` steps the alive beams finish too,
and the finished beams are ranked by score. The search core is model-free: it sees the model only through `feed`
and `reorder`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from research.config import ConfigError
from research.infer.decode import Generation, finish, stop_array
from research.infer.model import InferenceModel
from research.infer.prompts import check_prompts, left_pad


def _gather(seqs: jnp.ndarray, beams: jnp.ndarray) -> jnp.ndarray:
    """seqs [B, W, N] rows picked by beams [B, K] -> [B, K, N]."""
    return jnp.take_along_axis(seqs, beams[..., None], axis=1)


def _merge(seqs, scores, new_seqs, new_scores, width: int):
    """The `width` best of two finished sets ([B, W, N], [B, W] each); ties favour the older set."""
    scores, best = jax.lax.top_k(jnp.concatenate([scores, new_scores], axis=1), width)
    return _gather(jnp.concatenate([seqs, new_seqs], axis=1), best), scores


def _expand(i, logprobs, alive_logp, alive_seqs, fin_seqs, fin_scores, stop_ids, width, length_penalty):
    """One step: logprobs [B, W, V] of the alive beams -> new alive beams, their parents and tokens, finished set."""
    batch, _, vocab = logprobs.shape
    candidates = (alive_logp[..., None] + logprobs).reshape(batch, width * vocab)  # [B, W * V]
    is_stop = jnp.isin(jnp.arange(width * vocab) % vocab, stop_ids)  # [W * V]

    def best(scores):  # the `width` best candidates: (logp, parent beam, token, sequences)
        logp, flat = jax.lax.top_k(scores, width)  # [B, W]
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        return logp, parent, token, _gather(alive_seqs, parent).at[:, :, i].set(token)

    top_logp, _, top_token, top_seqs = best(candidates)  # stop tokens among the overall best `width` finish
    stop_scores = jnp.where(jnp.isin(top_token, stop_ids), top_logp / (i + 1.0) ** length_penalty, -jnp.inf)
    fin_seqs, fin_scores = _merge(fin_seqs, fin_scores, top_seqs, stop_scores, width)
    alive_logp, parent, token, alive_seqs = best(jnp.where(is_stop, -jnp.inf, candidates))
    return alive_logp, alive_seqs, parent, token, fin_seqs, fin_scores


def search(first_logprobs, feed: Callable, reorder: Callable, state, width: int, max_new: int, stop_ids,
           length_penalty, pad_id: int):
    """Beam search from first_logprobs [B, V] (the next-token log-probabilities after each prompt).

    state: the model's state for B * width rows (row b * width + w is beam w of prompt b), initially each prompt's
    state repeated. feed(state, tokens [B * W]) -> (logprobs [B * W, V], state); reorder(state, rows [B * W]) ->
    state with those rows. Returns (sequences int32 [B, W, max_new] padded with pad_id, scores [B, W]), best first.
    """
    batch, _ = first_logprobs.shape
    alive_logp = jnp.where(jnp.arange(width) == 0, 0.0, -jnp.inf)[None].repeat(batch, 0)  # one live beam at first
    blank = jnp.full((batch, width, max_new), pad_id, jnp.int32)
    carry = _expand(0, jnp.broadcast_to(first_logprobs[:, None], (batch, width, first_logprobs.shape[1])),
                    alive_logp, blank, blank, jnp.full((batch, width), -jnp.inf), stop_ids, width, length_penalty)

    def step(i, carry):
        (alive_logp, alive_seqs, parent, token, fin_seqs, fin_scores), state = carry
        rows = (jnp.arange(batch)[:, None] * width + parent).reshape(-1)  # [B * W] each beam's parent row
        logprobs, state = feed(reorder(state, rows), token.reshape(-1))
        logprobs = logprobs.reshape(batch, width, -1)
        return _expand(i, logprobs, alive_logp, alive_seqs, fin_seqs, fin_scores, stop_ids, width,
                       length_penalty), state

    (alive_logp, alive_seqs, _, _, fin_seqs, fin_scores), _ = jax.lax.fori_loop(1, max_new, step, (carry, state))
    return _merge(fin_seqs, fin_scores, alive_seqs, alive_logp / float(max_new) ** length_penalty, width)


def _model_search(model: InferenceModel, batch: int, length: int, width: int, max_new: int, pad_id: int):
    """Jittable prefill + beam search for one shape: the state is (KV cache, next positions) over B * W rows."""
    max_len = length + max_new - 1

    def run(params, tokens, positions, stop_ids, length_penalty):
        cache = model.new_cache(params, batch, max_len)
        logits, cache = model.apply(params, tokens, positions, cache)  # prefill once per prompt
        cache = cache.replace(k=cache.k.repeat(width, axis=1), v=cache.v.repeat(width, axis=1),
                              positions=cache.positions.repeat(width, axis=0))
        next_pos = (positions[:, -1] + 1).repeat(width)  # [B * W]

        def feed(state, tokens):
            cache, next_pos = state
            logits, cache = model.apply(params, tokens[:, None], next_pos[:, None], cache)
            return jax.nn.log_softmax(logits[:, 0]), (cache, next_pos + 1)

        def reorder(state, rows):
            cache, next_pos = state
            cache = cache.replace(k=cache.k[:, rows], v=cache.v[:, rows], positions=cache.positions[rows])
            return cache, next_pos[rows]

        return search(jax.nn.log_softmax(logits[:, -1]), feed, reorder, (cache, next_pos), width, max_new,
                      stop_ids, length_penalty, pad_id)

    return run


def beam_generate(model: InferenceModel, prompts: Sequence[Sequence[int]], max_new_tokens: int, width: int,
                  length_penalty: float = 1.0, stop_ids: Sequence[int] = (), pad_id: int = 0) -> Generation:
    """The best beam per prompt (stop token included when one ended it) and its score."""
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ConfigError(f"beams={width!r}: the beam width must be a positive integer. Fix: use e.g. 4.")
    if not np.isfinite(length_penalty):
        raise ConfigError(f"length_penalty={length_penalty}: must be finite. Fix: use e.g. 1.0 (0 = raw log-prob).")
    check_prompts(prompts, model.cfg, max_new_tokens, model.virtual_tokens)
    tokens, positions, _ = left_pad(prompts, pad_id)
    batch, length = tokens.shape
    stops = stop_array(stop_ids)
    fn = model.jitted(("beam", batch, length, width, max_new_tokens, pad_id, len(stops)),
                      lambda: _model_search(model, batch, length, width, max_new_tokens, pad_id))
    seqs, scores = fn(model.params, tokens, positions, stops,
                      np.float32(length_penalty))
    return dataclasses.replace(finish(np.asarray(seqs)[:, 0], stop_ids), scores=np.asarray(scores)[:, 0].tolist())
