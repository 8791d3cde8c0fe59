"""LoRA in the model (ADAPT-5): a new adapter (B = 0) leaves the model exactly as it was, and folding a trained one
into the weights gives the same function."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import AdaptConfig
from research.model.lora import merge_lora
from research.model.transformer import Transformer

from .harness import SEQ, abstract_params, fast_jit, randomize, tiny, tokens

ALL = AdaptConfig(method="lora", lora_rank=3, lora_alpha=6.0, lora_targets="q,k,v,o,mlp_in,mlp_gate,mlp_out")


def _base_and_adapted(cfg, lora):
    """Randomised base params, and the adapted model's params: the base plus LoRA leaves from its own init."""
    base = randomize(abstract_params(Transformer(cfg), jnp.zeros((1, SEQ), jnp.int32)), cfg)
    init = fast_jit(Transformer(cfg, adapt=lora).init)(jax.random.key(1), jnp.zeros((1, SEQ), jnp.int32))["params"]
    init = jax.tree.map(np.asarray, nn.meta.unbox(init))
    adapted = jax.tree.map(lambda x: x, base)
    for k in ("attn", "mlp"):
        adapted["blocks"][k] = {**base["blocks"][k],
                                **{n: v for n, v in init["blocks"][k].items() if n.startswith("lora_")}}
    return base, adapted


@pytest.mark.parametrize("targets", ["q,v", ALL.lora_targets])
def test_a_new_adapter_leaves_the_model_exactly_as_it_was(targets):
    cfg, lora = tiny(activation="swiglu"), AdaptConfig(method="lora", lora_rank=3, lora_targets=targets)
    base, adapted = _base_and_adapted(cfg, lora)
    assert {n for n in adapted["blocks"]["attn"] if n.startswith("lora_b")} == \
        {f"lora_b_{t}" for t in lora.targets if t in ("q", "k", "v", "o")}
    toks = tokens(0)
    plain = fast_jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))(base, toks)
    ours = fast_jit(lambda p, t: Transformer(cfg, adapt=lora).apply({"params": p}, t))(adapted, toks)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(plain))  # B = 0: bitwise the base model


def test_a_merged_adapter_equals_the_unmerged_one():
    cfg = tiny(activation="swiglu")
    base, adapted = _base_and_adapted(cfg, ALL)
    rng = np.random.default_rng(0)
    for k in ("attn", "mlp"):  # trained B: nonzero
        for n, v in adapted["blocks"][k].items():
            if n.startswith("lora_b"):
                adapted["blocks"][k][n] = rng.normal(0, 0.3, v.shape).astype(np.float32)
    toks = tokens(1)
    ours = np.asarray(fast_jit(lambda p, t: Transformer(cfg, adapt=ALL).apply({"params": p}, t))(adapted, toks))
    merged = merge_lora(adapted, ALL)
    assert jax.tree.structure(merged) == jax.tree.structure(base)
    plain = np.asarray(fast_jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))(merged, toks))
    np.testing.assert_allclose(plain, ours, atol=1e-6 * np.abs(ours).max(), rtol=0)
    before = np.asarray(fast_jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))(base, toks))
    assert np.abs(ours - before).max() > 1e-2  # it did change
