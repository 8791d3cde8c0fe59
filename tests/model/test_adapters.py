"""Adapters in the model (ADAPT-4): new ones (W_up = 0) leave the model exactly as it was, and trained ones compute
Houlsby's serial and He et al.'s parallel form, checked against the NumPy reference."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import AdaptConfig
from research.model.transformer import Transformer

from . import reference
from .harness import SEQ, abstract_params, fast_jit, randomize, tiny, tokens

SERIAL = AdaptConfig(method="adapter_serial", adapter_size=5)
PARALLEL_MLP = AdaptConfig(method="adapter_parallel", adapter_size=3, adapter_places="mlp", adapter_scale=2.5)


def _base_and_adapted(cfg, adapt):
    """Randomised base params, and the adapted model's: the base plus the adapters from their own init."""
    base = randomize(abstract_params(Transformer(cfg), jnp.zeros((1, SEQ), jnp.int32)), cfg)
    init = fast_jit(Transformer(cfg, adapt=adapt).init)(jax.random.key(1), jnp.zeros((1, SEQ), jnp.int32))["params"]
    init = jax.tree.map(np.asarray, nn.meta.unbox(init))
    adapters = {k: v for k, v in init["blocks"].items() if k.startswith("adapter_")}
    assert set(adapters) == {f"adapter_{p}" for p in adapt.places}
    return base, {**base, "blocks": {**base["blocks"], **adapters}}


@pytest.mark.parametrize("adapt", [SERIAL, PARALLEL_MLP], ids=["serial", "parallel_mlp"])
def test_new_adapters_leave_the_model_exactly_as_it_was(adapt):
    cfg = tiny(activation="swiglu")
    base, adapted = _base_and_adapted(cfg, adapt)
    toks = tokens(0)
    plain = fast_jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))(base, toks)
    ours = fast_jit(lambda p, t: Transformer(cfg, adapt=adapt).apply({"params": p}, t))(adapted, toks)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(plain))  # W_up = b_up = 0: bitwise the base model


@pytest.mark.parametrize("adapt,placement", [(SERIAL, "pre"), (PARALLEL_MLP, "pre"), (SERIAL, "post")],
                         ids=["serial_pre", "parallel_mlp_pre", "serial_post"])
def test_trained_adapters_match_the_numpy_reference(adapt, placement):
    cfg = tiny(activation="gelu", norm_placement=placement)
    _, adapted = _base_and_adapted(cfg, adapt)
    rng = np.random.default_rng(3)
    for place in adapt.places:  # trained: every adapter leaf nonzero
        leaves = adapted["blocks"][f"adapter_{place}"]
        adapted["blocks"][f"adapter_{place}"] = {
            n: rng.normal(0, 0.5 if n.startswith("w") else 0.2, v.shape).astype(np.float32) for n, v in leaves.items()}
    toks = tokens(1)
    ours = np.asarray(fast_jit(lambda p, t: Transformer(cfg, adapt=adapt).apply({"params": p}, t))(adapted, toks))
    want = reference.transformer(adapted, cfg, toks, adapt)
    np.testing.assert_allclose(ours, want, atol=2e-5 * np.abs(want).max(), rtol=0)
    plain = reference.transformer(adapted, cfg, toks)  # the same weights without the adapters: a real difference
    assert np.abs(want - plain).max() > 1e-2
