"""Claims: who is training a run, as an atomic lock file in its run directory, kept fresh by a heartbeat.

A worker claims a run by hard-linking a private file to `claim.json` (atomic, and fails if it exists, also on NFS).
While it trains, a thread touches the file every `heartbeat_s`; a claim whose file is older than `stale_after_s`,
or whose owner process is gone (same host), is stale. Stale claims are reaped under a short-lived mutex
(`claim.json.reap`): the reaper renames the stale file away only if it is still the one it judged stale, then claims
like anyone else. So any number of processes, array tasks or nodes share a sweep with no coordinator, and a run is
never held by two live workers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CLAIM = "claim.json"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0


def owner_info(worker: str) -> dict:
    """Who this process is: enough to tell a dead owner on the same host (pid + process start time)."""
    return {"worker": worker, "host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_time(os.getpid()),
            "slurm_job": os.environ.get("SLURM_JOB_ID"), "slurm_task": os.environ.get("SLURM_ARRAY_TASK_ID")}


class ClaimLost(Exception):
    """This worker's claim was reaped and taken over: it must not write into the run directory again."""


@dataclass
class Claim:
    """A held claim. `lost` is set if the heartbeat finds the file gone or owned by someone else."""

    path: Path
    token: str
    info: dict
    heartbeat_s: float = HEARTBEAT_S
    lost: threading.Event = field(default_factory=threading.Event)
    on_lost: object = None  # called once, from the heartbeat thread, when the claim is lost
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> Claim:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.path.parent.name}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.still_mine():
                self.lost.set()
                if callable(self.on_lost):
                    self.on_lost()
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                pass

    def still_mine(self) -> bool:
        current = read_claim(self.path.parent)
        return current is not None and current.get("token") == self.token

    def check(self) -> None:
        """The fence before every write into the run directory: raise ClaimLost unless the claim is still ours."""
        if not self.still_mine():
            self.lost.set()
            raise ClaimLost(f"{self.path.parent}: claim {self.token[:8]} was taken over")

    def release(self) -> None:
        """Stop the heartbeat and remove the file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.still_mine():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(run_dir: Path, owner: dict, *, stale_after_s: float = STALE_AFTER_S,
              heartbeat_s: float = HEARTBEAT_S) -> Claim | None:
    """Claim `run_dir` (whose parent must exist), or None if a live worker holds it. Reaps a stale claim first."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reclaimed = None
    for _ in range(3):  # the holder may release between our attempt and our look: then try again
        token = uuid.uuid4().hex
        info = owner | {"token": token, "claimed_at": time.time()}
        if reclaimed is not None:
            info["reclaimed_from"] = reclaimed
        if _link_new(run_dir / CLAIM, info):
            return Claim(run_dir / CLAIM, token, info, heartbeat_s)
        current = read_claim(run_dir)
        if current is None:
            continue
        if not is_stale(run_dir, current, stale_after_s) or not _reap(run_dir, current, stale_after_s):
            return None
        reclaimed = current
    return None


def read_claim(run_dir: Path) -> dict | None:
    """The claim file's content, or None if there is none (a torn or foreign file reads as an empty claim)."""
    try:
        text = (Path(run_dir) / CLAIM).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {}


def claim_age(run_dir: Path) -> float | None:
    """Seconds since the last heartbeat, or None if unclaimed."""
    try:
        return time.time() - (Path(run_dir) / CLAIM).stat().st_mtime
    except FileNotFoundError:
        return None


def is_stale(run_dir: Path, info: dict, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Heartbeat older than stale_after_s, or the owner is a dead process on this host."""
    age = claim_age(run_dir)
    if age is None:
        return False
    if age > stale_after_s:
        return True
    return info.get("host") == socket.gethostname() and not _alive(info.get("pid"), info.get("pid_start"))


def _link_new(path: Path, info: dict) -> bool:
    """Atomically create `path` with `info` unless it exists: write a private file, hard-link it into place."""
    tmp = path.with_name(f".{path.name}.{info['token']}")
    tmp.write_text(json.dumps(info, sort_keys=True))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _reap(run_dir: Path, judged: dict, stale_after_s: float) -> bool:
    """Remove the stale claim `judged`, under the reap mutex; False if someone else is reaping or it came alive."""
    mutex = run_dir / (CLAIM + ".reap")
    token = uuid.uuid4().hex
    if not _link_new(mutex, {"token": token, "pid": os.getpid(), "host": socket.gethostname()}):
        try:  # a reaper that died holding the mutex: it holds it for milliseconds, so old means dead
            if time.time() - mutex.stat().st_mtime > stale_after_s:
                mutex.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        return False
    try:
        current = read_claim(run_dir)
        if current is None:
            return True  # released meanwhile: free to claim
        if current.get("token") != judged.get("token") or not is_stale(run_dir, current, stale_after_s):
            return False
        grave = run_dir / f".{CLAIM}.reaped.{token}"
        try:
            os.rename(run_dir / CLAIM, grave)
        except FileNotFoundError:
            return True
        reaped = json.loads(grave.read_text() or "{}") if grave.exists() else {}
        if reaped.get("token") != judged.get("token"):  # cannot happen under the mutex; refuse to guess
            os.link(grave, run_dir / CLAIM)
            grave.unlink()
            return False
        grave.unlink()
        return True
    finally:
        mutex.unlink(missing_ok=True)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the owner;
    'zombie' for a process that has exited but not been waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def _alive(pid, pid_start) -> bool:
    if not isinstance(pid, int):
        return True  # unknown owner: only the heartbeat can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return now != "zombie" and (pid_start is None or now in (None, pid_start))
