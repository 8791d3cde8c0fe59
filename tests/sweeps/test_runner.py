"""The worker loop in process: skip finished runs, retry failures up to a limit, record divergence once."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from research.config import ConfigError
from sweeps import token_budgets
from sweeps.results import RESULTS, collect
from sweeps.rundir import FAILURE, append_jsonl, record_reset
from sweeps.runner import Worker, WorkerOptions
from sweeps.status import format_status, sweep_status

from .helpers import attempts, plan_into, starts, summaries, tiny

pytestmark = pytest.mark.slow


def _quiet() -> WorkerOptions:
    return WorkerOptions(log=lambda line: None)


def _results(out) -> dict[str, dict]:
    return {r["run_id"]: r for r in map(json.loads, (out / RESULTS).read_text().splitlines())}


def test_sweep_completes_then_skips_finished_runs(reference):
    tmp_path, plan, report = reference
    assert report.outcomes == Counter(complete=4)
    done = summaries(tmp_path)
    assert set(done) == {r.run_id for r in plan.runs} and all(s["status"] == "complete" for s in done.values())
    for r in plan.runs:
        assert done[r.run_id]["config"] == r.config.to_dict() and done[r.run_id]["steps"] == r.config.num_steps
    rows = _results(tmp_path)
    assert set(rows) == set(done) and {r["name"] for r in rows.values()} == {r.name for r in plan.runs}
    assert rows == {r["run_id"]: r for r in collect(tmp_path)}

    again = Worker(tmp_path, plan, _quiet()).run()
    assert not again.outcomes and not again.trained
    assert all(starts(r.workdir(tmp_path)) == 1 for r in plan.runs)
    status = sweep_status(tmp_path)
    assert status.done and status.count("complete") == 4 and "4 complete; done" in format_status(status)


def test_failing_run_is_retried_then_failed_and_the_rest_completes(tmp_path, small_corpus):
    from research.train import run

    plan = plan_into(tmp_path, tiny(small_corpus))  # max_attempts=2
    flaky, broken = plan.runs[1], plan.runs[2]
    calls = Counter()

    def train(config, workdir, **kwargs):
        calls[config.run_id()] += 1
        if config.run_id() == flaky.run_id:
            raise RuntimeError("simulated crash")
        if config.run_id() == broken.run_id:
            raise ConfigError("simulated config problem")  # retrying cannot help: failed at once
        return run(config, workdir, **kwargs)

    report = Worker(tmp_path, plan, _quiet(), train_fn=train).run()
    assert calls[flaky.run_id] == plan.max_attempts == 2 and calls[broken.run_id] == 1
    assert report.outcomes == Counter(complete=2, error=1, failed=2)
    failure = json.loads((flaky.workdir(tmp_path) / FAILURE).read_text())
    assert failure["status"] == "failed" and failure["attempts"] == 2
    assert failure["error"] == "RuntimeError: simulated crash" and "Traceback" in failure["traceback"]
    assert [e["outcome"] for e in failure["errors"]] == ["error", "error"]
    status = sweep_status(tmp_path)
    assert status.done and status.count("failed") == 2 and status.count("complete") == 2
    rows = _results(tmp_path)
    assert rows[flaky.run_id]["status"] == "failed" and rows[flaky.run_id]["params"] == flaky.params

    Worker(tmp_path, plan, _quiet(), train_fn=train).run()  # failed runs stay failed: no new attempt
    assert calls[flaky.run_id] == 2
    record_reset(flaky.workdir(tmp_path))  # what `sweeps run --retry-failed` does
    Worker(tmp_path, plan, _quiet()).run()
    assert summaries(tmp_path)[flaky.run_id]["status"] == "complete"


def test_vanished_attempts_count_against_the_limit(tmp_path, small_corpus):
    plan = plan_into(tmp_path, tiny(small_corpus))
    victim = plan.runs[0].workdir(tmp_path)
    for token in ("t1", "t2"):  # two workers started it and were killed without a trace
        append_jsonl(victim / "attempts.jsonl", {"event": "start", "token": token, "attempt": 1})
    calls = []
    Worker(tmp_path, dataclasses.replace(plan, runs=plan.runs[:1]), _quiet(),
           train_fn=lambda *a, **k: calls.append(1)).run()
    assert not calls
    failure = json.loads((victim / FAILURE).read_text())
    assert failure["attempts"] == 2 and [e["outcome"] for e in failure["errors"]] == ["vanished", "vanished"]


def test_diverged_run_is_recorded_and_not_retried(tmp_path, small_corpus):
    sweep = tiny(small_corpus)
    sweep = dataclasses.replace(sweep.with_base_overrides(["optim.lr=1e4"]),
                                grid=token_budgets([128 * 24]))
    plan = plan_into(tmp_path, sweep)
    assert Worker(tmp_path, plan, _quiet()).run().outcomes == Counter(diverged=1)
    assert not Worker(tmp_path, plan, _quiet()).run().trained
    run_dir = plan.runs[0].workdir(tmp_path)
    assert starts(run_dir) == 1 and attempts(run_dir)[-1]["outcome"] == "diverged"
    assert sweep_status(tmp_path).count("diverged") == 1
    assert _results(tmp_path)[plan.runs[0].run_id]["status"] == "diverged"


def test_the_worker_precompiles_the_next_pending_run_of_another_shape(tmp_path, small_corpus, monkeypatch):
    """On an accelerator, while run i trains, the next unfinished run whose compiled steps differ is compiled in the
    background; on a CPU backend (this machine) nothing is, since the compile would only slow the steps."""
    import research.train.precompile as precompile
    from research.train.executables import shape_signature

    sweep = tiny(small_corpus)
    wide = dataclasses.replace(sweep, name="wide", base=sweep.base.override("model.d_model=32"))
    plan = plan_into(tmp_path, sweep)
    plan = dataclasses.replace(plan, runs=plan.runs[:2] + plan_into(tmp_path / "w", wide).runs[:1])
    same, other = plan.runs[1], plan.runs[2]
    assert shape_signature(same.config) == shape_signature(plan.runs[0].config) != shape_signature(other.config)
    started = []
    monkeypatch.setattr(precompile, "precompile_in_background", lambda config: started.append(config))
    Worker(tmp_path, plan, _quiet())._precompile_after(0)
    assert started == []  # CPU backend
    monkeypatch.setattr(precompile, "overlaps_training", lambda: True)
    Worker(tmp_path, plan, _quiet())._precompile_after(0)
    assert started == [other.config]
    started.clear()
    Worker(tmp_path, plan, _quiet(), train_fn=lambda *a, **k: None)._precompile_after(0)  # a custom trainer: no
    assert started == []


def test_a_worker_whose_claim_was_taken_over_stops_without_writing(tmp_path, small_corpus, monkeypatch):
    """The worker stalls past its heartbeat (as under SIGSTOP); another worker reaps its claim and takes the run.
    When the first goes on, its next write is fenced: nothing more of it lands in the run directory."""
    from research.data.pipeline import LMData
    from sweeps.claims import read_claim

    plan = plan_into(tmp_path, tiny(small_corpus))
    spec = plan.runs[0]  # 24 steps: logs every 4, checkpoints every 8
    run_dir = spec.workdir(tmp_path)
    original = LMData.train_batch

    def train_batch(self, k, *args, **kwargs):
        if k == 13 and read_claim(run_dir).get("worker") != "other":  # the takeover, while "paused" at step 12
            (run_dir / "claim.json").write_text(json.dumps({"worker": "other", "token": "other-token"}))
        return original(self, k, *args, **kwargs)

    monkeypatch.setattr(LMData, "train_batch", train_batch)
    report = Worker(tmp_path, dataclasses.replace(plan, runs=[spec]), _quiet()).run()
    assert report.outcomes == Counter(lost=1)
    assert read_claim(run_dir)["token"] == "other-token"  # the new owner's claim is untouched
    assert [a["event"] for a in attempts(run_dir)] == ["start"]  # no "end" (or "error") written after the loss
    assert not (run_dir / "summary.json").exists()
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) <= 12
    steps = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert all(name.isdigit() and int(name) <= 12 for name in steps), steps  # no later step, no stray tmp dir
