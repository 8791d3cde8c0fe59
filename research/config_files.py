"""Resolve a config spec: a Python file defining `config()`, an earlier run's config.json, or a preset name."""

from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path

from research import presets
from research.config import ConfigError, RunConfig


def call_factory(path: Path, name: str, expected: type, error: type[Exception] = ConfigError):
    """Run the Python file `path` and return what its `name()` returns, checked to be an `expected`: how config files
    (`config()`) and sweep files (`sweep()`) are read."""
    module_spec = importlib.util.spec_from_file_location(f"_scalelab_{name}_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        if not callable(getattr(module, name, None)):
            raise error(f"{path}: defines no {name}() function. Fix: add `def {name}() -> {expected.__name__}:`")
        value = getattr(module, name)()
    except (ConfigError, SyntaxError):
        raise
    except Exception as e:  # noqa: BLE001 - any error in the user's file, named with its line
        line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__)) if f.filename == str(path)),
                    "?")
        raise error(f"{path}:{line}: {name}() failed with {type(e).__name__}: {e}. Fix: correct the file "
                    "(--debug shows the traceback).") from e
    if not isinstance(value, expected):
        raise error(f"{path}: {name}() returned {type(value).__name__}, not a {expected.__name__}")
    return value


def load_config(spec: str, overrides: list[str] | None = None) -> RunConfig:
    """PATH.py (with `config() -> RunConfig`), PATH/config.json, a run directory, or a preset name; then overrides."""
    path = Path(spec)
    if path.is_dir() and (path / "config.json").exists():
        path = path / "config.json"
    if path.suffix == ".py" and path.exists():
        config = call_factory(path, "config", RunConfig)
    elif path.suffix == ".json" and path.exists():
        config = RunConfig.read(path)
    elif path.suffix in (".py", ".json"):
        raise ConfigError(f"--config {spec}: no such file. Fix: check the path, e.g. experiments/configs/tiny.py.")
    else:
        try:
            config = presets.run_config(spec)
        except ConfigError as e:
            raise ConfigError(f"--config {spec}: neither a file nor a preset ({e}).") from None
    return config.override(*overrides) if overrides else config
