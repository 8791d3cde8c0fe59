"""Prompts -> one left-padded batch: rows end together, so every row's next token goes into the same cache slot.

Row b of a batch whose longest prompt has T tokens holds T - len_b padding slots (position -1, masked from attention)
followed by its prompt at positions 0 .. len_b - 1; row b's next token is at position len_b.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from research.config import ConfigError, ModelConfig


def check_prompts(prompts: Sequence[Sequence[int]], cfg: ModelConfig, max_new_tokens: int,
                  virtual_tokens: int = 0) -> None:
    """Fail before any compile on an empty prompt, an unknown token id, or a prompt + output longer than the context
    (of which a prompt- or prefix-tuned model's `virtual_tokens` take the first positions)."""
    if len(prompts) == 0:
        raise ConfigError("prompts=[]: nothing to generate from. Fix: give at least one prompt.")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r}: must be a positive integer. Fix: use e.g. 64.")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ConfigError(f"prompt[{i}]='': an empty prompt gives the model nothing to condition on. "
                              "Fix: give at least one character (token) of prompt text.")
        ids = np.asarray(prompt)
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            raise ConfigError(f"prompt[{i}] token ids span [{ids.min()}, {ids.max()}]: outside the model's "
                              f"vocabulary [0, {cfg.vocab_size}). Fix: encode the prompt with the run's tokenizer.")
        context = cfg.max_seq_len - virtual_tokens
        soft = f" after its {virtual_tokens} virtual tokens" if virtual_tokens else ""
        if len(prompt) >= context:
            raise ConfigError(f"prompt[{i}] length={len(prompt)} tokens: fills the model's whole context "
                              f"model.max_seq_len={cfg.max_seq_len}{soft} (or more), leaving no room to generate. "
                              f"Fix: shorten the prompt to at most {context - 1} tokens.")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens + virtual_tokens > cfg.max_seq_len:
        soft = f" and the model's {virtual_tokens} virtual tokens" if virtual_tokens else ""
        raise ConfigError(f"max_new_tokens={max_new_tokens}: a {longest}-token prompt plus {max_new_tokens} new "
                          f"tokens{soft} exceeds the model's context model.max_seq_len={cfg.max_seq_len}. Fix: use "
                          f"max_new_tokens <= {cfg.max_seq_len - virtual_tokens - longest} or a shorter prompt.")


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens int32 [batch, T], positions int32 [batch, T] with -1 on padding, lengths int32 [batch])."""
    lengths = np.asarray([len(p) for p in prompts], dtype=np.int32)
    width = int(lengths.max())
    tokens = np.full((len(prompts), width), pad_id, dtype=np.int32)  # [batch, T]
    positions = np.full((len(prompts), width), -1, dtype=np.int32)
    for row, prompt in enumerate(prompts):
        n = len(prompt)
        tokens[row, width - n:] = np.asarray(prompt, dtype=np.int32)
        positions[row, width - n:] = np.arange(n, dtype=np.int32)
    return tokens, positions, lengths
