"""Resolve a config spec: a Python file defining `config()`, an earlier run's config.json, or a preset name."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from research import presets
from research.config import ConfigError, RunConfig


def load_config(spec: str, overrides: list[str] | None = None) -> RunConfig:
    """PATH.py (with `config() -> RunConfig`), PATH/config.json, a run directory, or a preset name; then overrides."""
    path = Path(spec)
    if path.is_dir() and (path / "config.json").exists():
        path = path / "config.json"
    if path.suffix == ".py" and path.exists():
        module_spec = importlib.util.spec_from_file_location(f"_scalelab_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, "config"):
            raise ConfigError(f"--config {spec}: the file defines no config() function. "
                              "Fix: add `def config() -> RunConfig:` returning the run's config.")
        config = module.config()
    elif path.suffix == ".json" and path.exists():
        config = RunConfig.from_json(path.read_text())
    elif path.suffix in (".py", ".json"):
        raise ConfigError(f"--config {spec}: no such file. Fix: check the path, e.g. experiments/configs/tiny.py.")
    else:
        try:
            config = presets.run_config(spec)
        except KeyError as e:
            raise ConfigError(f"--config {spec}: neither a file nor a preset ({e.args[0]}).") from None
    if not isinstance(config, RunConfig):
        raise ConfigError(f"--config {spec}: config() returned {type(config).__name__}, not a RunConfig.")
    return config.override(*overrides) if overrides else config
