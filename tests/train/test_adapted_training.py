"""Parameter-efficient fine-tuning of a trained base (ADAPT-4, ADAPT-5): only what the method adds trains and holds
optimiser state; the base's bytes do not change; checkpoints hold the adapters and a reference to the base."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from research.config import ConfigError
from research.infer import load_run
from research.interop.rundir import merge_run
from research.model import Transformer
from research.train import run
from research.train.setup import restore_state

from .helpers import assert_trees_bitwise_equal, final_params, tiny_run

LORA = ("adapt.method=lora", "adapt.lora_rank=2", "adapt.lora_targets=q,v,mlp_in", "optim.lr=1e-2",
        "optim.warmup_steps=0")


@pytest.fixture(scope="module")
def base(small_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("base")
    run(tiny_run(small_corpus), workdir, progress=False)
    return workdir


def _assert_base_unchanged_and_adapters_trained(workdir, base, trained_marker: str) -> set:
    """Every base leaf bitwise as in the base run, every `trained_marker` leaf moved off zero, Adam moments only for
    the added leaves; returns the added leaves' paths."""
    state, _, _ = restore_state(workdir)
    tuned = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
    start = dict(jax.tree_util.tree_flatten_with_path(final_params(base))[0])
    added = {jax.tree_util.keystr(p) for p, _ in tuned if p not in start}
    for path, value in tuned:
        if path in start:  # a base weight: bitwise unchanged
            assert np.array_equal(np.asarray(value).view(np.uint8), np.asarray(start[path]).view(np.uint8))
        elif trained_marker in jax.tree_util.keystr(path):
            assert np.abs(value).max() > 0  # started at zero: it trained
    moments = [x for x in jax.tree.leaves(state.opt_state) if getattr(x, "ndim", 0) > 0]
    assert len(moments) == 2 * len(added)  # Adam's two moments for each added leaf, none for the frozen base
    _assert_serves_the_adapted_model(workdir, state.params)
    return added


def _assert_serves_the_adapted_model(workdir, params) -> None:
    """load_run (generate, score) computes the adapted model's logits (LoRA merged into the weights), not the base's."""
    model, _, config = load_run(workdir)
    toks = (np.arange(16, dtype=np.int32).reshape(2, 8) * 7) % 50
    want = np.asarray(Transformer(config.model, adapt=config.adapt).apply({"params": params}, toks))
    got = np.asarray(model.apply(model.params, toks))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), rtol=0)
    base_only = np.asarray(Transformer(config.model).apply({"params": params}, toks))  # extra leaves ignored
    assert np.abs(want - base_only).max() > 1e-4


def test_lora_trains_only_its_adapters_from_a_frozen_base(small_corpus, base, tmp_path):
    config = tiny_run(small_corpus, steps=6).override(f"init.from_run={base}", *LORA)
    summary = run(config, tmp_path, progress=False)
    assert summary.status == "complete" and summary.base["step"] == 24
    assert summary.trainable_params == 2 * (2 * (32 * 2 + 2 * 32) + (32 * 2 + 2 * 128))  # layers x (q, v, mlp_in)
    added = _assert_base_unchanged_and_adapters_trained(tmp_path, base, "lora_b")
    assert added == {f"['blocks']['{m}']['lora_{ab}_{t}']" for m, t in (("attn", "q"), ("attn", "v"),
                                                                        ("mlp", "mlp_in")) for ab in "ab"}


def test_parallel_adapters_train_alone_beside_a_frozen_base(small_corpus, base, tmp_path):
    config = tiny_run(small_corpus, steps=6).override(
        f"init.from_run={base}", "adapt.method=adapter_parallel", "adapt.adapter_size=4", "optim.lr=1e-2",
        "optim.warmup_steps=0")
    summary = run(config, tmp_path, progress=False)
    assert summary.status == "complete"
    assert summary.trainable_params == 2 * 2 * (32 * 4 + 4 + 4 * 32 + 32)  # layers x places x (W_down, b, W_up, b)
    added = _assert_base_unchanged_and_adapters_trained(tmp_path, base, "w_up")
    assert added == {f"['blocks']['adapter_{p}']['{n}']" for p in ("attn", "mlp")
                     for n in ("w_down", "b_down", "w_up", "b_up")}



