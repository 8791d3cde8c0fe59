"""Greedy and sampled generation: prefill the prompts into a KV cache, then decode token by token, all in one jit.

The decode loop is a `lax.while_loop` that stops when every row has produced a stop token or `max_new_tokens` are
out. Keys are fold_in(seed, step), so a seed fixes the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from research.infer import sampling
from research.infer.model import InferenceModel
from research.infer.prompts import check_prompts, left_pad


@dataclass(frozen=True)
class Generation:
    """Generated ids per prompt (stop token included when one ended the row) and why each row ended."""

    tokens: list[list[int]]
    stopped: list[bool]  # True: a stop token ended the row; False: max_new_tokens ran out
    scores: list[float] | None = None  # beam search: the chosen beam's length-normalised log-probability


def stop_array(stop_ids: Sequence[int]) -> np.ndarray:
    """Stop ids as int32 [8k], padded with -1 (never a token), so 0-8 stop tokens share one compiled loop."""
    ids = np.asarray(stop_ids, dtype=np.int32).reshape(-1)
    out = np.full(max(8, -(-len(ids) // 8) * 8), -1, dtype=np.int32)
    out[:len(ids)] = ids
    return out


def finish(out: np.ndarray, stop_ids: Sequence[int]) -> Generation:
    """Cut each row of out [batch, N] after its first stop token."""
    tokens, stopped = [], []
    for row in np.asarray(out):
        hits = np.flatnonzero(np.isin(row, np.asarray(stop_ids, dtype=row.dtype)))
        end = int(hits[0]) + 1 if len(hits) else len(row)
        tokens.append(row[:end].tolist())
        stopped.append(bool(len(hits)))
    return Generation(tokens, stopped)


def _loop(model: InferenceModel, batch: int, length: int, max_new: int, pad_id: int):
    """The jitted prefill + decode loop for one (batch, prompt length, max_new) shape."""
    max_len = length + max_new - 1  # the last token chosen is never fed back

    def run(params, tokens, positions, stop_ids, key, temperature, top_k, top_p):
        cache = model.new_cache(params, batch, max_len)
        logits, cache = model.apply(params, tokens, positions, cache)  # [batch, T, V]
        first = sampling.select(logits[:, -1], jax.random.fold_in(key, 0), temperature, top_k, top_p)  # [batch]
        out = jnp.full((batch, max_new), pad_id, jnp.int32).at[:, 0].set(first)
        state = (jnp.int32(1), out, cache, positions[:, -1] + 1, jnp.isin(first, stop_ids))

        def unfinished(state):
            i, _, _, _, done = state
            return (i < max_new) & ~jnp.all(done)

        def step(state):
            i, out, cache, next_pos, done = state
            fed = jax.lax.dynamic_index_in_dim(out, i - 1, axis=1)  # [batch, 1] the previous token
            logits, cache = model.apply(params, fed, next_pos[:, None], cache)
            token = sampling.select(logits[:, 0], jax.random.fold_in(key, i), temperature, top_k, top_p)
            token = jnp.where(done, pad_id, token)
            out = jax.lax.dynamic_update_index_in_dim(out, token, i, axis=1)
            return i + 1, out, cache, next_pos + 1, done | jnp.isin(token, stop_ids)

        return jax.lax.while_loop(unfinished, step, state)[1]  # [batch, max_new]

    return run


GREEDY = sampling.Sampling(temperature=0.0)


def generate(model: InferenceModel, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             method: sampling.Sampling = GREEDY, stop_ids: Sequence[int] = (),
             seed: int = 0, pad_id: int = 0) -> Generation:
    """Continue each prompt (token ids) by up to `max_new_tokens` tokens, greedily or by sampling."""
    check_prompts(prompts, model.cfg, max_new_tokens, model.virtual_tokens)
    tokens, positions, _ = left_pad(prompts, pad_id)
    batch, length = tokens.shape
    stops = stop_array(stop_ids)
    fn = model.jitted(("generate", batch, length, max_new_tokens, pad_id, len(stops)),
                      lambda: _loop(model, batch, length, max_new_tokens, pad_id))
    out = fn(model.params, tokens, positions, stops,
             jax.random.key(seed), np.float32(method.temperature), np.int32(method.top_k), np.float32(method.top_p))
    return finish(np.asarray(out), stop_ids)
