"""SIGTERM / SIGINT during a run: before training starts they stop it at once; once it trains they become a flag
that the loop checks between steps and evaluation batches, so it stops at a checkpoint within seconds. With several
processes, a signal any one of them received stops them all at the same point."""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is True on any of them; each process must call it at the same point."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


class FenceLost(RuntimeError):
    """Another process of this run failed its fence (its claim on the run directory was taken over): stop too."""


def fenced(fence) -> None:
    """Run this process's `fence()` and agree with the other processes: if any failed, every one stops (raising its
    own error, or FenceLost), instead of the others waiting in the next collective."""
    error = None
    try:
        fence()
    except Exception as e:  # noqa: BLE001 - re-raised below, after the others have heard of it
        error = e
    if any_process(error is not None):
        raise error or FenceLost("another process of this run may no longer write to its directory")


class RunInterrupted(KeyboardInterrupt):
    """A signal arrived while the run was loading data or compiling: nothing new was trained, nothing written."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum} before training started; nothing to save")
        self.signum = signum


class StopSignals:
    """Context manager (main thread only; elsewhere it does nothing). `training()` switches from raising
    RunInterrupted to setting `received`."""

    def __init__(self):
        self.received: int | None = None
        self._immediate = True
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def training(self) -> None:
        """From now on, a signal asks the loop to stop at its next checkpoint."""
        self._immediate = False
        if self.received is not None:  # arrived between the last check and now
            raise RunInterrupted(self.received)

    def stop_requested(self) -> bool:
        """Whether the loop stops here: a signal arrived, at this process or (with several processes) at any. Every
        process calls this at the same points, so they stop together instead of leaving the others waiting in a
        collective (a scheduler often signals only some of a job's processes)."""
        return any_process(self.received is not None)

    def _handle(self, signum, frame):
        self.received = signum
        if self._immediate:
            raise RunInterrupted(signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
