"""Run outputs: metrics.jsonl (append, truncated to the restored step on resume), summary.json, a progress line."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from research.files import write_text_atomic


@dataclasses.dataclass
class RunSummary:
    """summary.json: the record a sweep and the analysis read."""

    run_id: str
    config_hash: str
    status: str  # complete | diverged | interrupted
    step: int
    steps: int
    params: int
    params_non_embedding: int
    tokens: int  # D: tokens trained on so far
    epochs: float  # D / the training split's tokens: how often the run saw its data
    flops: float  # C, exact (see flop_convention)
    flops_6nd: float
    flops_per_token: int
    flop_convention: str
    final_train_loss: float | None
    final_eval_loss: float | None
    wall_time_s: float
    train_time_s: float  # time inside training steps (excludes compile, eval, checkpoint waits)
    tokens_per_s: float
    mfu: float
    seed: int
    devices: int
    mesh: dict
    diverged_at_step: int | None = None
    last_good_checkpoint: int | None = None
    base: dict | None = None  # a fine-tune's base: {"run", "step", "params_hash"}
    teacher: dict | None = None  # a distilled run's teacher: {"run", "step", "params_hash"}
    trainable_params: int | None = None  # parameters the optimiser updates (all of them unless adapt freezes some)
    config: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _finite_or_none(x):
    return x if isinstance(x, (int, str)) or x is None or math.isfinite(x) else None


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step."""

    def __init__(self, path: Path, restored_step: int, enabled: bool = True):
        """Keep the records up to `restored_step` (steps after it are redone); enabled=False: read, never write
        (every process but the first in a multi-process run)."""
        self.path, self.enabled = path, enabled
        kept = [r for r in read_jsonl(path) if r.get("step", 0) <= restored_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if enabled and (not path.exists() or path.read_text() != text):  # rewritten only if something goes
            write_text_atomic(path, text)
        self.records = kept

    def write(self, record: dict) -> None:
        record = {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in record.items()}
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        self.records.append(record)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by a kill: everything before it is intact
    return rows


class Progress:
    """One status line: step, loss, tokens/s, ETA. Redrawn in place on a terminal, one line per log otherwise."""

    def __init__(self, total_steps: int, enabled: bool = True):
        self.total, self.enabled = total_steps, enabled
        self.tty = sys.stdout.isatty()
        self.start = time.perf_counter()

    def update(self, step: int, loss: float, tokens_per_s: float, steps_per_s: float, extra: str = "") -> None:
        if not self.enabled:
            return
        eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("nan")
        width = 24
        done = int(width * step / self.total)
        line = (f"[{'#' * done}{'.' * (width - done)}] step {step}/{self.total}  loss {loss:.4f}  "
                f"{tokens_per_s:,.0f} tok/s  ETA {_fmt_time(eta)}{extra}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(flush=True)


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
