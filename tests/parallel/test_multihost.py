"""Two processes x 4 CPU devices (gloo collectives on localhost) train exactly like one process with 8 devices."""

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


def test_two_processes_match_one_process_with_eight_devices(small_corpus, tmp_path):
    config = dataclasses.replace(tiny_run(small_corpus, steps=6, checkpoint_every=3, eval_every=6),
                                 parallel=ParallelConfig(data=4, fsdp=2))
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())
    base = [sys.executable, "-m", "research.train", "--config", str(config_path), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}

    single = subprocess.run(base + ["--workdir", str(tmp_path / "one"), "--local-cpu-devices", "8"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    procs = [subprocess.Popen(base + ["--workdir", str(tmp_path / "two"), "--local-cpu-devices", "4",
                                      "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                      "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]

    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-5)
    summary_one = json.loads((tmp_path / "one" / "summary.json").read_text())
    summary_two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary_two["devices"] == 8 and summary_two["status"] == "complete"
    assert summary_two["final_eval_loss"] == pytest.approx(summary_one["final_eval_loss"], rel=1e-5)
    # Adam divides by sqrt(v): reduction-order noise in near-zero gradients moves a parameter by ~lr * 1e-3.
    two, one = final_params(tmp_path / "two"), final_params(tmp_path / "one")
    for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _two_processes(base: list[str], workdir, env) -> list[subprocess.Popen]:
    port = _free_port()
    return [subprocess.Popen(base + ["--workdir", str(workdir), "--local-cpu-devices", "4",
                                     "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                     "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]


def test_a_signal_to_one_process_stops_both_at_a_checkpoint(small_corpus, tmp_path):
    """A scheduler may signal one process of a job: both stop together (no one left waiting in a collective), the
    checkpoint is complete, and the resumed two-process run finishes with the losses of an uninterrupted run."""
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
    run(config, tmp_path / "whole", progress=False)  # uninterrupted, one process of 8 devices
    np.testing.assert_allclose(_losses(tmp_path / "cut"), _losses(tmp_path / "whole"), rtol=1e-5)
