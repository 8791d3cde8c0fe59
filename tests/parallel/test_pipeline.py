"""Pipeline parallelism: the schedule's bubble is the theory's, the pipelined stack computes the plain stack, and
the PP layouts train to the single-device numbers with the memory their sharding promises."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import ConfigError, DataConfig, ModelConfig, OptimConfig, ParallelConfig, RunConfig, TrainConfig
from research.model import Transformer
from research.parallel import make_mesh
from research.parallel.pipeline import Pipeline, model_for
from research.train.optimizer import make_optimizer
from research.train.state import init_state, state_shardings
from tests.model.harness import fast_jit
from tests.parallel.test_layouts import _bytes_per_device, _train, assert_matches_single_device, needs_8

PP_LAYOUTS = {
    "pp2_dp4_gpipe": ParallelConfig(data=4, pipeline=2, microbatches=2),
    "pp2_dp4_circular": ParallelConfig(data=4, pipeline=2, microbatches=2, pipeline_schedule="circular",
                                       pipeline_repeats=2),
    "pp4_tp2_gpipe": ParallelConfig(data=1, pipeline=4, tensor=2, microbatches=4),
    "pp4_tp2_circular": ParallelConfig(data=1, pipeline=4, tensor=2, microbatches=4, pipeline_schedule="circular",
                                       pipeline_repeats=2),
}


def _config(parallel: ParallelConfig) -> RunConfig:
    """8 layers so that 4 stages x 2 repeats divide them; 8 rows per accumulation step, 2 or 4 per microbatch."""
    return RunConfig(
        model=ModelConfig(d_model=32, n_layers=8, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=16,
                          vocab_size=264, tie_embeddings=False),
        data=DataConfig(seq_len=16),
        optim=OptimConfig(lr=1e-2, warmup_steps=1, eps=1e-3),
        train=TrainConfig(steps=3, batch_size=16, accum_steps=2),
        parallel=parallel)


def _toy_layer(p, h, layer, micro):
    """h -> h * w + layer: not commutative across layers, so any misordering or skipped layer shows."""
    return h * p + layer.astype(h.dtype)


SCHEDULES = [(1, 1, 3), (2, 1, 1), (2, 1, 4), (4, 1, 3), (2, 2, 2), (2, 3, 5), (4, 2, 4), (3, 2, 3)]  # (S, R, M)


@pytest.mark.parametrize("stages,repeats,microbatches", SCHEDULES)
def test_bubble_matches_theory_and_every_layer_runs_once(stages, repeats, microbatches):
    schedule = "gpipe" if repeats == 1 else "circular"
    pipe = Pipeline(stages, microbatches, repeats, schedule)
    n_layers = stages * repeats * 2
    rng = np.random.default_rng(stages * 100 + repeats * 10 + microbatches)
    w = rng.uniform(0.5, 1.5, (n_layers, 1, 1)).astype(np.float32)  # [L, 1, 1]: one scale per layer
    x = rng.normal(size=(microbatches * 2, 3, 1)).astype(np.float32)  # [B, T, d]
    y, busy = fast_jit(lambda w, x: pipe(_toy_layer, w, x))(w, x)
    expected = x
    for layer in range(n_layers):  # the plain stack, in NumPy
        expected = expected * w[layer] + layer
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6)
    busy = np.asarray(busy)  # [ticks, stages]: which stage held a real microbatch at which tick
    assert busy.shape == (repeats * microbatches + stages - 1, stages)
    assert (busy.sum(axis=0) == repeats * microbatches).all()  # each stage sees every (repeat, microbatch) once
    assert 1 - busy.mean() == pytest.approx((stages - 1) / (repeats * microbatches + stages - 1), abs=1e-12)


def test_circular_needs_enough_microbatches_and_gpipe_no_repeats():
    with pytest.raises(ConfigError, match="parallel.microbatches=2"):
        Pipeline(4, 2, 2, "circular")
    with pytest.raises(ConfigError, match="parallel.pipeline_repeats=2"):
        Pipeline(2, 2, 2, "gpipe")


@needs_8
def test_a_pipeline_microbatch_the_data_shards_cannot_split_fails_before_anything_is_read(tmp_path):
    """8 rows, 4 microbatches of 2 rows, over data=4: refused by run() before data loading or compiling."""
    from research.train import run

    config = RunConfig(model=ModelConfig(d_model=16, n_layers=2, n_heads=2, max_seq_len=8),
                       data=DataConfig(source=str(tmp_path / "missing.txt"), seq_len=8),
                       train=TrainConfig(steps=1, batch_size=8),
                       parallel=ParallelConfig(data=4, pipeline=2, microbatches=4))
    with pytest.raises(ConfigError, match=r"parallel.microbatches=4: each pipeline microbatch has 2 sequences.*Fix"):
        run(config, tmp_path / "run", progress=False)


@pytest.mark.parametrize("pipe,remat", [(Pipeline(2, 2), "none"), (Pipeline(2, 2, 2, "circular"), "full")],
                         ids=["gpipe", "circular-remat"])
def test_pipelined_transformer_equals_plain_stack(pipe, remat):
    """Same parameter tree, same logits and gradients as the plain scanned stack (one device, no mesh)."""
    cfg = ModelConfig(d_model=16, n_layers=4, n_heads=2, d_ff=32, max_seq_len=8, vocab_size=37, remat=remat)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 37, (4, 8)), jnp.int32)
    plain, piped = Transformer(cfg), Transformer(cfg, pipeline=pipe)
    params = nn.meta.unbox(fast_jit(plain.init)(jax.random.key(0), tokens)["params"])
    piped_params = jax.eval_shape(piped.init, jax.random.key(0), tokens)["params"]  # the same tree, same shapes
    assert jax.tree.map(jnp.shape, nn.meta.unbox(piped_params)) == jax.tree.map(jnp.shape, params)

    def loss(model):
        return lambda p: jnp.mean(jnp.square(model.apply({"params": p}, tokens)))

    ref, ref_grads = fast_jit(jax.value_and_grad(loss(plain)))(params)
    out, grads = fast_jit(jax.value_and_grad(loss(piped)))(params)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)


def test_model_for_builds_the_pipeline_the_config_asks_for():
    assert model_for(_config(ParallelConfig())).pipeline is None
    pipe = model_for(_config(PP_LAYOUTS["pp4_tp2_circular"])).pipeline
    assert (pipe.stages, pipe.microbatches, pipe.repeats, pipe.schedule) == (4, 4, 2, "circular")
    assert pipe.bubble == pytest.approx(3 / 11)


@pytest.fixture(scope="module")
def single_device():
    return _train(_config(ParallelConfig()), jax.devices()[:1])


@needs_8
@pytest.mark.parametrize("layout", list(PP_LAYOUTS))
def test_pipeline_layout_matches_single_device(layout, single_device):
    assert_matches_single_device(_train(_config(PP_LAYOUTS[layout]), jax.devices()[:8]), single_device)


def _expected_bytes_per_device(config: RunConfig, pipeline: int, tensor: int) -> int:
    """Parameter bytes on one device, by hand: block weights split over pipeline stages, and over tensor where they
    have a heads / kv_heads / mlp / vocab dimension; embeddings and the head split over tensor only."""
    m = config.model.resolved()
    d, f, h, kv, hd, v, n = m.d_model, m.d_ff, m.n_heads, m.n_kv_heads, m.head_dim, m.vocab_size, m.n_layers
    per_layer_split = d * h * hd * 2 + d * kv * hd * 2 + (3 if m.is_glu else 2) * d * f  # wq wo wk wv, MLP
    per_layer_whole = 2 * d  # the two norm scales
    blocks = n * (per_layer_split / tensor + per_layer_whole) / pipeline
    outside = 2 * v * d / tensor + d  # embedding, lm_head, final norm
    return int(4 * (blocks + outside))


@needs_8
@pytest.mark.parametrize("layout,pipeline,tensor", [("pp2_dp4_gpipe", 2, 1), ("pp4_tp2_circular", 4, 2)])
def test_pipeline_layout_memory_shrinks(layout, pipeline, tensor):
    config = _config(PP_LAYOUTS[layout])
    mesh = make_mesh(config.parallel, jax.devices()[:8])
    tx = make_optimizer(config.optim)
    _, shardings = state_shardings(config, Transformer(config.model), tx, mesh)
    state = init_state(config, Transformer(config.model), tx, mesh, shardings)
    params_busiest, params_total = _bytes_per_device(state.params)
    assert params_busiest == _expected_bytes_per_device(config, pipeline, tensor)
    assert params_busiest < params_total
    opt_busiest, opt_total = _bytes_per_device(state.opt_state)  # Adam: two moments shaped like the parameters
    assert opt_busiest == pytest.approx(2 * params_busiest, rel=0.01)
    assert opt_total == pytest.approx(2 * params_total, rel=0.01)
