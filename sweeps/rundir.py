"""A run directory is the unit of state: what the trainer wrote, plus the sweep's small records about it.

    point.json      name, id, tags, the sweep it belongs to (written when the sweep is planned into OUT)
    config.json, metrics.jsonl, checkpoints/, summary.json    written by research.train.run
    claim.json      held while a worker trains it (sweeps.claims)
    attempts.jsonl  one line per attempt start and end: worker, outcome, error and traceback
    failure.json    written once a run has used up its attempts: status 'failed', the last error and traceback

A run's status is read from these files alone, never from a scheduler.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from research.files import write_json_atomic
from sweeps.claims import is_stale, read_claim

TERMINAL = ("complete", "diverged", "failed")
POINT, ATTEMPTS, FAILURE, SUMMARY, METRICS = "point.json", "attempts.jsonl", "failure.json", "summary.json", \
    "metrics.jsonl"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill
    return rows


def append_jsonl(path: Path, record: dict) -> None:
    """One write of one line with O_APPEND: concurrent appends do not interleave within a line."""
    data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# ---- attempts ------------------------------------------------------------------------------------------------------
def record_start(run_dir: Path, token: str, owner: dict) -> int:
    """Log an attempt's start; returns its number (1-based)."""
    number = sum(1 for r in read_jsonl(run_dir / ATTEMPTS) if r.get("event") == "start") + 1
    who = {k: owner.get(k) for k in ("worker", "host", "pid", "slurm_job", "slurm_task")}
    append_jsonl(run_dir / ATTEMPTS, {"event": "start", "attempt": number, "token": token, "time": time.time(), **who})
    return number


def record_end(run_dir: Path, token: str, outcome: str, seconds: float, error: str | None = None,
               traceback: str | None = None) -> None:
    """outcome: complete | diverged | interrupted | error | fatal (an error retrying cannot fix) | lost."""
    append_jsonl(run_dir / ATTEMPTS, {"event": "end", "token": token, "outcome": outcome, "time": time.time(),
                                      "seconds": round(seconds, 3), "error": error, "traceback": traceback})


def record_reset(run_dir: Path) -> None:
    """Forget earlier failures (`sweeps run --retry-failed`): they no longer count against max_attempts."""
    append_jsonl(run_dir / ATTEMPTS, {"event": "reset", "time": time.time()})
    (run_dir / FAILURE).unlink(missing_ok=True)


def failed_attempts(run_dir: Path, current_token: str | None = None) -> list[dict]:
    """Attempts since the last reset that ended in an error, or started and never ended (the process vanished:
    killed, out of memory, node lost), except the attempt `current_token` and one whose claim is still live."""
    records = read_jsonl(run_dir / ATTEMPTS)
    last_reset = max((i for i, r in enumerate(records) if r.get("event") == "reset"), default=-1)
    records = records[last_reset + 1:]
    ended = {r["token"]: r for r in records if r.get("event") == "end"}
    holder = read_claim(run_dir) or {}
    failed = []
    for r in records:
        if r.get("event") != "start" or r["token"] == current_token:
            continue
        end = ended.get(r["token"])
        if end is None and r["token"] != holder.get("token"):
            failed.append(r | {"outcome": "vanished", "error": "the worker process ended without a record "
                                                            "(killed, out of memory or node lost)"})
        elif end is not None and end["outcome"] in ("error", "fatal"):
            failed.append(r | end)
    return failed


def write_failure(run_dir: Path, name: str, run_id: str, failures: list[dict]) -> dict:
    last = failures[-1] if failures else {}
    record = {"status": "failed", "name": name, "run_id": run_id, "attempts": len(failures),
              "error": last.get("error"), "traceback": last.get("traceback"), "time": time.time(),
              "errors": [{"attempt": f.get("attempt"), "outcome": f.get("outcome"), "error": f.get("error"),
                          "worker": f.get("worker"), "host": f.get("host")} for f in failures]}
    write_json_atomic(run_dir / FAILURE, record)
    return record


# ---- state ---------------------------------------------------------------------------------------------------------
@dataclass
class RunState:
    """What the files say about one run right now."""

    dirname: str
    status: str  # complete | diverged | failed | running | stalled | interrupted | pending
    step: int = 0
    steps: int | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    wall_time_s: float | None = None
    train_time_s: float | None = None
    error: str | None = None
    worker: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def run_state(run_dir: Path, stale_after_s: float) -> RunState:
    run_dir = Path(run_dir)
    summary = read_json(run_dir / SUMMARY)
    if summary and summary.get("status") in ("complete", "diverged"):
        return _from_summary(run_dir.name, summary, summary["status"])
    failure = read_json(run_dir / FAILURE)
    if failure:
        return RunState(run_dir.name, "failed", error=failure.get("error"),
                        **_progress(run_dir, summary))
    claim = read_claim(run_dir)
    if claim is not None:
        stale = is_stale(run_dir, claim, stale_after_s)
        return RunState(run_dir.name, "stalled" if stale else "running", worker=claim.get("worker"),
                        **_progress(run_dir, summary))
    if summary:  # interrupted: resumes from its checkpoint
        return _from_summary(run_dir.name, summary, "interrupted")
    progress = _progress(run_dir, None)
    return RunState(run_dir.name, "interrupted" if progress["step"] else "pending", **progress)


def _from_summary(dirname: str, s: dict, status: str) -> RunState:
    return RunState(dirname, status, s.get("step", 0), s.get("steps"), s.get("final_train_loss"),
                    s.get("final_eval_loss"), s.get("tokens_per_s"), s.get("wall_time_s"), s.get("train_time_s"))


def _progress(run_dir: Path, summary: dict | None) -> dict:
    """Step, steps and latest losses from metrics.jsonl (the summary of an earlier attempt fills gaps)."""
    records = read_jsonl(run_dir / METRICS)
    steps = (summary or {}).get("steps") or (read_json(run_dir / POINT) or {}).get("steps")
    last = records[-1] if records else {}
    loss = next((r["loss"] for r in reversed(records) if r.get("loss") is not None), None)
    eval_loss = next((r["eval_loss"] for r in reversed(records) if r.get("eval_loss") is not None), None)
    return {"step": int(last.get("step", 0)), "steps": steps, "train_loss": loss, "eval_loss": eval_loss,
            "tokens_per_s": last.get("tokens_per_s")}


