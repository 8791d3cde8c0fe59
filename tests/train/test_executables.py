"""The compiled-executable cache: each key built once whatever the threads, failures not cached, LRU eviction."""

from __future__ import annotations

import threading
import time

import pytest

from research.train.executables import ExecutableCache


def test_concurrent_callers_of_one_key_share_one_build_and_others_do_not_wait():
    cache, builds, release = ExecutableCache(), [], threading.Event()

    def slow():
        builds.append("slow")
        release.wait(5)
        return "slow-exe"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("a", slow))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    started = time.perf_counter()
    assert cache.get("b", lambda: "fast-exe") == "fast-exe"  # not blocked behind the build of "a"
    assert time.perf_counter() - started < 1.0
    release.set()
    for t in threads:
        t.join()
    assert results == ["slow-exe"] * 3 and builds == ["slow"]


def test_a_failed_build_is_not_cached_and_eviction_is_least_recently_used():
    cache = ExecutableCache(capacity=2)

    def broken():
        raise RuntimeError("compile failed")

    with pytest.raises(RuntimeError):
        cache.get("k", broken)
    assert "k" not in cache and cache.get("k", lambda: 1) == 1
    cache.get("x", lambda: 2)
    cache.get("k", lambda: 99)  # touch k: x is now the oldest
    cache.get("y", lambda: 3)
    assert cache.keys() == {"k", "y"}
