"""Several optimizer steps per compiled call (train.steps_per_call) give bitwise the numbers of one step per call."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess

import jax
import numpy as np
import pytest

from research.data import load_data
from research.model import Transformer
from research.parallel import activate, batch_sharding, make_mesh
from research.train import run
from research.train.optimizer import make_optimizer
from research.train.setup import restore_state
from research.train.state import init_state, state_shardings
from research.train.step import MAX_STEPS_PER_CALL, compile_train_step, steps_per_call
from tests.parallel.test_layouts import needs_8

from .helpers import assert_trees_bitwise_equal, tiny_run
from .test_resume import _train_cmd, _wait_for_step

pytestmark = pytest.mark.usefixtures("default_compile")  # the loop equals single steps as users compile them

# calls end at log/eval/checkpoint steps: with steps_per_call=5 this run is split into calls of 5, 1, 5, 1, ...
BOUNDARIES = {"log_every": 6, "checkpoint_every": 6, "eval_every": 12}


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def test_multi_step_call_equals_single_steps():
    """The compiled loop over n <= steps stacked batches equals n calls of the single step: state and metrics."""
    config = tiny_run("unused", steps=4)
    mesh = make_mesh(config.parallel, jax.devices()[:1])
    model, tx = Transformer(config.model), make_optimizer(config.optim)
    abstract, shardings = state_shardings(config, model, tx, mesh)
    single = compile_train_step(config, mesh, shardings, abstract, pad_id=-1)
    multi = compile_train_step(config, mesh, shardings, abstract, pad_id=-1, steps=4)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 256, (4, config.batch_size, config.data.seq_len + 1)).astype(np.int32)
    lrs = np.float32([1e-3, 2e-3, 3e-3, 0.0])
    seed = np.int32(7)
    with activate(mesh):
        state = init_state(config, model, tx, mesh, shardings)
        losses = []
        for i in range(3):
            batch = {"inputs": tokens[i, :, :-1], "targets": tokens[i, :, 1:]}
            state, metrics = single(state, jax.device_put(batch, batch_sharding(mesh)), lrs[i], seed)
            losses.append(metrics["loss"])
        expected = _host(state)
        stacked = jax.device_put({"inputs": tokens[:, :, :-1], "targets": tokens[:, :, 1:]},
                                 batch_sharding(mesh, stacked=True))
        state, metrics = multi(init_state(config, model, tx, mesh, shardings), stacked, lrs, np.int32(3), seed)
    assert_trees_bitwise_equal(_host(state), expected)
    got = np.asarray(metrics["loss"])
    assert np.array_equal(got[:3], np.asarray(losses)) and got[3] == 0.0  # entries past n stay 0
    assert int(state.step) == 3


def _outcome(config, workdir, devices: int):
    """(summary, host state, metrics records) of `config` trained in `workdir` on the first `devices` devices."""
    summary = run(config.override(f"parallel.data={devices}"), workdir, devices=jax.devices()[:devices],
                  progress=False)
    state, _, _ = restore_state(workdir)
    return summary, _host(state), [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single_step_reference(default_compile, small_corpus, tmp_path_factory):
    """One step per call on every device: the reference of the 8-device and the SIGKILL cases."""
    config = tiny_run(small_corpus, **BOUNDARIES, steps_per_call=1)
    return _outcome(config, tmp_path_factory.mktemp("k1"), jax.device_count())


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, pytest.param(8, marks=needs_8)])
def test_runs_with_steps_per_call_are_bitwise_equal(small_corpus, tmp_path, devices, single_step_reference):
    """Dropout on (keys depend on the step): parameters, optimizer state and every logged loss are bitwise equal."""
    config = tiny_run(small_corpus, **BOUNDARIES, steps_per_call=1)
    if devices == jax.device_count():
        s1, state1, log1 = single_step_reference
    else:
        s1, state1, log1 = _outcome(config, tmp_path / "k1", devices)
    s5, state5, log5 = _outcome(config.override("train.steps_per_call=5"), tmp_path / "k5", devices)
    assert s1.run_id == s5.run_id  # an execution choice, like the layout: not part of the run id
    assert_trees_bitwise_equal(state5, state1)
    assert [(r["step"], r.get("loss"), r.get("eval_loss")) for r in log5] == \
           [(r["step"], r.get("loss"), r.get("eval_loss")) for r in log1]
    assert s5.final_train_loss == s1.final_train_loss and s5.final_eval_loss == s1.final_eval_loss
    assert s1.epochs == s1.tokens / load_data(config.data).num_train_tokens  # summary.json: how often data was seen


def test_default_steps_per_call_follows_step_cost():
    small = tiny_run("unused")
    assert steps_per_call(small) == MAX_STEPS_PER_CALL  # a 20K-parameter model: dispatch-bound
    big = small.override("model.d_model=512", "model.n_layers=8", "model.n_heads=8", "model.max_seq_len=512",
                         "data.seq_len=512")
    assert steps_per_call(big) == 1
    assert steps_per_call(big.override("train.steps_per_call=3")) == 3


@pytest.mark.slow
def test_sigkill_resume_with_steps_per_call_is_bitwise(small_corpus, tmp_path, single_step_reference, seed=0):
    """Killed mid-run (SIGKILL) with 4 steps per call, then resumed: bitwise the one-step-per-call run."""
    ref_summary, ref_state, _ = single_step_reference
    config = tiny_run(small_corpus, **BOUNDARIES, steps_per_call=4)
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())
    workdir = tmp_path / "run"
    kill_at = random.Random(seed).randrange(6, config.num_steps - 6, 6)
    proc = subprocess.Popen(_train_cmd(config_path, workdir), env=os.environ.copy())
    _wait_for_step(workdir, kill_at, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    subprocess.run(_train_cmd(config_path, workdir), check=True, env=os.environ.copy())
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == config.num_steps
    state, _, _ = restore_state(workdir)
    assert_trees_bitwise_equal(_host(state.params), ref_state.params)
    assert summary["final_eval_loss"] == ref_summary.final_eval_loss
