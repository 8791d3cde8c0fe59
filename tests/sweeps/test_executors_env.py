"""Worker processes the local executor starts get malloc's huge pages (research.train.host_memory)."""

from __future__ import annotations

import subprocess

from research.train.host_memory import HUGE_PAGES_TUNABLE
from sweeps.executors.local import ProcessLauncher


def test_worker_processes_start_with_huge_pages(tmp_path, monkeypatch):
    started = []

    class Recorder:
        def __init__(self, args, **kwargs):
            started.append((args, kwargs["env"]))

    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    monkeypatch.setattr(subprocess, "Popen", Recorder)
    ProcessLauncher(tmp_path, ["--heartbeat", "5"]).launch(2, round_index=0)
    assert [args[-4:] for args, _ in started] == [["--worker-id", "p0.0", "--heartbeat", "5"],
                                                  ["--worker-id", "p0.1", "--heartbeat", "5"]]
    assert all(env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE_PAGES_TUNABLE}" for _, env in started)
