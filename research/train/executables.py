"""Compiled executables, cached under one key: everything a compile depends on (`compile_key`).

Runs of equal shapes share one compiled init, train step and eval step. A background thread may be compiling the
next run's executables (research.train.precompile) while this run trains: a caller asking for a key that is being
built waits for that build instead of compiling it twice, and callers asking for other keys never wait.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from research.config import RunConfig
from research.parallel.pipeline import pipeline_for
from research.train.optimizer import SCHEDULE_FIELDS


def shape_signature(config: RunConfig) -> dict:
    """What a config contributes to its compiled pieces: the seed, the length and the learning-rate schedule are
    inputs, not part of it, so runs equal on it (and on data and devices) share them."""
    optim = {k: v for k, v in dataclasses.asdict(config.optim).items() if k not in SCHEDULE_FIELDS}
    return {"model": dataclasses.asdict(config.model), "optim": optim, "batch": config.batch_size,
            "seq_len": config.data.seq_len, "document_mask": config.data.document_mask,
            "accum": config.train.accum_steps, "z_loss": config.train.z_loss,
            "pipeline": repr(pipeline_for(config)), "adapt": dataclasses.asdict(config.adapt),
            "distill": _distill_constants(config)}


def _distill_constants(config: RunConfig) -> dict | None:
    """What distillation compiles in: the loss's weight and temperature (the teacher's shapes are an input)."""
    if config.distill.teacher is None:
        return None
    return {k: v for k, v in dataclasses.asdict(config.distill).items() if k not in ("teacher", "teacher_step")}


def compile_key(config: RunConfig, mesh, **extra) -> str:
    """The one cache key of every compiled piece of a run: its shape signature, the devices, and what the piece
    adds (pad id, steps per call, the model the caller built)."""
    devices = {"mesh": dict(mesh.shape), "devices": [d.id for d in mesh.devices.flat]}
    return json.dumps(shape_signature(config) | devices | extra, sort_keys=True, default=repr)


class ExecutableCache:
    """Least-recently-used map key -> executable; `get(key, build)` builds each key once, whatever the threads."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Future] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            future = self._entries.get(key)
            owner = future is None
            if owner:
                future = self._entries[key] = Future()
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        if owner:  # built in a thread: waiting on a future lets a signal interrupt even a long XLA compile
            threading.Thread(target=self._build, args=(key, future, build), daemon=True,
                             name=f"compile-{len(self._entries)}").start()
        return future.result()

    def _build(self, key: Hashable, future: Future, build: Callable[[], Any]) -> None:
        try:
            future.set_result(build())
        except BaseException as e:  # noqa: BLE001 - handed to every waiter
            with self._lock:  # a failed build is not cached: the next caller tries again
                if self._entries.get(key) is future:
                    del self._entries[key]
            future.set_exception(e)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> set:
        with self._lock:
            return set(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
