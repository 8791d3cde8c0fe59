"""keep_freed_host_memory: a freed 64 MB buffer is reused by the next allocation instead of being faulted in anew."""

from __future__ import annotations

import subprocess
import sys

import pytest

from research.train.host_memory import keep_freed_host_memory

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
