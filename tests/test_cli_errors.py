"""Every entry point answers a problem the user can fix with one `error: <what>. Fix: <how>` line and exit 2, no
traceback (unless --debug): bad data, bad paths, broken config and sweep files, unknown names."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = ["--config", str(ROOT / "experiments/configs/tiny.py"), "--set", "train.steps=2"]


def _cli(tmp_path: Path, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCALELAB_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", *args, *(["--debug"] if debug else [])], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (command, a phrase the error must contain)."""
    (tmp_path / "a_file").write_text("not a directory\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    (tmp_path / "no_talk.jsonl").write_text("\n")
    (tmp_path / "broken_sweep.py").write_text("def sweep(:\n    pass\n")
    (tmp_path / "raising_sweep.py").write_text("def sweep():\n    return undefined_name\n")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "config.json").write_text('{"model": {')  # a run dir whose config was cut short
    train = ["research.train", *TOUR, "--workdir"]
    return {
        "workdir is a file": ([*train, str(tmp_path / "a_file")], "a file is in the way"),
        "missing data file": ([*train, str(tmp_path / "run1"), "--set", "data.source=/no/such/file.txt"],
                              "data.source"),
        "empty corpus": ([*train, str(tmp_path / "run2"), "--set", f"data.source={tmp_path / 'empty'}"],
                         "data.source"),
        "malformed JSONL": ([*train, str(tmp_path / "run3"), "--set", f"data.source={tmp_path / 'bad.jsonl'}"],
                            "line 2: not valid JSON"),
        "infinite lr": ([*train, str(tmp_path / "run4"), "--set", "optim.lr=inf"], "finite"),
        "damaged config.json": ([*train, str(tmp_path / "damaged")], "not valid JSON"),
        "workers on a damaged sweep": (["sweeps", "worker", str(tmp_path / "empty")], "plan"),
        "sweep syntax error": (["sweeps", "plan", str(tmp_path / "broken_sweep.py")], "broken_sweep.py:1"),
        "sweep raising": (["sweeps", "plan", str(tmp_path / "raising_sweep.py")], "NameError"),
        "no workers": (["sweeps", "run", "demo", "--out", str(tmp_path / "s"), "--workers", "0"], "--workers"),
        "generate without a run": (["research.generate", "--workdir", str(tmp_path / "none"), "--prompt", "a"],
                                   "trained run"),
        "generate with neither prompt nor chat": (["research.generate", "--workdir", str(tmp_path / "none")],
                                                  "--chat IN.jsonl with --out"),
        "generate for an empty chat file": (["research.generate", "--workdir", str(tmp_path / "none"), "--chat",
                                             str(tmp_path / "no_talk.jsonl"), "--out", str(tmp_path / "o.jsonl")],
                                            "holds no conversation"),
        "unknown preset": (["research.bench", "--config", "no-such-preset"], "unknown preset"),
        "unknown experiment": (["experiments", "run", "no_such", "--out", str(tmp_path / "e")], "no_such"),
        "analysis of nothing": (["analysis", "fit", str(tmp_path / "empty")], "Fix"),
    }


@pytest.mark.slow
def test_user_errors_are_one_line_with_a_fix_and_exit_2(tmp_path):
    cases = _cases(tmp_path)
    with ThreadPoolExecutor(2) as pool:  # two at a time: each is mostly a single-threaded Python start-up
        results = dict(zip(cases, pool.map(lambda command: _cli(tmp_path, *command), (c for c, _ in cases.values()))))
    failures = {}
    for name, (_, phrase) in cases.items():
        r = results[name]
        ok = (r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "Fix:" in r.stderr
              and phrase in r.stderr and "Traceback" not in r.stderr)
        if not ok:
            failures[name] = (r.returncode, r.stderr[-600:])
    assert not failures, failures


def test_debug_shows_the_traceback(tmp_path):
    r = _cli(tmp_path, "research.train", *TOUR, "--workdir", str(tmp_path / "r"), "--set", "optim.lr=inf", debug=True)
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr
