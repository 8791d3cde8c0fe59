"""SIGTERM / SIGINT during a run: before training starts they stop it at once; once it trains they become a flag
that the loop checks between steps and evaluation batches, so it stops at a checkpoint within seconds."""

from __future__ import annotations

import signal
import threading


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

    def _handle(self, signum, frame):
        self.received = signum
        if self._immediate:
            raise RunInterrupted(signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