def _stored_leaves(workdir) -> dict[str, tuple]:
    """path -> shape of every array the newest checkpoint's train state holds on disk (orbax's metadata)."""
    step = max((p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    tree = ocp.StandardCheckpointer().metadata(step / "state").item_metadata
    return {jax.tree_util.keystr(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def lora_run(small_corpus, base, tmp_path_factory):
    """(config, summary, workdir) of an uninterrupted 8-step LoRA fine-tune of `base`."""
    config = tiny_run(small_corpus, steps=8).override(f"init.from_run={base}", *LORA)
    workdir = tmp_path_factory.mktemp("lora")
    return config, run(config, workdir, progress=False), workdir


def test_lora_checkpoints_hold_the_adapters_and_resume_exactly_from_the_base(lora_run, tmp_path):
    config, whole, workdir = lora_run
    run(config, tmp_path, progress=False, stop_after_steps=3)
    split = run(config, tmp_path, progress=False)  # resumes at 4: adapters restored, base re-read
    assert split.final_eval_loss == whole.final_eval_loss
    assert_trees_bitwise_equal(final_params(tmp_path), final_params(workdir))
    stored = _stored_leaves(workdir)  # on disk: the adapters, their Adam moments and counters; no base weight
    assert {k for k in stored if k.startswith("['params']")} == {
        f"['params']['blocks']['{m}']['lora_{ab}_{t}']" for m, t in (("attn", "q"), ("attn", "v"), ("mlp", "mlp_in"))
        for ab in "ab"}
    assert all("lora_" in k or shape == () for k, shape in stored.items())


def test_merge_writes_a_plain_run_with_the_adapted_function(base, lora_run, tmp_path):
    config, _, workdir = lora_run
    merged = merge_run(workdir, tmp_path / "merged")
    assert merged.adapt.method == "full" and merged.init.from_run is None and merged.model == config.model
    state, _, _ = restore_state(workdir)
    plain, _, _ = restore_state(tmp_path / "merged")
    assert not any("lora_" in jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(plain.params))
    toks = (np.arange(16, dtype=np.int32).reshape(2, 8) * 5) % 50
    want = np.asarray(Transformer(config.model, adapt=config.adapt).apply({"params": state.params}, toks))
    got = np.asarray(Transformer(merged.model).apply({"params": plain.params}, toks))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), rtol=0)
    with pytest.raises(ConfigError, match="only LoRA updates fold"):
        merge_run(base, tmp_path / "not-lora")


def test_a_fine_tune_refuses_a_base_whose_weights_changed(small_corpus, base, tmp_path):
    own_base = tmp_path / "base"
    shutil.copytree(base, own_base)
    config = tiny_run(small_corpus, steps=8).override(f"init.from_run={own_base}", *LORA)
    run(config, tmp_path / "tune", progress=False, stop_after_steps=2)
    other = tmp_path / "other"  # another base at the same path and step: trained with another seed
    run(tiny_run(small_corpus, steps=24).override("seed=2"), other, progress=False)
    shutil.rmtree(own_base)
    shutil.copytree(other, own_base)
    for resume in (lambda: run(config, tmp_path / "tune", progress=False), lambda: restore_state(tmp_path / "tune")):
        with pytest.raises(ConfigError, match="hash to .* but this run was trained on"):
            resume()


VIRTUAL = {"prompt_tuning": ({"['soft_prompt']"}, 4 * 32), "prefix_tuning": (
    {"['blocks']['attn']['prefix_k']", "['blocks']['attn']['prefix_v']"}, 2 * 2 * 4 * 2 * 16)}  # layers, k/v, k, kv, hd


@pytest.mark.parametrize("method", list(VIRTUAL))
def test_virtual_tokens_train_alone_and_decode_like_a_full_forward_pass(small_corpus, base, tmp_path, method):
    """ADAPT-7 (a soft prompt of k = 4 vectors before the embeddings, initialised as embeddings of vocabulary
    entries) and ADAPT-6 (4 keys and values before every layer's): only they train (the base bitwise unchanged),
    and decoding over the KV cache (them in its first slots, every position shifted by k, left padding kept) gives
    the logits of a full forward pass."""
    from research.infer.prompts import left_pad
    from research.train.setup import initial_soft_prompt, setup

    config = tiny_run(small_corpus, steps=6).override(
        f"init.from_run={base}", f"adapt.method={method}", "adapt.virtual_tokens=4", "data.seq_len=28",
        "optim.lr=1e-2", "optim.warmup_steps=0")
    start = initial_soft_prompt(config, final_params(base), setup(config).shardings.params)
    if method == "prompt_tuning":
        embedding = final_params(base)["embedding"]
        assert all(any(np.array_equal(row, e) for e in embedding) for row in np.asarray(start["soft_prompt"]))
    summary = run(config, tmp_path, progress=False)
    added, trainable = VIRTUAL[method]
    assert summary.status == "complete" and summary.trainable_params == trainable
    assert _assert_base_unchanged_and_adapters_trained(tmp_path, base, "never") == added
    if method == "prompt_tuning":  # it moved from the embeddings it started as
        assert not np.array_equal(np.asarray(final_params(tmp_path)["soft_prompt"]), np.asarray(start["soft_prompt"]))

    model, _, _ = load_run(tmp_path)
    prompts = [[5, 9, 2, 7, 7, 1], [3, 8]]
    tokens, positions, _ = left_pad(prompts, pad_id=0)  # the short prompt is left-padded
    logits, cache = model.prefill(tokens, positions, max_len=tokens.shape[1] + 1)
    fed = np.asarray([[4], [6]], np.int32)
    step_logits, _ = model.decode_step(cache, fed, positions[:, -1:] + 1)
    for row, prompt in enumerate(prompts):  # the reference: one full forward pass, no cache
        full = np.asarray(model.apply(model.params, np.asarray([prompt + [int(fed[row, 0])]], np.int32)))[0]
        scale = np.abs(full).max()
        np.testing.assert_allclose(np.asarray(logits)[row, -len(prompt):], full[:-1], atol=1e-5 * scale, rtol=0)
        np.testing.assert_allclose(np.asarray(step_logits)[row, 0], full[-1], atol=1e-5 * scale, rtol=0)
    with pytest.raises(ConfigError, match=r"adapt.virtual_tokens=8: plus data.seq_len=28 exceeds the model's"):
        config.override("adapt.virtual_tokens=8")
