"""Choosing the next token from logits: greedy (temperature 0) or sampling with temperature, top-k and top-p.

Sampling draws from softmax(logits / temperature) restricted to the k most likely tokens and then to the smallest
set of those whose probability reaches p (the nucleus), renormalised. The knobs are traced values, so every setting
shares one compiled decode loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from research.config import ConfigError


@dataclass(frozen=True)
class Sampling:
    """temperature 0 = greedy (argmax); top_k 0 and top_p 1.0 disable those truncations."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise ConfigError(f"temperature={self.temperature}: must be >= 0. Fix: use 0 for greedy or e.g. 0.8.")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"top_k={self.top_k!r}: must be a non-negative integer. Fix: use 0 (off) or e.g. 40.")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1]. Fix: use 1.0 (off) or e.g. 0.9.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def truncate(logits: jnp.ndarray, top_k, top_p) -> jnp.ndarray:
    """logits [..., V] with every token outside the top-k, then outside the top-p nucleus, set to -inf.

    Ties at a threshold are all kept. top_k <= 0 and top_p >= 1 keep everything.
    """
    vocab = logits.shape[-1]
    ordered = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)  # [..., V] descending
    k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)
    kth = jnp.take_along_axis(ordered, jnp.broadcast_to(k - 1, ordered.shape[:-1])[..., None], axis=-1)  # [..., 1]
    ordered = jnp.where(jnp.arange(vocab) < k, ordered, -jnp.inf)
    probs = jax.nn.softmax(ordered, axis=-1)  # the top-k distribution, in descending order
    before = jnp.cumsum(probs, axis=-1) - probs  # probability mass strictly ahead of each token
    in_nucleus = (before < top_p) | (top_p >= 1.0)  # the first token is always in
    last = jnp.sum(in_nucleus & (jnp.arange(vocab) < k), axis=-1, keepdims=True) - 1  # [..., 1] last kept rank
    threshold = jnp.maximum(kth, jnp.take_along_axis(ordered, last, axis=-1))
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def select(logits: jnp.ndarray, key: jax.Array, temperature, top_k, top_p) -> jnp.ndarray:
    """Next tokens int32 [batch] from logits [batch, V]: argmax when temperature == 0, else a truncated sample."""
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
    sampled = jax.random.categorical(key, truncate(scaled, top_k, top_p), axis=-1).astype(jnp.int32)
    return jnp.where(temperature > 0, sampled, greedy)
