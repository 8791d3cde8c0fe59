"""Shared pieces of the training tests: a tiny run config and a way to read a finished run's parameters."""

from __future__ import annotations

import jax
import numpy as np

from research.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from research.train.setup import restore_state


def tiny_run(source: str, **train) -> RunConfig:
    train = {"steps": 24, "batch_size": 8, "log_every": 2, "eval_every": 8, "eval_batches": 2,
             "checkpoint_every": 4, "keep_checkpoints": 3} | train
    return RunConfig(
        model=ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32, dropout=0.1),
        data=DataConfig(source=source, seq_len=32, val_fraction=0.1),
        optim=OptimConfig(lr=3e-3, warmup_steps=4),
        train=TrainConfig(**train),
        seed=1,
    )


def final_params(workdir) -> dict:
    """Host copies of the latest checkpoint's params."""
    state, _, _ = restore_state(workdir)
    return jax.tree.map(np.asarray, jax.device_get(state.params))


def assert_trees_bitwise_equal(a, b) -> None:
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8)), "parameters differ bitwise"
