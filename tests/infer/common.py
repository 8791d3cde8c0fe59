"""Shared pieces of the inference tests: a tiny model served by InferenceModel next to its plain full forward."""

from __future__ import annotations

import functools

import jax
import numpy as np

from research.config import ModelConfig
from research.infer import InferenceModel
from tests.model import harness


@functools.cache
def served(cfg: ModelConfig, tensor: int = 1) -> tuple[InferenceModel, object, object]:
    """(InferenceModel on `tensor` devices, its params, the plain jitted forward(params, tokens) as the reference)."""
    params, forward = harness.model(cfg)
    mesh = None
    if tensor > 1:
        from research.config import ParallelConfig
        from research.parallel import make_mesh

        mesh = make_mesh(ParallelConfig(data=1, tensor=tensor), jax.devices()[:tensor])
    options = harness.FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None
    return InferenceModel.create(cfg, params, mesh, compiler_options=options), params, forward


def full_logits(forward, params, seq, width: int = harness.SEQ) -> np.ndarray:
    """Logits [len(seq), V] of one unpadded sequence by a full forward pass (one compile: padded on the right to
    `width`; causal attention makes the padding invisible to the positions before it)."""
    buf = np.zeros((1, width), np.int32)
    buf[0, :len(seq)] = seq
    return np.asarray(forward(params, buf))[0, :len(seq)]


def greedy_reference(forward, params, prompt, steps: int, stop_ids=()) -> list[int]:
    """Repeated argmax of the full recompute: the textbook definition of greedy decoding."""
    seq = list(prompt)
    for _ in range(steps):
        seq.append(int(full_logits(forward, params, seq)[-1].argmax()))
        if seq[-1] in stop_ids:
            break
    return seq[len(prompt):]
