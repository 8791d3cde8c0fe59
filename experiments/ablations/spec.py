"""An ablation: variants along one categorical axis (dotted overrides), a baseline, optional extra axes, seeds.

It becomes a `sweeps.Sweep` (variants x extra axes x seeds on one base config), so running it resumes, skips
finished runs and runs on Slurm exactly like any sweep. Every variant shares the base's data, token budget and seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.ablations.scales import ExperimentError
from research.config import RunConfig
from research.model.flops import count_params, train_flops_per_token
from sweeps.spec import Grid, Point, Sweep, apply_overrides, axis, check_key, product


@dataclass(frozen=True)
class Variant:
    """One arm: a name, the dotted overrides it applies to the base, and a note on what was matched."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        for key, _ in self.overrides:
            check_key(key)


@dataclass(frozen=True)
class ExtraAxis:
    """A second axis every variant is crossed with (e.g. depth, learning rate); `tag` names its table column."""

    key: str
    values: tuple
    tag: str


@dataclass(frozen=True)
class Ablation:
    name: str
    description: str
    matched: str  # what the variants hold equal: parameters and/or FLOPs (and what they do not)
    variants: tuple[Variant, ...]
    baseline: str
    axes: tuple[ExtraAxis, ...] = ()
    eval_lengths: tuple[int, ...] = ()  # multiples of the training seq_len evaluated after training (positions)
    kv_cache: bool = False  # report KV-cache bytes per token (attention)
    literature: str = ""  # what published work reports, for the report's reader

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ExperimentError(f"ablation {self.name}: variant names {names} repeat. Fix: name each variant once")
        if self.baseline not in names:
            raise ExperimentError(f"ablation {self.name}: baseline {self.baseline!r} is not a variant ({names})")

    def config(self, base: RunConfig, variant: Variant) -> RunConfig:
        """The variant's config at the base's extra-axis values (for parameter counts and checks)."""
        return apply_overrides(base, variant.overrides)

    def sweep(self, base: RunConfig, seeds: int, scale: str) -> Sweep:
        """Variants x extra axes x seeds 0..seeds-1, named '<ablation>-<scale>'."""
        if seeds < 1:
            raise ExperimentError(f"--seeds {seeds}: need at least 1 (3 or more for confidence intervals)")
        grid = Grid(tuple(Point(v.overrides, labels=(v.name,), tags=(("variant", v.name),)) for v in self.variants))
        for extra in self.axes:
            grid = product(grid, axis(extra.key, extra.values, label=extra.tag, tag=extra.tag))
        return Sweep(name=f"{self.name}-{scale}", base=base, grid=grid, seeds=tuple(range(seeds)),
                     description=self.description)

    def variant_rows(self, base: RunConfig) -> list[dict]:
        """Per variant: name, note, parameters (total, non-embedding) and training FLOPs per token at the base."""
        rows = []
        for v in self.variants:
            c = self.config(base, v)
            counts = count_params(c.model)
            rows.append({"variant": v.name, "note": v.note, "params": counts.total,
                         "params_non_embedding": counts.non_embedding,
                         "flops_per_token": train_flops_per_token(c.model, c.data.seq_len)})
        return rows

    def to_dict(self, base: RunConfig, scale: str, seeds: int) -> dict:
        """OUT/experiment.json: what the report needs to know about the experiment."""
        return {"ablation": self.name, "scale": scale, "seeds": list(range(seeds)), "description": self.description,
                "matched": self.matched, "baseline": self.baseline, "literature": self.literature,
                "axes": [{"key": a.key, "tag": a.tag, "values": list(a.values)} for a in self.axes],
                "eval_lengths": list(self.eval_lengths), "kv_cache": self.kv_cache,
                "seq_len": base.data.seq_len, "variants": self.variant_rows(base)}
