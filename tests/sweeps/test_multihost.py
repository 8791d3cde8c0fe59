"""A worker of two processes (jax.distributed, 2 x 4 CPU devices): process 0 claims, both train every run,
and the numbers equal those of the one-process, 8-device reference sweep."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import time

import pytest

from sweeps.manifest import write_plan

from .helpers import ROOT, env, starts, summaries, sweeps_cmd

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process_worker(out) -> list[subprocess.Popen]:
    """`python -m sweeps worker OUT` as one worker of two processes x 4 CPU devices (output: stdout, merged)."""
    port = _free_port()
    e = {k: v for k, v in env().items() if k != "XLA_FLAGS"}
    return [subprocess.Popen(sweeps_cmd("worker", str(out), "--worker-id", f"mh{i}", "--local-cpu-devices", "4",
                                        "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                        "--process-id", str(i)),
                             cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]


def test_two_process_worker_matches_the_single_process_sweep(reference, tmp_path):
    ref_out, plan, _ = reference
    plan = dataclasses.replace(plan, runs=[r for r in plan.runs if r.config.num_steps == 24])  # the short ones
    assert len(plan.runs) == 2
    write_plan(tmp_path, plan)
    procs = _two_process_worker(tmp_path)
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    ref, got = summaries(ref_out), summaries(tmp_path)
    assert set(got) == {r.run_id for r in plan.runs}
    for r in plan.runs:
        s = got[r.run_id]
        assert s["status"] == "complete" and s["devices"] == 8 and starts(r.workdir(tmp_path)) == 1
        for key in ("final_train_loss", "final_eval_loss"):
            assert s[key] == pytest.approx(ref[r.run_id][key], rel=1e-5)
    assert not os.path.exists(tmp_path / "runs" / plan.runs[0].dirname / "claim.json")


def test_a_claim_lost_on_process_0_stops_every_process(small_corpus, tmp_path):
    """Process 0 holds the claim; when it is taken over mid-run, every process stops (none is left waiting in a
    collective), nothing more is written to the run directory, and the worker exits normally."""
    from sweeps import token_budgets

    from .helpers import plan_into, tiny

    plan = plan_into(tmp_path, tiny(small_corpus, grid=token_budgets([128 * 3000])))  # one long run
    run_dir = plan.runs[0].workdir(tmp_path)
    procs = _two_process_worker(tmp_path)
    try:
        deadline = time.time() + 240
        while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_text().strip():
            assert time.time() < deadline and all(p.poll() is None for p in procs), "the run never started"
            time.sleep(0.02)
        usurped = dict(json.loads((run_dir / "claim.json").read_text()), token="another-worker")
        (run_dir / "claim.tmp").write_text(json.dumps(usurped))
        os.replace(run_dir / "claim.tmp", run_dir / "claim.json")  # the takeover a stalled worker would see
        logs = [p.communicate(timeout=180)[0] for p in procs]  # without the agreement, process 1 never returns
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert "claim taken over" in logs[0]
    assert not (run_dir / "summary.json").exists()
    assert json.loads((run_dir / "claim.json").read_text())["token"] == "another-worker"  # left to its new owner
