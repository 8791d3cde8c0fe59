"""Named architecture ablations: `build(name, scale)` gives the Ablation and its base config at that scale."""

from __future__ import annotations

from experiments.ablations.catalog import BUILDERS
from experiments.ablations.scales import SCALES, ExperimentError, Scale, closest_hint, get_scale
from experiments.ablations.spec import Ablation, ExtraAxis, Variant
from research.config import RunConfig

NAMES = tuple(BUILDERS)


def build(name: str, scale: str = "tiny", overrides: list[str] | None = None) -> tuple[Ablation, RunConfig]:
    """(ablation, base config) for `name` at `scale`, the base with dotted `overrides` (e.g. data.source=...)."""
    if name not in BUILDERS:
        raise ExperimentError(f"experiment {name!r}: unknown{closest_hint(name, BUILDERS)}. Fix: use one of "
                              f"{', '.join(NAMES)} (python -m experiments list)")
    base = get_scale(scale).base
    if overrides:
        base = base.override(*overrides)
    return BUILDERS[name](base), base


__all__ = ["NAMES", "SCALES", "Ablation", "ExperimentError", "ExtraAxis", "Scale", "Variant", "build", "get_scale"]
