"""Scoring: per-token log-probabilities, sequence log-likelihoods and perplexity, from full forward passes.

A token stream is cut into windows of `window` predictions: window w reads stream[w W : w W + W] and predicts
stream[w W + 1 : w W + W + 1], so every token after the first is scored exactly once, from at most W preceding tokens
of its window. A text is scored after a document boundary (the tokenizer's EOS, as in the packed training stream),
so its first token is scored too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from research.config import ConfigError
from research.infer.model import InferenceModel


@dataclass(frozen=True)
class Perplexity:
    tokens: int  # tokens scored
    nll: float  # mean negative log-likelihood, nats per token
    perplexity: float  # exp(nll)


def _check_window(model: InferenceModel, window: int) -> None:
    context = model.cfg.max_seq_len - model.virtual_tokens  # a prompt- or prefix-tuned model's come first
    if not 1 <= window <= context:
        soft = f" minus its {model.virtual_tokens} virtual tokens" if model.virtual_tokens else ""
        raise ConfigError(f"window={window}: must be in [1, {context}] (model.max_seq_len={model.cfg.max_seq_len}"
                          f"{soft}). Fix: score with at most the model's context (e.g. the run's data.seq_len).")


def _windows(stream: np.ndarray, window: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) of each window of `stream` (the last one shorter)."""
    return [(stream[s:s + window], stream[s + 1:s + window + 1]) for s in range(0, len(stream) - 1, window)]


def _logprob_fn(model: InferenceModel):
    def logprobs(params, inputs, targets):  # [rows, W] each -> [rows, W] log p(target | inputs so far)
        logp = jax.nn.log_softmax(model.apply(params, inputs), axis=-1)  # [rows, W, V]
        return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return logprobs


def window_logprobs(model: InferenceModel, windows: Sequence[tuple[np.ndarray, np.ndarray]], window: int,
                    batch: int = 8) -> list[np.ndarray]:
    """log p(target) float64 for every target of every (inputs, targets) window, run `batch` windows at a time."""
    fn = model.jitted(("logprobs", batch, window), lambda: _logprob_fn(model))
    out = []
    for start in range(0, len(windows), batch):
        chunk = windows[start:start + batch]
        inputs = np.zeros((batch, window), np.int32)  # padding rows and columns are computed and dropped
        targets = np.zeros((batch, window), np.int32)
        for r, (x, y) in enumerate(chunk):
            inputs[r, :len(x)], targets[r, :len(y)] = x, y
        logp = np.asarray(fn(model.params, inputs, targets), dtype=np.float64)
        out += [logp[r, :len(y)] for r, (_, y) in enumerate(chunk)]
    return out


def token_logprobs(model: InferenceModel, texts: Sequence[Sequence[int]], context_id: int, window: int | None = None,
                   batch: int = 8) -> list[np.ndarray]:
    """log p(token | earlier tokens) for every token of every text (token ids), each text after `context_id`."""
    window = model.cfg.max_seq_len if window is None else window
    _check_window(model, window)
    for i, ids in enumerate(texts):
        if len(ids) == 0:
            raise ConfigError(f"texts[{i}]='': an empty text has no tokens to score. Fix: drop it or add text.")
    streams = [np.concatenate([[context_id], np.asarray(ids, np.int32)]).astype(np.int32) for ids in texts]
    pieces = [_windows(s, window) for s in streams]
    flat = window_logprobs(model, [w for p in pieces for w in p], window, batch)
    out, at = [], 0
    for p in pieces:
        out.append(np.concatenate(flat[at:at + len(p)]))
        at += len(p)
    return out


def sequence_loglik(model: InferenceModel, texts: Sequence[Sequence[int]], context_id: int,
                    window: int | None = None) -> list[float]:
    """log p(text) = sum of its tokens' log-probabilities, per text."""
    return [float(lp.sum()) for lp in token_logprobs(model, texts, context_id, window)]


def perplexity(model: InferenceModel, stream: np.ndarray, window: int, batch: int = 8) -> Perplexity:
    """Perplexity of a token stream (e.g. a held-out split, or [EOS] + a file's tokens) over stream[1:]."""
    _check_window(model, window)
    stream = np.asarray(stream, np.int32)
    if len(stream) < 2:
        raise ConfigError(f"stream of {len(stream)} tokens: nothing to predict. Fix: score at least one token.")
    logp = np.concatenate(window_logprobs(model, _windows(stream, window), window, batch))
    nll = float(-logp.mean())
    return Perplexity(tokens=len(logp), nll=nll, perplexity=math.exp(nll))
