"""Concurrent local workers share one sweep through claims: every run is trained exactly once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from sweeps import token_budgets
from sweeps.expansion import expand

from .helpers import ROOT, TINY, attempts, env, plan_into, run_cli, starts, summaries, sweeps_cmd, tiny

pytestmark = pytest.mark.slow


def _trained(log: str) -> set[str]:
    return set(re.findall(r"\] (\S+): start \(attempt", log))


def test_two_worker_processes_never_train_the_same_run(small_corpus, tmp_path):
    """`run --workers 2` starts two `python -m sweeps worker` processes on the same plan at the same moment: they
    race for the same first run, and for every run after it."""
    res = run_cli("run", str(TINY), "--out", str(tmp_path), "--workers", "2", "--set", f"data.source={small_corpus}")
    assert res.returncode == 0, res.stdout + res.stderr
    logs = sorted((tmp_path / "logs").glob("worker-*.log"))
    assert len(logs) == 2
    trained = [_trained(p.read_text()) for p in logs]
    runs = expand(tiny(small_corpus)).runs
    assert not trained[0] & trained[1], "a run was trained by both workers"
    assert trained[0] | trained[1] == {r.dirname for r in runs}
    for r in runs:
        assert starts(r.workdir(tmp_path)) == 1
        assert [a["outcome"] for a in attempts(r.workdir(tmp_path)) if a["event"] == "end"] == ["complete"]
    assert {s["status"] for s in summaries(tmp_path).values()} == {"complete"} and len(summaries(tmp_path)) == 4
    assert "4 complete; done" in res.stdout and "inside training steps" in res.stdout


def test_a_paused_worker_whose_claim_was_taken_over_writes_nothing_when_resumed(small_corpus, tmp_path):
    """SIGSTOP a worker mid-run past its claim's staleness; a second worker takes the run over and finishes it; then
    SIGCONT the first: it notices at its next write and leaves the directory to the new owner."""
    plan = plan_into(tmp_path, tiny(small_corpus, grid=token_budgets([128 * 120])))  # one 120-step run
    run_dir = plan.runs[0].workdir(tmp_path)
    timing = ["--heartbeat", "0.2", "--stale-after", "1.5"]
    paused = subprocess.Popen(sweeps_cmd("worker", str(tmp_path), "--worker-id", "paused", *timing), cwd=ROOT,
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not _logged_beyond(run_dir, 24):
            assert time.time() < deadline and paused.poll() is None, "the run never got going"
            time.sleep(0.02)
        paused.send_signal(signal.SIGSTOP)
        time.sleep(2.0)  # past --stale-after: its claim is now stale
        other = subprocess.run(sweeps_cmd("worker", str(tmp_path), "--worker-id", "other", *timing), cwd=ROOT,
                               env=env(), capture_output=True, text=True, timeout=300)
        assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
        paused.send_signal(signal.SIGCONT)
        log = paused.communicate(timeout=120)[0]
    finally:
        if paused.poll() is None:
            paused.kill()
    assert paused.returncode == 0 and "claim taken over" in log, log[-3000:]
    events = [(a["event"], a.get("outcome")) for a in attempts(run_dir)]
    assert events[-1] == ("end", "complete"), events  # nothing of the paused worker's after the new owner's end
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == plan.runs[0].config.num_steps
    # every step is sealed, and nothing else is there: the orbax write that SIGSTOP froze mid-flight resumed into
    # the paused worker's own temporary directory, was refused its commit, and removed
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    assert checkpoints and all(p.name.isdigit() and (p / "checksums.json").is_file() for p in checkpoints), checkpoints


def _logged_beyond(run_dir, step: int) -> bool:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return any(json.loads(line)["step"] > step for line in lines if line.strip())
