"""LoRA fine-tuning of a trained base (ADAPT-5): only A and B train and hold optimiser state; the base's bytes do
not change."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from research.train import run
from research.train.setup import restore_state

from .helpers import final_params, tiny_run


@pytest.fixture(scope="module")
def base(small_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("base")
    run(tiny_run(small_corpus), workdir, progress=False)
    return workdir


def test_lora_trains_only_its_adapters_from_a_frozen_base(small_corpus, base, tmp_path):
    config = tiny_run(small_corpus, steps=6).override(
        f"init.from_run={base}", "adapt.method=lora", "adapt.lora_rank=2", "adapt.lora_targets=q,v,mlp_in",
        "optim.lr=1e-2", "optim.warmup_steps=0")
    summary = run(config, tmp_path, progress=False)
    assert summary.status == "complete" and summary.base["step"] == 24
    assert summary.trainable_params == 2 * (2 * (32 * 2 + 2 * 32) + (32 * 2 + 2 * 128))  # layers x (q, v, mlp_in)
    state, _, _ = restore_state(tmp_path)
    tuned = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
    start = dict(jax.tree_util.tree_flatten_with_path(final_params(base))[0])
    lora = {jax.tree_util.keystr(p) for p, _ in tuned if "lora_" in jax.tree_util.keystr(p)}
    assert lora == {f"['blocks']['{m}']['lora_{ab}_{t}']" for m, t in (("attn", "q"), ("attn", "v"),
                                                                       ("mlp", "mlp_in")) for ab in "ab"}
    for path, value in tuned:
        if path in start:  # a base weight: bitwise unchanged
            assert np.array_equal(np.asarray(value).view(np.uint8), np.asarray(start[path]).view(np.uint8))
        elif "lora_b" in jax.tree_util.keystr(path):
            assert np.abs(value).max() > 0  # B left zero: it trained
    moments = [x for x in jax.tree.leaves(state.opt_state) if getattr(x, "ndim", 0) > 0]
    assert len(moments) == 2 * len(lora)  # Adam's two moments for each adapter leaf, none for the frozen base
