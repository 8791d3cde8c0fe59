"""KV-cache decoding: the logits of prefill + one-token steps equal a full recompute at every step, for every
position encoding, MHA/GQA/MQA, sliding windows and a batch of prompts of different lengths (left padded)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import AdaptConfig
from research.infer import InferenceModel
from research.model import Transformer
from tests.infer.common import full_logits, served
from tests.model import harness
from tests.model.harness import FAST_CPU_COMPILE, SEQ, VOCAB, abstract_params, fast_jit, tiny

CONFIGS = {
    "rope-gqa": tiny(positions="rope", n_kv_heads=2),
    "alibi-mqa": tiny(positions="alibi", n_kv_heads=1),
    "learned-mha-postnorm-bias": tiny(positions="learned", n_kv_heads=4, norm_placement="post", norm="layernorm",
                                      use_bias=True, activation="gelu"),
    "sinusoidal-window": tiny(positions="sinusoidal", sliding_window=4),
    "rope-mqa-window": tiny(positions="rope", n_kv_heads=1, sliding_window=3),
    "none": tiny(positions="none", activation="swiglu"),
}
PROMPT_LENGTHS = (5, 2)  # row 1 is left padded by 3 slots
STEPS = 6


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_decoding_matches_full_recompute(name):
    _assert_cached_decoding_matches(name, CONFIGS[name], *served(CONFIGS[name]))


def test_cached_decoding_with_adapters_matches_full_recompute():
    """Adapters sit after (serial) the attention that fills the cache: decoding keeps them at every step."""
    cfg, adapt = tiny(positions="rope", n_kv_heads=2), AdaptConfig(method="adapter_serial", adapter_size=3)
    params = dict(harness.model(cfg)[0])  # the randomised base
    shapes = abstract_params(Transformer(cfg, adapt=adapt), jnp.zeros((1, SEQ), jnp.int32))["blocks"]
    rng = np.random.default_rng(2)
    params["blocks"] = {**params["blocks"], **{  # trained adapters: every leaf nonzero
        place: {n: jnp.asarray(rng.normal(0, 0.3, leaf.shape), jnp.float32) for n, leaf in shapes[place].items()}
        for place in ("adapter_attn", "adapter_mlp")}}
    options = FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None
    served_model = InferenceModel.create(cfg, params, compiler_options=options, adapt=adapt)
    forward = fast_jit(lambda p, t: Transformer(cfg, adapt=adapt).apply({"params": p}, t))
    _assert_cached_decoding_matches("adapter_serial", cfg, served_model, params, forward)


def _assert_cached_decoding_matches(name, cfg, model, params, forward):
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, VOCAB, n + STEPS).astype(np.int32) for n in PROMPT_LENGTHS]
    width = max(PROMPT_LENGTHS)
    tokens = np.zeros((2, width), np.int32)
    positions = np.full((2, width), -1, np.int32)
    for row, n in enumerate(PROMPT_LENGTHS):
        tokens[row, width - n:] = seqs[row][:n]
        positions[row, width - n:] = np.arange(n)
    reference = [full_logits(forward, params, s) for s in seqs]  # [n + STEPS, V] per row

    logits, cache = model.prefill(tokens, positions, max_len=width + STEPS)
    logits = np.asarray(logits)
    for row, n in enumerate(PROMPT_LENGTHS):
        np.testing.assert_allclose(logits[row, width - n:], reference[row][:n], rtol=1e-5, atol=1e-4)
    shape = cfg.resolved()
    assert cache.k.shape == (cfg.n_layers, 2, width + STEPS, shape.n_kv_heads, shape.head_dim)  # KV heads only
    for step in range(STEPS):
        fed = np.array([[s[n + step]] for s, n in zip(seqs, PROMPT_LENGTHS)], np.int32)
        at = np.array([[n + step] for n in PROMPT_LENGTHS], np.int32)
        logits, cache = model.decode_step(cache, fed, at)
        for row, n in enumerate(PROMPT_LENGTHS):
            np.testing.assert_allclose(np.asarray(logits)[row, 0], reference[row][n + step], rtol=1e-5, atol=1e-4,
                                       err_msg=f"{name}: row {row}, decode step {step}")
    assert int(cache.index) == width + STEPS
