"""Checkpoints do not depend on the layout: save under one mesh, restore and continue under another."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from research.config import ParallelConfig
from research.train import run
from research.train.setup import restore_state
from tests.train.helpers import final_params, tiny_run

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices: run with "
                             "XLA_FLAGS=--xla_force_host_platform_device_count=8 (make test does)")
pytestmark = [needs_8, pytest.mark.slow]


def _config(source, parallel: ParallelConfig):
    import dataclasses

    config = tiny_run(source, steps=8, checkpoint_every=4, eval_every=8).override(
        "model.n_heads=4", "model.n_kv_heads=2", "model.d_ff=64", "model.vocab_size=264", "model.dropout=0",
        "optim.eps=1e-3")  # large eps: Adam's updates linear in the gradients, so float noise stays noise
    return dataclasses.replace(config, parallel=parallel)


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    """(summary, final params) of the uninterrupted run on one device: every layout computes these numbers."""
    workdir = tmp_path_factory.mktemp("reference")
    summary = run(_config(small_corpus, ParallelConfig()), workdir, progress=False, devices=jax.devices()[:1])
    return summary, final_params(workdir)


@pytest.mark.parametrize("before,after", [
    (ParallelConfig(data=1, fsdp=4, tensor=2), ParallelConfig(data=8)),
    (ParallelConfig(data=8), ParallelConfig(data=1, fsdp=8)),
    (ParallelConfig(data=4, pipeline=2, microbatches=2), ParallelConfig(data=8)),  # pipeline stages: a run-time view
])
def test_continue_on_another_mesh(small_corpus, tmp_path, before, after, reference):
    first = _config(small_corpus, before)
    reference, ref_params = reference

    moved = tmp_path / "moved"
    assert run(first, moved, progress=False, stop_after_steps=4).step == 4
    summary = run(_config(small_corpus, after), moved, progress=False)  # same run id: parallel is not hashed
    assert summary.run_id == reference.run_id and summary.step == 8
    for a, b in zip(jax.tree.leaves(final_params(moved)), jax.tree.leaves(ref_params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())  # fp32, as in test_layouts
    assert summary.final_eval_loss == pytest.approx(reference.final_eval_loss, rel=1e-5)


def test_eight_devices_to_one(small_corpus, tmp_path):
    config = _config(small_corpus, ParallelConfig(data=1, fsdp=4, tensor=2))
    run(config, tmp_path, progress=False, stop_after_steps=4)
    sharded, _, _ = restore_state(tmp_path, devices=jax.devices()[:8], parallel=config.parallel)
    single, _, _ = restore_state(tmp_path, devices=jax.devices()[:1])
    assert len(jax.tree.leaves(single.params)[0].devices()) == 1
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
