"""Training behaviour: overfitting, accumulation, schedules, weight-decay mask, divergence, workdir safety."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from research.model import Transformer
from research.parallel import make_mesh
from research.train import run
from research.train.losses import token_losses
from research.train.optimizer import apply_learning_rate, learning_rate, make_optimizer, weight_decay_mask
from research.train.state import init_state, state_shardings
from research.train.step import make_train_step

from .helpers import tiny_run


def _setup(config: RunConfig, devices=None):
    mesh = make_mesh(config.parallel, devices or jax.devices()[:1])
    model = Transformer(config.model)
    tx = make_optimizer(config.optim)
    _, shardings = state_shardings(config, model, tx, mesh)
    return model, tx, init_state(config, model, tx, mesh, shardings)


def test_overfits_one_batch():
    """A tiny model drives the loss on one fixed batch far below its starting value (ln 259 = 5.56)."""
    config = RunConfig(model=ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=32),
                       data=DataConfig(seq_len=32),
                       optim=OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant", weight_decay=0.0),
                       train=TrainConfig(steps=150, batch_size=4))
    model, tx, state = _setup(config)
    tokens = np.random.default_rng(0).integers(0, 256, (4, 33), dtype=np.int32)
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}
    step = jax.jit(make_train_step(config, model, tx, pad_id=-1))
    losses = []
    for _ in range(150):
        state, metrics = step(state, batch, 1e-2, 0)
        losses.append(float(metrics["loss"]))
    assert abs(losses[0] - math.log(259)) < 0.1  # small init: near-uniform predictions
    assert losses[-1] < 0.1 * losses[0]


def test_gradient_accumulation_matches_one_big_batch():
    """accum_steps=4 gives the same loss and update as a single pass over the global batch.

    Adam's first update is lr * g / (|g| + eps); a large eps makes it linear in g, so the comparison tests the
    accumulated gradient rather than the sign of near-zero entries.
    """
    base = RunConfig(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=16),
                     optim=OptimConfig(lr=1.0, eps=1.0, schedule="constant", weight_decay=0.0, grad_clip=0.0),
                     data=DataConfig(seq_len=16), train=TrainConfig(steps=10, batch_size=8))
    tokens = np.random.default_rng(1).integers(0, 256, (8, 17), dtype=np.int32)
    tokens[0, 10:] = 258  # some padding, unevenly spread over microbatches: the mean is per token, not per row
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}
    results = []
    for accum in (1, 4):
        config = dataclasses.replace(base, train=dataclasses.replace(base.train, accum_steps=accum))
        model, tx, state = _setup(config)
        new_state, metrics = jax.jit(make_train_step(config, model, tx, pad_id=258))(state, batch, 1.0, 0)
        results.append((float(metrics["loss"]), float(metrics["grad_norm"]), new_state.params))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)
    for a, b in zip(jax.tree.leaves(results[0][2]), jax.tree.leaves(results[1][2])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)


def test_token_losses_match_numpy():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (2, 5)).astype(np.int32)
    targets[1, 3:] = 6  # pad id 6
    objective, nll, count = token_losses(jnp.asarray(logits), jnp.asarray(targets), pad_id=6, z_loss=1e-2)
    log_z = np.log(np.exp(logits).sum(-1))
    mask = targets != 6
    ref_nll = (log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0])[mask].sum()
    assert float(count) == mask.sum()
    assert float(nll) == pytest.approx(ref_nll, rel=1e-6)
    assert float(objective) == pytest.approx(ref_nll + 1e-2 * (log_z[mask] ** 2).sum(), rel=1e-6)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear", "wsd"])
def test_schedules_match_closed_form(schedule):
    cfg = OptimConfig(lr=1.0, schedule=schedule, warmup_steps=10, min_lr_ratio=0.1, decay_fraction=0.25)
    total = 110
    lr = learning_rate(cfg, total)
    for step in (0, 4, 9):  # warmup: linear ramp reaching the peak at the end of warmup
        assert float(lr(step)) == pytest.approx((step + 1) / 10)
    for step in (10, 40, 60, 90, 109):
        t = (step - 10) / 100
        expected = {"constant": 1.0,
                    "cosine": 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)),
                    "linear": 1.0 - 0.9 * t,
                    "wsd": 1.0 if step < 110 - 28 else 1.0 - 0.9 * (step - (110 - 28)) / 28}[schedule]
        assert float(lr(step)) == pytest.approx(expected, rel=1e-5), step


def test_weight_decay_mask():
    params = {"embedding": 0, "blocks": {"attn": {"wq": 0, "bq": 0}, "attn_norm": {"scale": 0},
                                         "mlp": {"w_in": 0, "b_in": 0}}, "lm_head": 0}
    default = weight_decay_mask(OptimConfig(), params)
    assert default == {"embedding": False, "blocks": {"attn": {"wq": True, "bq": False}, "attn_norm": {"scale": False},
                                                       "mlp": {"w_in": True, "b_in": False}}, "lm_head": False}
    everything = weight_decay_mask(OptimConfig(decay_norms_and_biases=True, decay_embeddings=True), params)
    assert all(jax.tree.leaves(everything))


def test_optimizer_matches_optax_adamw():
    """Our chain + apply_learning_rate is optax.adamw with the same mask, step for step (an independent path)."""
    cfg = OptimConfig(lr=0.05, schedule="constant", weight_decay=0.3, grad_clip=0.0)
    rng = np.random.default_rng(3)
    params = {"embedding": jnp.asarray(rng.standard_normal(4), jnp.float32),
              "w_in": jnp.asarray(rng.standard_normal(4), jnp.float32)}
    ours, ref = make_optimizer(cfg), optax.adamw(0.05, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps, weight_decay=0.3,
                                                 mask=lambda p: weight_decay_mask(cfg, p))
    p_ours = p_ref = params
    s_ours, s_ref = ours.init(params), ref.init(params)
    for _ in range(3):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(4), jnp.float32), params)
        u, s_ours = ours.update(grads, s_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, apply_learning_rate(u, 0.05))
        u, s_ref = ref.update(grads, s_ref, p_ref)
        p_ref = optax.apply_updates(p_ref, u)
    for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_weight_decay_applies_only_to_masked_leaves():
    """With zero gradients, AdamW's update is -lr * wd * w on decayed leaves and zero elsewhere."""
    cfg = OptimConfig(lr=0.1, schedule="constant", weight_decay=0.5, grad_clip=0.0)
    params = {"embedding": jnp.ones(3), "w_in": jnp.ones(3), "scale": jnp.ones(3)}
    tx = make_optimizer(cfg)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    new = optax.apply_updates(params, apply_learning_rate(updates, 0.1))
    np.testing.assert_allclose(new["w_in"], 1 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(new["embedding"], 1.0)
    np.testing.assert_allclose(new["scale"], 1.0)


@pytest.mark.slow
def test_divergence_stops_the_run(small_corpus, tmp_path):
    config = tiny_run(small_corpus, steps=12, checkpoint_every=2).override(
        "optim.lr=1e30", "optim.grad_clip=0", "optim.warmup_steps=0", "model.dropout=0")
    summary = run(config, tmp_path, progress=False)
    assert summary.status == "diverged"
    assert summary.diverged_at_step is not None and summary.diverged_at_step <= 12
    assert summary.last_good_checkpoint is None or summary.last_good_checkpoint < summary.diverged_at_step
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "diverged" and saved["diverged_at_step"] == summary.diverged_at_step
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert all(s < summary.diverged_at_step for s in steps), "no checkpoint may hold non-finite parameters"


@pytest.mark.slow
def test_summary_and_metrics_fields(small_corpus, tmp_path):
    config = tiny_run(small_corpus, steps=8, eval_every=4)
    summary = run(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in ("run_id", "config_hash", "params", "params_non_embedding", "tokens", "flops", "flops_6nd",
                "final_train_loss", "final_eval_loss", "wall_time_s", "tokens_per_s", "mfu", "status"):
        assert saved[key] is not None, key
    assert saved["run_id"] == config.run_id() and saved["tokens"] == 8 * 8 * 32
    assert saved["flops_6nd"] == 6 * saved["params"] * saved["tokens"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert all({"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= r.keys() for r in records)
    assert [r["step"] for r in records if "eval_loss" in r] == [4, 8]
    assert summary.final_eval_loss == records[-1]["eval_loss"]
    # Rerunning a finished run trains nothing and reports the same result.
    again = run(config, tmp_path, progress=False)
    assert again.status == "complete" and again.final_eval_loss == summary.final_eval_loss


def test_workdir_of_another_run_is_refused(small_corpus, tmp_path):
    (tmp_path / "config.json").write_text(tiny_run(small_corpus).override("seed=7").to_json())
    with pytest.raises(ConfigError, match="holds run"):
        run(tiny_run(small_corpus), tmp_path, progress=False)


def test_runs_of_equal_shapes_share_one_compiled_step(small_corpus, tmp_path):
    """Length, schedule and seed are step inputs: a second run of the same shapes compiles nothing."""
    from research.train import step as step_module

    first = tiny_run(small_corpus, steps=2, eval_every=2, checkpoint_every=2)
    second = first.override("train.steps=3", "seed=9", "optim.lr=1e-3", "optim.schedule=wsd")
    run(first, tmp_path / "a", progress=False)
    compiled = step_module._TRAIN_STEPS.keys()
    run(second, tmp_path / "b", progress=False)
    assert step_module._TRAIN_STEPS.keys() == compiled
    wider = first.override("model.d_model=48")
    run(wider, tmp_path / "c", progress=False)
    assert len(step_module._TRAIN_STEPS.keys() - compiled) == 1


def test_a_document_masked_run_trains_and_evaluates_on_its_documents(small_corpus, tmp_path):
    """data.document_mask end to end: the batches' segments and positions reach the compiled step and eval step
    (their shapes are part of the compiled signature), and the run learns."""
    summary = run(tiny_run(small_corpus, steps=8, eval_every=8).override("data.document_mask=true"), tmp_path,
                  progress=False)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert summary.status == "complete" and np.isfinite(summary.final_eval_loss) and losses[-1] < losses[0]
