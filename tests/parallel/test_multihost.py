"""Two processes x 4 CPU devices (gloo collectives on localhost) train exactly like one process with 8 devices, and
stop together when only one of them is signalled."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from research.config import ParallelConfig
from research.train import run
from tests.train.helpers import final_params, tiny_run
from tests.train.test_resume import _wait_for_step

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir) -> list[float]:
    return [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _two_processes(base: list[str], workdir, env) -> list[subprocess.Popen]:
    port = _free_port()
    return [subprocess.Popen(base + ["--workdir", str(workdir), "--local-cpu-devices", "4",
                                     "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                     "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]


def test_two_processes_train_like_one_and_a_signal_to_one_stops_both(small_corpus, tmp_path):
    """Two processes x 4 devices: a scheduler may signal one process of a job, and both stop together at a complete
    checkpoint (no one left waiting in a collective); resumed, they finish with the numbers of one uninterrupted
    process with 8 devices."""
    config = dataclasses.replace(tiny_run(small_corpus, steps=40, checkpoint_every=10, eval_every=20),
                                 parallel=ParallelConfig(data=4, fsdp=2))
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())
    base = [sys.executable, "-m", "research.train", "--config", str(config_path), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}

    procs = _two_processes(base, tmp_path / "cut", env)
    try:
        _wait_for_step(tmp_path / "cut", 4, procs[0])
        procs[1].send_signal(signal.SIGTERM)  # process 1 only
        codes = [p.wait(timeout=120) for p in procs]  # without the agreement, process 0 waits here forever
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [130, 130], [p.stderr.read()[-2000:] for p in procs]
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) < config.num_steps  # it stopped early

    for p in _two_processes(base, tmp_path / "cut", env):  # resume
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    one = run(config, tmp_path / "whole", progress=False)  # uninterrupted, one process of 8 devices
    np.testing.assert_allclose(_losses(tmp_path / "cut"), _losses(tmp_path / "whole"), rtol=1e-5)
    two = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert two["devices"] == 8 and two["status"] == "complete"
    assert two["final_eval_loss"] == pytest.approx(one.final_eval_loss, rel=1e-5)
    # Adam divides by sqrt(v): reduction-order noise in near-zero gradients moves a parameter by ~lr * 1e-3.
    for a, b in zip(jax.tree.leaves(final_params(tmp_path / "cut")), jax.tree.leaves(final_params(tmp_path / "whole"))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
