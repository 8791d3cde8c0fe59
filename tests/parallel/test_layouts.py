"""Every layout computes the single-device numbers, and shards parameter and optimiser memory as it says.

Layouts run on 8 simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8, set by `make test`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import DataConfig, ModelConfig, OptimConfig, ParallelConfig, RunConfig, TrainConfig
from research.data.packing import to_document_example
from research.model import Transformer
from research.parallel import activate, batch_sharding, make_mesh
from research.parallel.pipeline import model_for
from research.train.compile_cache import compile_lowered
from research.train.losses import token_losses
from research.train.optimizer import learning_rate, make_optimizer
from research.train.state import init_state, state_shardings
from research.train.step import apply_model, compile_train_step

LAYOUTS = {
    "dp8": ParallelConfig(data=8),
    "fsdp8": ParallelConfig(data=1, fsdp=8),
    "tp2_fsdp4": ParallelConfig(data=1, fsdp=4, tensor=2),
    "dp2_fsdp2_tp2": ParallelConfig(data=2, fsdp=2, tensor=2),
}

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices: run with "
                             "XLA_FLAGS=--xla_force_host_platform_device_count=8 (make test does)")


def _config(parallel: ParallelConfig) -> RunConfig:
    return RunConfig(
        model=ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq_len=16,
                          vocab_size=264, tie_embeddings=False),
        data=DataConfig(seq_len=16),
        optim=OptimConfig(lr=1e-2, warmup_steps=1, eps=1e-3),  # large eps: updates linear in gradients
        train=TrainConfig(steps=3, batch_size=16, accum_steps=2),
        parallel=parallel)


def _batches(config: RunConfig, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        tokens = rng.integers(0, 259, (config.batch_size, config.data.seq_len + 1), dtype=np.int32)
        if config.data.document_mask:  # about one token in six ends a document
            out.append(to_document_example(np.where(tokens < 43, 257, tokens), eos_id=257, pad_id=-1))
        else:
            out.append({"inputs": tokens[:, :-1], "targets": tokens[:, 1:]})
    return out


def _train(config: RunConfig, devices: list, steps: int = 3):
    """Losses, grad norms, final gradients and final state after `steps` steps on `devices`."""
    mesh = make_mesh(config.parallel, devices)
    model, tx = model_for(config), make_optimizer(config.optim, config.adapt)  # pipelined when parallel.pipeline > 1
    abstract, shardings = state_shardings(config, model, tx, mesh)
    state = init_state(config, model, tx, mesh, shardings)
    step = compile_train_step(config, mesh, shardings, abstract, pad_id=-1)
    schedule = learning_rate(config.optim, config.num_steps)
    losses, norms = [], []
    batches = _batches(config, steps)
    with activate(mesh):
        for k, batch in enumerate(batches):
            batch = {key: jax.device_put(v, batch_sharding(mesh)) for key, v in batch.items()}
            state, metrics = step(state, batch, np.float32(schedule(k)), np.int32(0))
            losses.append(float(metrics["loss"]))
            norms.append(float(metrics["grad_norm"]))

        def loss(params, batch):
            logits = apply_model(model, params, batch)
            _, nll, count = token_losses(logits, batch["targets"], -1, 0.0)
            return nll / count

        batch = {key: jax.device_put(v, batch_sharding(mesh)) for key, v in batches[0].items()}
        grad_fn = jax.jit(jax.grad(loss), out_shardings=shardings.params).lower(state.params, batch)
        grads = compile_lowered(grad_fn, devices[0].platform)(state.params, batch)
    return losses, norms, grads, state


@pytest.fixture(scope="module")
def single_device():
    config = _config(ParallelConfig())
    return _train(config, jax.devices()[:1])


@needs_8
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_single_device(layout, single_device):
    assert_matches_single_device(_train(_config(LAYOUTS[layout]), jax.devices()[:8]), single_device)


ADAPTED = {"lora": ("adapt.method=lora", "adapt.lora_rank=4", "adapt.lora_targets=q,k,v,o,mlp_in,mlp_out"),
           "adapter_serial": ("adapt.method=adapter_serial", "adapt.adapter_size=4"),
           "adapter_parallel": ("adapt.method=adapter_parallel", "adapt.adapter_size=4", "adapt.adapter_scale=2"),
           "prompt_tuning": ("adapt.method=prompt_tuning", "adapt.virtual_tokens=4", "model.max_seq_len=20"),
           "prefix_tuning": ("adapt.method=prefix_tuning", "adapt.virtual_tokens=4", "model.max_seq_len=20")}


@pytest.fixture(scope="module")
def single_device_adapted():
    """The one-device reference of each adaptation method, trained once per module on first use."""
    cache = {}

    def get(method):
        if method not in cache:
            cache[method] = _train(_config(ParallelConfig()).override(*ADAPTED[method]), jax.devices()[:1])
        return cache[method]
    return get


@needs_8
@pytest.mark.parametrize("method,layout", [("lora", "tp2_fsdp4"), ("lora", "pp2_dp4"),
                                           ("adapter_serial", "tp2_fsdp4"), ("adapter_serial", "pp2_dp4"),
                                           ("adapter_parallel", "tp2_fsdp4"), ("prompt_tuning", "tp2_fsdp4"),
                                           ("prompt_tuning", "pp2_dp4"), ("prefix_tuning", "tp2_fsdp4"),
                                           ("prefix_tuning", "pp2_dp4")])
def test_adapted_models_under_every_kind_of_layout_match_single_device(method, layout, single_device_adapted):
    """LoRA's A and B and the adapters' weights shard by the logical axes they carry; the frozen base takes no
    update."""
    parallel = LAYOUTS.get(layout) or ParallelConfig(data=4, pipeline=2, microbatches=2)
    single = single_device_adapted(method)
    losses, norms, grads, state = _train(_config(parallel).override(*ADAPTED[method]), jax.devices()[:8])
    np.testing.assert_allclose(losses, single[0], rtol=1e-5)
    np.testing.assert_allclose(norms, single[1], rtol=1e-5)
    for ours, ref in ((grads, single[2]), (state.params, single[3].params)):  # fp32, to 1e-5 of each leaf's scale
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5 * np.abs(b).max() + 1e-12)


@pytest.fixture(scope="module")
def single_device_documents():
    return _train(_config(ParallelConfig()).override("data.document_mask=true"), jax.devices()[:1])


@needs_8
@pytest.mark.parametrize("layout", ["tp2_fsdp4", "pp2_dp4"])
def test_document_masked_batches_under_every_kind_of_layout_match_single_device(layout, single_device_documents):
    """Per-row segments and positions are sharded with their rows (and microbatched with them by the pipeline)."""
    parallel = LAYOUTS.get(layout) or ParallelConfig(data=4, pipeline=2, microbatches=2)
    result = _train(_config(parallel).override("data.document_mask=true"), jax.devices()[:8])
    assert_matches_single_device(result, single_device_documents)


def assert_matches_single_device(result, single_device) -> None:
    """Losses, grad norms, gradients and parameters after the steps equal the one-device run's (fp32, rtol 1e-5)."""
    losses, norms, grads, state = result
    ref_losses, ref_norms, ref_grads, ref_state = single_device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _bytes_per_device(tree) -> tuple[int, int]:
    """(bytes on the busiest device, total logical bytes) of a pytree of jax.Arrays."""
    per_device: dict = {}
    total = 0
    for x in jax.tree.leaves(tree):
        total += x.nbytes
        for shard in x.addressable_shards:
            per_device[shard.device] = per_device.get(shard.device, 0) + shard.data.nbytes
    return max(per_device.values()), total


