"""A tensor-parallel model (tensor=2: heads, KV heads, d_ff and vocab split) decodes what the single device does."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from research.infer import generate
from tests.infer.common import served
from tests.model.harness import tiny

CFG = tiny(positions="rope", n_heads=4, n_kv_heads=2, vocab_size=38, d_ff=32)  # vocab and heads divide over 2
PROMPTS = [[3, 14, 15, 9, 2], [6, 5]]


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs 2 devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
def test_tensor_parallel_decode_equals_single_device():
    single, _, _ = served(CFG)
    sharded, _, _ = served(CFG, tensor=2)
    wq = sharded.params["blocks"]["attn"]["wq"]
    assert wq.sharding.spec[2] == "tensor" and len(wq.sharding.device_set) == 2  # heads really are split
    tokens = np.array([[3, 14, 15, 9, 2], [0, 0, 0, 6, 5]], np.int32)
    positions = np.array([[0, 1, 2, 3, 4], [-1, -1, -1, 0, 1]], np.int32)
    logits_1, cache_1 = single.prefill(tokens, positions, max_len=8)
    logits_2, cache_2 = sharded.prefill(tokens, positions, max_len=8)
    assert cache_2.k.sharding.spec[3] == "tensor"  # the cache is split over KV heads too
    np.testing.assert_allclose(np.asarray(logits_2), np.asarray(logits_1), rtol=1e-5, atol=1e-5)
    assert generate(sharded, PROMPTS, 6).tokens == generate(single, PROMPTS, 6).tokens
