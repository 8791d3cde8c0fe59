"""OUT/results.jsonl: one line per finished or failed run, rebuilt from the run directories (never appended to).

Each run's summary.json is the record; this file is a convenience copy for tools that want one file. Any worker
may rebuild it at any time: it is written to a temporary file and renamed, so readers never see a torn file, and
every rebuild reads all run directories, so the last writer's copy is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from research.files import write_text_atomic
from sweeps.rundir import FAILURE, POINT, SUMMARY, read_json

RESULTS = "results.jsonl"


def collect(out: str | Path) -> list[dict]:
    """Rows for every run dir with a summary.json or failure.json: the summary plus name, dirname and tags
    (failed runs: status 'failed', error, attempts, and the planned N, D, C)."""
    rows = []
    runs = Path(out) / "runs"
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        point = read_json(run_dir / POINT) or {}
        summary = read_json(run_dir / SUMMARY)
        failure = read_json(run_dir / FAILURE)
        extra = {"name": point.get("name", run_dir.name), "dirname": run_dir.name, "tags": point.get("tags", {})}
        if summary and summary.get("status") in ("complete", "diverged"):
            rows.append(summary | extra)
        elif failure:
            planned = {k: point.get(k) for k in ("params", "tokens", "flops", "flops_6nd", "config")}
            rows.append({**(summary or {}), **planned, "run_id": point.get("run_id"), "status": "failed",
                         "error": failure.get("error"), "attempts": failure.get("attempts"), **extra})
        elif summary:
            rows.append(summary | extra)  # interrupted: partial, resumable
    return rows


def write_results(out: str | Path) -> Path:
    path = Path(out) / RESULTS
    rows = collect(out)
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows))
    return path