@needs_8
@pytest.mark.parametrize("layout,share", [("fsdp8", 1 / 8), ("tp2_fsdp4", 1 / 8), ("dp8", 1.0)])
def test_parameter_and_optimizer_memory_shrink(layout, share):
    config = _config(LAYOUTS[layout])
    mesh = make_mesh(config.parallel, jax.devices()[:8])
    model, tx = Transformer(config.model), make_optimizer(config.optim)
    _, shardings = state_shardings(config, model, tx, mesh)
    state = init_state(config, model, tx, mesh, shardings)
    for tree in (state.params, state.opt_state):
        busiest, total = _bytes_per_device(tree)
        # Replicated remainder: vectors (norm scales) smaller than the sharded dimension; at most a few percent.
        assert busiest <= share * total + 0.03 * total, (layout, busiest, total)
        if share < 1:
            assert busiest < 0.2 * total


@needs_8
def test_initial_values_do_not_depend_on_the_mesh(single_device):
    """Partitionable threefry: a sharded init gives the same numbers as a single-device init."""
    config = _config(LAYOUTS["tp2_fsdp4"])
    mesh = make_mesh(config.parallel, jax.devices()[:8])
    model, tx = Transformer(config.model), make_optimizer(config.optim)
    _, shardings = state_shardings(config, model, tx, mesh)
    sharded = init_state(config, model, tx, mesh, shardings).params
    single_config = dataclasses.replace(config, parallel=ParallelConfig())
    mesh1 = make_mesh(single_config.parallel, jax.devices()[:1])
    _, shardings1 = state_shardings(single_config, model, tx, mesh1)
    single = init_state(single_config, model, tx, mesh1, shardings1).params
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    spec = sharded["blocks"]["attn"]["wq"].sharding.spec  # [layers, embed, heads, head_dim]
    assert tuple(spec)[:3] == ("pipeline", "fsdp", "tensor")
    assert jnp.asarray(sharded["embedding"]).shape == (264, 64)
