"""Exact resume: a run killed (SIGKILL or SIGTERM) at a random step and restarted ends bitwise equal."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from research.train import run

from .helpers import assert_trees_bitwise_equal, final_params, tiny_run

pytestmark = pytest.mark.slow


def _train_cmd(config_path: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "research.train", "--config", str(config_path), "--workdir", str(workdir), "--quiet"]


def _wait_for_step(workdir: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll metrics.jsonl until it has logged `step` (the process is then mid-run)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"trainer exited early with {proc.returncode}"
        path = workdir / "metrics.jsonl"
        if path.exists():
            steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
            if steps and max(steps) >= step:
                return
        time.sleep(0.02)
    raise TimeoutError(f"run never reached step {step}")


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    """The uninterrupted run (in a subprocess, like the interrupted ones); its 3-step log windows straddle the
    4-step checkpoints, so a resume must restore the open window to log the same means."""
    config = tiny_run(small_corpus, log_every=3)
    workdir = tmp_path_factory.mktemp("reference")
    config_path = workdir.parent / "reference_config.json"
    config_path.write_text(config.to_json())
    subprocess.run(_train_cmd(config_path, workdir), check=True, env=os.environ.copy())
    return config, config_path, final_params(workdir), json.loads((workdir / "summary.json").read_text()), \
        _untimed_metrics(workdir)


def _untimed_metrics(workdir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")} for r in rows]


@pytest.mark.parametrize("sig,seed", [(signal.SIGKILL, 0), (signal.SIGTERM, 2)])
def test_killed_run_resumes_bitwise(reference, tmp_path, sig, seed):
    config, config_path, ref_params, ref_summary, ref_metrics = reference
    kill_at = random.Random(seed).randrange(3, config.num_steps - 2)
    proc = subprocess.Popen(_train_cmd(config_path, tmp_path), env=os.environ.copy())
    _wait_for_step(tmp_path, kill_at, proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    if sig == signal.SIGTERM:
        assert code == 130  # interrupted, after saving a checkpoint
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["step"] >= kill_at
    subprocess.run(_train_cmd(config_path, tmp_path), check=True, env=os.environ.copy())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == config.num_steps
    assert_trees_bitwise_equal(final_params(tmp_path), ref_params)
    assert summary["final_eval_loss"] == ref_summary["final_eval_loss"]
    assert summary["final_train_loss"] == ref_summary["final_train_loss"]
    assert _untimed_metrics(tmp_path) == ref_metrics  # each logged step once, in order, with the same numbers


def test_in_process_stop_and_resume(reference, tmp_path):
    """`stop_after_steps` (what a signal does) then a second `run` call: same final parameters as one run."""
    config, _, ref_params, _, _ = reference
    first = run(config, tmp_path, progress=False, stop_after_steps=10)
    assert first.status == "interrupted" and first.step == 10
    second = run(config, tmp_path, progress=False)
    assert second.status == "complete"
    assert_trees_bitwise_equal(final_params(tmp_path), ref_params)
