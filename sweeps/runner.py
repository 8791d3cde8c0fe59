"""A worker: claim a run, train it with `research.train.run` in its run directory, record the outcome, repeat.

Complete, diverged and failed runs are skipped; an interrupted run resumes from its checkpoints (that is what
`run` does with a non-empty workdir). An error is retried, by this worker or another, until the run has used
`max_attempts`; then failure.json keeps the traceback. Errors retrying cannot fix (ConfigError, DataError) fail at
once. SIGTERM/SIGINT stop the current run at a checkpoint (research.train.run handles it) and end the worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from research.config import ConfigError
from research.train.signals import RunInterrupted
from sweeps.claims import HEARTBEAT_S, STALE_AFTER_S, ClaimLost, owner_info, try_claim
from sweeps.expansion import RunSpec
from sweeps.manifest import Plan
from sweeps.results import write_results
from sweeps.rundir import (
    FAILURE,
    SUMMARY,
    failed_attempts,
    read_json,
    record_end,
    record_start,
    run_state,
    write_failure,
)


@dataclass
class WorkerOptions:
    worker_id: str = "w0"
    stale_after_s: float = STALE_AFTER_S
    heartbeat_s: float = HEARTBEAT_S
    wait: bool = False  # keep polling while other workers hold unfinished runs, to take over any that stall
    poll_s: float = 5.0
    progress: bool = False  # research.train.run's own progress line
    precompile: bool = True  # on an accelerator, compile the next run's shapes on the host while this one trains
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


@dataclass
class WorkerReport:
    outcomes: Counter = field(default_factory=Counter)
    trained: list[str] = field(default_factory=list)  # run dirs this worker trained (one entry per attempt)
    stopped: bool = False  # ended by a signal


class Worker:
    def __init__(self, out: str | Path, plan: Plan, options: WorkerOptions | None = None,
                 train_fn: Callable | None = None, announce: Callable[[int], None] | None = None):
        self.out, self.plan = Path(out), plan
        self.options = options or WorkerOptions()
        self.train_fn = train_fn
        self._real_trainer = train_fn is None  # research.train.run, imported on first use
        self.announce = announce  # multi-host: tells the other processes which run (index, -1 = done)
        self.owner = owner_info(self.options.worker_id)
        self.report = WorkerReport()
        self._stop = threading.Event()
        self._lost_claim = False
        self._precompiling: threading.Thread | None = None

    # ---- main loop ---------------------------------------------------------------------------------------------
    def run(self) -> WorkerReport:
        previous = self._install_signals()
        try:
            while not self._stop.is_set():
                if self._pass():
                    continue
                states = [run_state(r.workdir(self.out), self.options.stale_after_s) for r in self.plan.runs]
                if all(s.terminal for s in states) or not self.options.wait:
                    break
                self._stop.wait(self.options.poll_s)
        finally:
            self._restore_signals(previous)
            if self.announce is not None:
                self.announce(-1)
            if self._precompiling is not None:
                self._precompiling.join()  # never leave the process with a compile in flight
        self.report.stopped = self._stop.is_set()
        return self.report

    def _pass(self) -> bool:
        """One pass over the plan; True if it trained anything."""
        trained = False
        for index, spec in enumerate(self.plan.runs):
            if self._stop.is_set():
                break
            run_dir = spec.workdir(self.out)
            if run_state(run_dir, self.options.stale_after_s).status in ("complete", "diverged", "failed", "running"):
                continue
            claim = try_claim(run_dir, self.owner, stale_after_s=self.options.stale_after_s,
                              heartbeat_s=self.options.heartbeat_s)
            if claim is None:
                continue
            claim.on_lost = self._on_lost
            with claim.start_heartbeat():
                if _finished(run_dir):  # another worker finished it between our look and our claim
                    continue
                if self.announce is not None:
                    self.announce(index)
                self._precompile_after(index)
                outcome = self._attempt(spec, run_dir, claim)
                trained = True
            self.report.outcomes[outcome] += 1
            self.report.trained.append(spec.dirname)
            write_results(self.out)
        return trained

    # ---- one attempt -------------------------------------------------------------------------------------------
    def _attempt(self, spec: RunSpec, run_dir: Path, claim) -> str:
        failures = failed_attempts(run_dir, claim.token)
        if len(failures) >= self.plan.max_attempts:
            write_failure(run_dir, spec.name, spec.run_id, failures)
            self._log(f"{spec.dirname}: failed ({len(failures)} attempts used; last: {failures[-1].get('error')})")
            return "failed"
        number = record_start(run_dir, claim.token, self.owner)
        self._log(f"{spec.dirname}: start (attempt {number}, {spec.config.num_steps} steps)")
        started = time.perf_counter()
        try:
            summary = self._train_fn()(spec.config, run_dir, progress=self.options.progress, fence=claim.check)
        except ClaimLost:
            return self._lost(spec)
        except RunInterrupted:  # a signal before training started: nothing was written
            if not claim.still_mine():
                return self._lost(spec)
            record_end(run_dir, claim.token, "interrupted", time.perf_counter() - started)
            self._stop.set()
            return "interrupted"
        except Exception as e:  # noqa: BLE001 - every error is recorded; the worker goes on with other runs
            if not claim.still_mine():
                return self._lost(spec)
            fatal = _is_fatal(e)
            error, tb = f"{type(e).__name__}: {e}", traceback.format_exc()
            record_end(run_dir, claim.token, "fatal" if fatal else "error", time.perf_counter() - started, error, tb)
            failures = failed_attempts(run_dir)
            if fatal or len(failures) >= self.plan.max_attempts:
                write_failure(run_dir, spec.name, spec.run_id, failures)
                self._log(f"{spec.dirname}: failed after {len(failures)} attempt(s): {error}")
                return "failed"
            self._log(f"{spec.dirname}: error on attempt {number} (will retry, {len(failures)}/"
                      f"{self.plan.max_attempts} used): {error}")
            return "error"
        seconds = time.perf_counter() - started
        if not claim.still_mine():
            return self._lost(spec)
        outcome = summary.status
        record_end(run_dir, claim.token, outcome, seconds)
        if summary.status == "interrupted":
            self._stop.set()  # a signal for the whole worker: research.train.run took it first
        share = summary.train_time_s / summary.wall_time_s if summary.wall_time_s else 0.0
        self._log(f"{spec.dirname}: {outcome} at step {summary.step}/{summary.steps} in {seconds:.1f}s "
                  f"(train {_fmt(summary.final_train_loss)}, eval {_fmt(summary.final_eval_loss)}, "
                  f"{summary.tokens_per_s:,.0f} tok/s, {share:.0%} of its time in steps)")
        return outcome

    def _lost(self, spec: RunSpec) -> str:
        """Our claim was taken over (we stalled past stale_after_s): leave the run directory to its new owner."""
        self._lost_claim = False
        self._log(f"{spec.dirname}: claim taken over by another worker; stopped without writing to it")
        return "lost"

    def _precompile_after(self, index: int) -> None:
        """Compile the next pending run of another shape in the background while run `index` trains (accelerators).

        Only with the real trainer and one process: a multi-host worker must compile in step with its peers."""
        if not (self.options.precompile and self._real_trainer) or self.announce is not None:
            return
        if self._precompiling is not None and self._precompiling.is_alive():
            return
        # JAX and the trainer load on first use, so planning and status stay light
        from research.train.executables import shape_signature
        from research.train.precompile import overlaps_training, precompile_in_background

        if not overlaps_training():
            return

        current = shape_signature(self.plan.runs[index].config)
        for spec in self.plan.runs[index + 1:]:
            if shape_signature(spec.config) == current:
                continue
            if not run_state(spec.workdir(self.out), self.options.stale_after_s).terminal:
                self._precompiling = precompile_in_background(spec.config)
                return

    def _train_fn(self):
        if self.train_fn is None:
            from research.train import run  # imported on first use: planning and status stay light

            self.train_fn = run
        return self.train_fn

    # ---- signals -----------------------------------------------------------------------------------------------
    def _on_lost(self) -> None:
        """Heartbeat thread: our claim was reaped (we stalled past stale_after_s). Stop this run at a checkpoint."""
        self._lost_claim = True
        self._log("claim lost (this worker stalled too long); stopping the current run")
        os.kill(os.getpid(), signal.SIGTERM)

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum, frame) -> None:
        if self._lost_claim:
            return
        self._log(f"signal {signum}: stopping after the current step")
        self._stop.set()

    @staticmethod
    def _restore_signals(previous) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _log(self, text: str) -> None:
        self.options.log(f"[{self.options.worker_id}] {text}")


def _finished(run_dir: Path) -> bool:
    summary = read_json(run_dir / SUMMARY) or {}
    return summary.get("status") in ("complete", "diverged") or (run_dir / FAILURE).exists()


def _is_fatal(e: Exception) -> bool:
    """Errors that the same config will raise again: bad config or unusable data (DataError is a ConfigError)."""
    return isinstance(e, ConfigError)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
