"""Sweep specs: a base `RunConfig`, a grid of points (products and zips of axes over any config field) and seeds.

A `Grid` is an ordered list of `Point`s. A point holds dotted overrides (`optim.lr=3e-3`, or a whole section such as
`model=ModelConfig(...)`), at most one training-length `Budget` (resolved once the model is known, see
`sweeps.expansion`), labels for the run's readable name and tags for tables and results. Grids combine with
`product(a, b)` (or `a * b`), `zipped(a, b)` and `a + b` (concatenation).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from research.config import ConfigError, RunConfig, set_fields
from research.config import check_key as config_check_key


class SweepError(ConfigError):
    """A sweep that cannot be expanded: the message names the axis or point and how to fix it."""


@dataclass(frozen=True)
class Budget:
    """A training-length target: exactly one of tokens (D), tokens per parameter (D/N) or FLOPs (C).

    Resolved per point once N is known, rounded to whole steps, and kept only if the rounded length is within
    `tolerance` (relative) of the target. `params` says which N (total or non-embedding) a ratio or 6N uses;
    `flops` says how C is counted: the exact count (`research.model.flops.train_flops_per_token`) or 6N.
    """

    tokens: int | None = None
    tokens_per_param: float | None = None
    flops_target: float | None = None
    flops: Literal["exact", "6n"] = "exact"
    params: Literal["total", "non_embedding"] = "total"
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        given = [x for x in (self.tokens, self.tokens_per_param, self.flops_target) if x is not None]
        if len(given) != 1:
            raise SweepError("a Budget needs exactly one of tokens, tokens_per_param, flops_target")
        if not given[0] > 0 or not math.isfinite(given[0]):
            raise SweepError(f"budget {given[0]!r}: must be a positive number")
        if self.flops not in ("exact", "6n"):
            raise SweepError(f"Budget.flops={self.flops!r}: must be 'exact' or '6n'")
        if self.params not in ("total", "non_embedding"):
            raise SweepError(f"Budget.params={self.params!r}: must be 'total' or 'non_embedding'")
        if not 0 < self.tolerance < 1:
            raise SweepError(f"Budget.tolerance={self.tolerance!r}: must be in (0, 1), e.g. 0.05")

    def describe(self) -> str:
        if self.tokens is not None:
            return f"D={self.tokens:.3g}"
        if self.tokens_per_param is not None:
            return f"D/N={self.tokens_per_param:g}"
        return f"C={self.flops_target:.3g} ({self.flops})"


@dataclass(frozen=True)
class Point:
    """One grid point: overrides (dotted key -> value), an optional budget, name labels and display tags."""

    overrides: tuple[tuple[str, Any], ...] = ()
    budget: Budget | None = None
    labels: tuple[str, ...] = ()
    tags: tuple[tuple[str, Any], ...] = ()

    def merge(self, other: Point) -> Point:
        mine = dict(self.overrides)
        for key, value in other.overrides:
            if key in mine and mine[key] != value:
                raise SweepError(f"two axes set {key!r} in one point ({mine[key]!r} and {value!r}). Fix: put "
                                 "the field on one axis, or zip the axes instead of taking their product")
            mine[key] = value
        for key in mine:  # a section and a field inside it on different axes would silently fight
            for other_key in mine:
                if other_key != key and other_key.startswith(key + "."):
                    raise SweepError(f"axes set both {key!r} and {other_key!r}: set one or the other")
        if self.budget is not None and other.budget is not None:
            raise SweepError(f"a point has two training-length budgets ({self.budget.describe()} and "
                             f"{other.budget.describe()}). Fix: use one budget axis per grid")
        return Point(tuple(mine.items()), self.budget or other.budget, self.labels + other.labels,
                     tuple({**dict(self.tags), **dict(other.tags)}.items()))


@dataclass(frozen=True)
class Grid:
    """An ordered list of points. `a * b` is the product, `a + b` the concatenation."""

    points: tuple[Point, ...]

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self):
        return iter(self.points)

    def __mul__(self, other: Grid) -> Grid:
        return product(self, other)

    def __add__(self, other: Grid) -> Grid:
        return Grid(self.points + other.points)


def axis(key: str, values: Iterable, label: str | Callable[[Any], str] | None = None, tag: str | None = None) -> Grid:
    """One config field (dotted, e.g. 'optim.lr' or 'model') taking each value in turn.

    label: the name piece, a prefix (default: the field's last component) or a function of the value; '' for none.
    """
    values = list(values)
    if not values:
        raise SweepError(f"axis {key!r} has no values")
    check_key(key)
    leaf = key.rsplit(".", 1)[-1]
    points = []
    for v in values:
        if callable(label):
            text = label(v)
        elif dataclasses.is_dataclass(v) or isinstance(v, Mapping):
            text = ""
        else:
            text = f"{leaf if label is None else label}{_short(v)}"
        points.append(Point(((key, v),), labels=(text,) if text else (), tags=((tag or key, _tag_value(v)),)))
    return Grid(tuple(points))


def points(*overrides: Mapping[str, Any], labels: Iterable[str] | None = None) -> Grid:
    """Explicit points, each a dict of dotted overrides applied together."""
    labels = list(labels) if labels is not None else [""] * len(overrides)
    for o in overrides:
        for key in o:
            check_key(key)
    return Grid(tuple(Point(tuple(o.items()), labels=(lab,) if lab else (), tags=tuple(o.items()))
                      for o, lab in zip(overrides, labels, strict=True)))


def product(*grids: Grid) -> Grid:
    """Every combination, the first grid varying slowest."""
    out = []
    for combo in itertools.product(*(g.points for g in grids)):
        p = Point()
        for q in combo:
            p = p.merge(q)
        out.append(p)
    return Grid(tuple(out))


def zipped(*grids: Grid) -> Grid:
    """Points taken together position by position: the grids must have equal lengths."""
    lengths = {len(g) for g in grids}
    if len(lengths) != 1:
        raise SweepError(f"zipped axes have different lengths {[len(g) for g in grids]}. Fix: give each axis "
                         "the same number of values, or take their product")
    out = []
    for combo in zip(*(g.points for g in grids), strict=True):
        p = Point()
        for q in combo:
            p = p.merge(q)
        out.append(p)
    return Grid(tuple(out))


@dataclass(frozen=True)
class Resources:
    """What one worker asks a scheduler for: Slurm partition, time limit, GPUs per task, nodes per run."""

    partition: str | None = None
    time_min: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    nodes: int = 1  # > 1: each run spans this many hosts (one task per node) with jax.distributed
    workers: int = 1  # default number of workers (processes or array tasks)

    def __post_init__(self) -> None:
        for name in ("time_min", "nodes", "workers"):
            if getattr(self, name) < 1:
                raise SweepError(f"Resources.{name}={getattr(self, name)!r}: must be >= 1. Fix: use a positive value")
        if self.gpus_per_task < 0:
            raise SweepError(f"Resources.gpus_per_task={self.gpus_per_task!r}: must be >= 0")


@dataclass(frozen=True)
class Sweep:
    """A base RunConfig x a grid x seeds, with hyperparameter rules applied per point (see sweeps.scaling)."""

    name: str
    base: RunConfig
    grid: Grid = field(default_factory=lambda: Grid((Point(),)))
    seeds: tuple[int, ...] = (0,)
    rules: tuple = ()  # sweeps.scaling.Rule instances, applied in order
    resources: Resources = field(default_factory=Resources)
    max_attempts: int = 3  # attempts that end in an error (or vanish) before a run is marked failed
    description: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise SweepError(f"sweep name {self.name!r}: use letters, digits, '-', '_' and '.' only")
        if not isinstance(self.base, RunConfig):
            raise SweepError(f"Sweep.base is a {type(self.base).__name__}, not a RunConfig")
        if isinstance(self.grid, Grid) is False:
            raise SweepError("Sweep.grid must be a Grid (build it with axis, product, zipped, ...)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SweepError(f"Sweep.seeds={self.seeds!r}: give at least one seed, each once")
        if self.max_attempts < 1:
            raise SweepError(f"Sweep.max_attempts={self.max_attempts!r}: must be >= 1. Fix: use e.g. 2")
        for rule in self.rules:
            if not callable(rule) or not getattr(rule, "name", None):
                raise SweepError(f"rule {rule!r}: a rule is a named callable (see sweeps.scaling.Rule)")

    def with_base_overrides(self, assignments: list[str]) -> Sweep:
        """The same sweep on a base with dotted `key=value` overrides (the CLI's --set)."""
        return dataclasses.replace(self, base=self.base.override(*assignments)) if assignments else self


# ---- config keys ---------------------------------------------------------------------------------------------------
def check_key(key: str) -> None:
    """SweepError for a key that is no config field, with the closest valid key."""
    try:
        config_check_key(key)
    except ConfigError as e:
        raise SweepError(f"unknown config field {key!r} in a sweep axis: {str(e).split(': ', 1)[1]}") from None


def apply_overrides(config: RunConfig, overrides: Iterable[tuple[str, Any]]) -> RunConfig:
    """research.config.set_fields, with a failure reported as the sweep point that caused it."""
    overrides = tuple(overrides)
    try:
        return set_fields(config, overrides)
    except (ConfigError, TypeError) as e:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in overrides)
        raise SweepError(f"point ({shown}) gives an invalid config: {e}") from None


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
    return str(v)


def _tag_value(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return type(v).__name__
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
