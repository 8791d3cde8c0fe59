"""Host memory: a freed 64 MB buffer is reused instead of faulted in anew, and processes we start get huge pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from research.train.host_memory import HUGE_PAGES_TUNABLE, huge_pages_env, keep_freed_host_memory

# Allocate, touch and free a 64 MB buffer three times; print the minor page faults of the second and third time.
PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from research.train.host_memory import keep_freed_host_memory
    assert keep_freed_host_memory()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = np.ones(16 << 20, np.float32)
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(faults() + faults())
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not keep_freed_host_memory(), reason="needs glibc's mallopt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    assert default > 50  # glibc maps a fresh 64 MB buffer each time (2 MB huge pages or not: 32+ faults each)
    assert kept < 20, (default, kept)


# malloc and touch a 64 MB buffer (as XLA does; NumPy would madvise huge pages itself); print how much of this
# process's anonymous memory sits in huge pages (kB).
HUGE_PROBE = """
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype = ctypes.c_void_p
buffer = libc.malloc(64 << 20)
ctypes.memset(buffer, 1, 64 << 20)
rollup = open("/proc/self/smaps_rollup").read().splitlines()
print(next(int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:")))
"""


def _thp_mode() -> str | None:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")]


def _glibc() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split("."))
    except (ValueError, OSError, IndexError, AttributeError):
        return ()


def test_huge_pages_env_adds_the_tunable_once_and_keeps_the_others():
    assert huge_pages_env({})["GLIBC_TUNABLES"] == HUGE_PAGES_TUNABLE
    assert huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1", "A": "b"}) == {
        "GLIBC_TUNABLES": f"glibc.malloc.arena_max=1:{HUGE_PAGES_TUNABLE}", "A": "b"}
    assert huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"


def test_make_starts_its_commands_with_huge_pages():
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert f"GLIBC_TUNABLES ?= {HUGE_PAGES_TUNABLE}" in makefile and "export GLIBC_TUNABLES" in makefile


@pytest.mark.skipif(_thp_mode() not in ("madvise", "always") or _glibc() < (2, 35),
                    reason="needs transparent huge pages and glibc >= 2.35")
def test_a_process_started_with_huge_pages_env_backs_large_buffers_with_huge_pages():
    def huge_kb(env):
        return int(subprocess.run([sys.executable, "-c", HUGE_PROBE], env=env, check=True, capture_output=True,
                                  text=True).stdout)

    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert huge_kb(huge_pages_env(plain)) >= 32 << 10  # at least half the 64 MB buffer in 2 MB pages
    if _thp_mode() == "madvise":  # without the tunable, malloc does not ask and the kernel gives 4 KB pages
        assert huge_kb(plain) < 8 << 10
