"""Packing: documents -> one token stream per split -> windows of seq_len + 1 tokens, read by random access.

Stream = doc_0, EOS, doc_1, EOS, ... Window w = stream[w*(L+1) : (w+1)*(L+1)]: windows do not overlap, so one epoch
over all windows holds every token exactly once. The last window is padded with PAD; the loss must mask targets equal
to the tokenizer's pad_id (the only place PAD appears).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from research.data.chat import LOSS, START


def pack(docs: Sequence[np.ndarray], eos_id: int, dtype: np.dtype) -> np.ndarray:
    """Concatenate documents, each followed by EOS, into one 1-D array of `dtype`."""
    total = sum(len(d) + 1 for d in docs)
    out = np.empty(total, dtype=dtype)  # [sum(len(doc) + 1)]
    pos = 0
    for d in docs:
        out[pos:pos + len(d)] = d
        out[pos + len(d)] = eos_id
        pos += len(d) + 1
    return out


def num_windows(num_tokens: int, seq_len: int) -> int:
    """Windows of seq_len + 1 tokens needed to hold `num_tokens` tokens (the last one padded)."""
    return -(-num_tokens // (seq_len + 1))


def gather_windows(stream: np.ndarray, window_ids: np.ndarray, seq_len: int, pad_id: int) -> np.ndarray:
    """Rows stream[w*(L+1):(w+1)*(L+1)] for each w, PAD-filled past the end: int32 [len(window_ids), L + 1].

    One contiguous slice per row, so a memory-mapped stream reads only the pages a batch needs.
    """
    width = seq_len + 1
    rows = np.full((len(window_ids), width), pad_id, dtype=np.int32)  # [n, L + 1]
    for r, w in enumerate(np.asarray(window_ids).tolist()):
        chunk = stream[w * width:(w + 1) * width]
        rows[r, :len(chunk)] = chunk
    return rows


def to_example(rows: np.ndarray, pad_id: int, flags: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Windows [n, L + 1] -> {"inputs": [n, L], "targets": [n, L]}, targets shifted left by one. With chat flags
    [n, L + 1] (research.data.chat), targets not flagged for the loss become pad_id."""
    targets = rows[:, 1:]
    if flags is not None:
        targets = np.where(flags[:, 1:] & LOSS, targets, np.int32(pad_id))
    return {"inputs": np.ascontiguousarray(rows[:, :-1]), "targets": np.ascontiguousarray(targets)}


def to_document_example(rows: np.ndarray, eos_id: int, pad_id: int,
                        flags: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Windows [n, L + 1] -> to_example's arrays plus, for document masking, "segments" [n, L] (the document of each
    input) and "positions" [n, L] (restarting at 0 with each document); a target that begins the next document is
    masked (pad_id). Documents begin after each EOS (a document's EOS is its last token), or, for chat data, where
    the flags say an example starts. Each document then trains exactly as it would alone."""
    example = to_example(rows, pad_id, flags)
    if flags is None:
        starts = np.concatenate([np.ones_like(rows[:, :1], bool), rows[:, :-1] == eos_id], axis=1)  # [n, L + 1]
    else:
        starts = (flags & START).astype(bool)
    starts[:, 0] = True  # a window's first token begins a document (or the rest of one)
    inputs_start = starts[:, :-1]  # [n, L]
    segments = np.cumsum(inputs_start, axis=1, dtype=np.int32) - 1
    index = np.arange(inputs_start.shape[1], dtype=np.int32)
    positions = index - np.maximum.accumulate(np.where(inputs_start, index, 0), axis=1)
    targets = np.where(starts[:, 1:], np.int32(pad_id), example["targets"])
    return example | {"targets": targets, "segments": segments, "positions": positions.astype(np.int32)}
