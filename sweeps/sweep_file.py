"""Load a sweep file: a Python file (or a name under sweeps/configs/) defining `sweep() -> Sweep`."""

from __future__ import annotations

from pathlib import Path

from research.config_files import call_factory
from sweeps.spec import Sweep, SweepError

CONFIGS = Path(__file__).parent / "configs"


def resolve_path(spec: str) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    named = CONFIGS / f"{spec}.py"
    if path.suffix != ".py" and named.is_file():
        return named
    known = sorted(p.stem for p in CONFIGS.glob("*.py") if not p.name.startswith("_"))
    raise SweepError(f"sweep {spec!r}: no such file, and no sweeps/configs/{spec}.py. Fix: give a path to a .py "
                     f"file defining sweep(), or one of: {', '.join(known)}")


def load_sweep(spec: str) -> tuple[Sweep, Path]:
    path = resolve_path(spec)
    return call_factory(path, "sweep", Sweep, SweepError), path
