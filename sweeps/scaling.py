"""Scaling helpers: model-size ladders, token budgets, IsoFLOP grids and the named rules that tie
hyperparameters (learning rate, batch, warmup) to size.

Ladders and budgets are grids (see sweeps.spec); a budget's D is only known once the point's model is, so it is
resolved at expansion (sweeps.expansion), where rules are applied too.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from research.config import ConfigError, ModelConfig, RunConfig
from research.model.flops import count_params, train_flops_per_token
from research.presets import model as preset_model
from sweeps.spec import Budget, Grid, Point, SweepError, product


# ---- model-size ladders --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeRule:
    """Depth, heads and d_ff from width: n_layers = round(d_model / aspect_ratio) (at least min_layers),
    n_heads = d_model / head_dim, d_ff = ff_multiplier x d_model rounded to ff_multiple (None: the model default)."""

    aspect_ratio: float = 32.0
    head_dim: int = 32
    min_layers: int = 1
    ff_multiplier: float | None = None
    ff_multiple: int = 8

    @property
    def name(self) -> str:
        ff = "default" if self.ff_multiplier is None else f"{self.ff_multiplier:g}d"
        return f"aspect{self.aspect_ratio:g}-head{self.head_dim}-ff{ff}"

    def shape(self, d_model: int) -> dict[str, Any]:
        """Dotted model overrides for one width."""
        if d_model % self.head_dim:
            raise SweepError(f"width {d_model} is not a multiple of the rule's head_dim={self.head_dim}. Fix: use "
                             f"widths divisible by {self.head_dim}, or a ShapeRule with another head_dim")
        shape = {"model.d_model": d_model, "model.n_heads": d_model // self.head_dim,
                 "model.n_layers": max(self.min_layers, round(d_model / self.aspect_ratio))}
        if self.ff_multiplier is not None:
            shape["model.d_ff"] = max(self.ff_multiple, round(self.ff_multiplier * d_model / self.ff_multiple)
                                      * self.ff_multiple)
        return shape


def width_ladder(widths: Iterable[int], rule: ShapeRule = ShapeRule()) -> Grid:
    """Model sizes from widths by a shape rule; every other model field comes from the sweep's base."""
    pts = []
    for d in widths:
        shape = rule.shape(int(d))
        pts.append(Point(tuple(shape.items()), tags=(("width", int(d)), ("shape_rule", rule.name))))
    if not pts:
        raise SweepError("width_ladder needs at least one width")
    return Grid(tuple(pts))


def preset_ladder(names: Iterable[str]) -> Grid:
    """Model sizes from named presets (research.presets), replacing the base's model section."""
    pts = []
    for name in names:
        try:
            shape = preset_model(name)
        except ConfigError as e:
            raise SweepError(str(e)) from None
        pts.append(Point((("model", shape),), tags=(("model", name),)))
    if not pts:
        raise SweepError("preset_ladder needs at least one preset name")
    return Grid(tuple(pts))


# ---- training-length budgets ---------------------------------------------------------------------------------------
def token_budgets(tokens: Iterable[float], tolerance: float = 0.05) -> Grid:
    """D in tokens, rounded to whole steps."""
    return Grid(tuple(Point(budget=Budget(tokens=int(t), tolerance=tolerance), tags=(("D_target", int(t)),))
                      for t in tokens))


def tokens_per_param(ratios: Iterable[float], params: Literal["total", "non_embedding"] = "total",
                     tolerance: float = 0.05) -> Grid:
    """D = ratio x N (Chinchilla's ~20 is compute-optimal), rounded to whole steps."""
    return Grid(tuple(Point(budget=Budget(tokens_per_param=float(r), params=params, tolerance=tolerance),
                            tags=(("D_per_N", float(r)),)) for r in ratios))


def flop_budgets(budgets: Iterable[float], flops: Literal["exact", "6n"] = "exact",
                 params: Literal["total", "non_embedding"] = "total", tolerance: float = 0.05) -> Grid:
    """Training FLOPs C; D = C / (exact FLOPs per token) or C / 6N, rounded to whole steps."""
    return Grid(tuple(Point(budget=Budget(flops_target=float(c), flops=flops, params=params, tolerance=tolerance),
                            labels=(f"c{_sci(float(c))}",), tags=(("C_target", float(c)),)) for c in budgets))


def isoflop(budgets: Iterable[float], models: Grid, flops: Literal["exact", "6n"] = "exact",
            params: Literal["total", "non_embedding"] = "total", tolerance: float = 0.05) -> Grid:
    """IsoFLOP grid: every budget C x every model size. Points whose whole-step length misses C by more than
    `tolerance` are dropped (and listed by `plan`); a budget no model meets is an error at expansion."""
    return product(flop_budgets(budgets, flops, params, tolerance), models)


@dataclass(frozen=True)
class OptimumGuess:
    """The expected compute-optimal size N*(C) = params x (C / flops) ** exponent (from a pilot or a smaller sweep)."""

    params: float  # N* at `flops`
    flops: float
    exponent: float = 0.5

    def __call__(self, budget: float) -> float:
        return self.params * (budget / self.flops) ** self.exponent


def sizes_around(target: float, sizes: list[float], count: int, decades: float = 1.0) -> list[int]:
    """Indices of `count` distinct entries of the ascending `sizes` nearest (in log) to `count` targets spaced evenly
    over `decades` and centred on `target`; the window slides inward at the ladder's ends."""
    if count > len(sizes):
        raise SweepError(f"{count} sizes per budget, but the ladder has only {len(sizes)}. Fix: add widths or ask for "
                         "fewer sizes")
    logs = [math.log10(s) for s in sizes]
    offsets = [decades * (i / (count - 1) - 0.5) for i in range(count)] if count > 1 else [0.0]
    chosen: list[int] = []
    for offset in offsets:
        want = math.log10(target) + offset
        free = [i for i in range(len(sizes)) if i not in chosen and (not chosen or i > chosen[-1])]
        if len(free) < count - len(chosen):
            raise SweepError(f"the ladder has too few sizes above {sizes[chosen[-1]]:.3g} for {count} sizes around "
                             f"{target:.3g}. Fix: add larger widths")
        free = free[:len(free) - (count - len(chosen) - 1)]  # leave room for the sizes still to choose
        chosen.append(min(free, key=lambda i: abs(logs[i] - want)))
    return chosen


def isoflop_around(budgets: Iterable[float], widths: Iterable[int], rule: ShapeRule, base: ModelConfig,
                   optimum: OptimumGuess, sizes_per_budget: int = 5, decades: float = 1.0,
                   flops: Literal["exact", "6n"] = "6n", params: Literal["total", "non_embedding"] = "total",
                   tolerance: float = 0.05) -> Grid:
    """An IsoFLOP grid that trains, at each budget C, `sizes_per_budget` widths of the ladder spread over `decades` of
    N and centred (in log N) on the expected optimum N*(C): every budget samples both sides of its minimum, and no run
    is spent orders of magnitude away from it. `base` supplies the model fields the shape rule leaves alone."""
    ladder = sorted(int(w) for w in widths)
    counts = []
    for w in ladder:
        model = dataclasses.replace(base, **{k.split(".", 1)[1]: v for k, v in rule.shape(w).items()})
        counts.append(model_params(model, params))
    if counts != sorted(counts):
        raise SweepError(f"widths {ladder} do not give increasing parameter counts {counts} under {rule.name}")
    grid = None
    for c in budgets:
        chosen = [ladder[i] for i in sizes_around(optimum(c), counts, sizes_per_budget, decades)]
        part = isoflop([c], width_ladder(chosen, rule), flops, params, tolerance)
        grid = part if grid is None else grid + part
    if grid is None:
        raise SweepError("isoflop_around needs at least one budget")
    return grid


# ---- hyperparameters that follow size ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """What a rule may depend on: the point's N, width, depth, its target D and C, and its current batch/steps."""

    params: int
    params_non_embedding: int
    d_model: int
    n_layers: int
    tokens: int  # D: the budget's target (else the config's)
    flops: float  # C: the budget's target (else D x exact FLOPs per token)
    batch_size: int
    steps: int


def scale_of(config: RunConfig, target_tokens: float | None = None, target_flops: float | None = None) -> Scale:
    counts = count_params(config.model)
    tokens = config.num_tokens if target_tokens is None else target_tokens
    flops = target_flops if target_flops is not None else tokens * train_flops_per_token(
        config.model, config.data.seq_len, config.adapt)
    return Scale(counts.total, counts.non_embedding, config.model.d_model, config.model.n_layers, round(tokens),
                 float(flops), config.batch_size, config.num_steps)


class Rule(abc.ABC):
    """A named hyperparameter rule: rule(config, scale) -> dotted overrides. Subclasses are frozen dataclasses."""

    name = "rule"

    @abc.abstractmethod
    def __call__(self, config: RunConfig, scale: Scale) -> dict[str, Any]:
        """The overrides this rule sets for a run of this scale."""

    def describe(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.name}({fields})"


@dataclass(frozen=True)
class LrInverseWidth(Rule):
    """lr = base_lr x base_width / d_model: Adam's learning rate scaled as 1/width (muP's hidden-layer rule)."""

    base_lr: float
    base_width: int
    name = "lr_inverse_width"

    def __call__(self, config, scale):
        return {"optim.lr": self.base_lr * self.base_width / scale.d_model}


@dataclass(frozen=True)
class LrPowerLaw(Rule):
    """lr = base_lr x (N / base_params) ** exponent, N non-embedding by default (e.g. exponent -0.25)."""

    base_lr: float
    base_params: float
    exponent: float
    params: Literal["total", "non_embedding"] = "non_embedding"
    name = "lr_power_law"

    def __call__(self, config, scale):
        n = scale.params if self.params == "total" else scale.params_non_embedding
        return {"optim.lr": self.base_lr * (n / self.base_params) ** self.exponent}


@dataclass(frozen=True)
class LrComputePowerLaw(Rule):
    """lr = base_lr x (C / base_flops) ** exponent, C the point's training-FLOP target: DeepSeek LLM (2024) fit
    lr_opt = 0.3118 C^-0.125 across model sizes, so every size of one IsoFLOP budget shares a learning rate."""

    base_lr: float = 0.3118
    base_flops: float = 1.0
    exponent: float = -0.125
    name = "lr_compute_power_law"

    def __call__(self, config, scale):
        return {"optim.lr": self.base_lr * (scale.flops / self.base_flops) ** self.exponent}


@dataclass(frozen=True)
class BatchPowerLaw(Rule):
    """batch (sequences) = base_batch x (C / base_flops) ** exponent, rounded to a multiple and clipped:
    the compute-optimal batch grows with C (DeepSeek LLM fit B ~ C^0.33)."""

    base_batch: int
    base_flops: float
    exponent: float
    multiple_of: int = 8
    min_batch: int = 8
    max_batch: int = 1 << 16
    name = "batch_power_law"

    def __call__(self, config, scale):
        raw = self.base_batch * (scale.flops / self.base_flops) ** self.exponent
        batch = min(max(round(raw / self.multiple_of) * self.multiple_of, self.min_batch), self.max_batch)
        return {"train.batch_size": int(batch), "train.batch_tokens": None}


@dataclass(frozen=True)
class WarmupFraction(Rule):
    """warmup_steps = fraction x steps, clipped to [min_steps, max_steps]."""

    fraction: float
    min_steps: int = 0
    max_steps: int | None = None
    name = "warmup_fraction"

    def __call__(self, config, scale):
        steps = max(round(self.fraction * scale.steps), self.min_steps)
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        return {"optim.warmup_steps": int(min(steps, max(scale.steps - 1, 0)))}


@dataclass(frozen=True)
class CustomRule(Rule):
    """Any function (config, scale) -> overrides, under a name the plan prints."""

    rule_name: str
    fn: Callable[[RunConfig, Scale], dict[str, Any]]

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.rule_name

    def __call__(self, config, scale):
        return self.fn(config, scale)

    def describe(self) -> str:
        return f"{self.rule_name}({getattr(self.fn, '__name__', 'fn')})"


def rule(name: str, fn: Callable[[RunConfig, Scale], dict[str, Any]]) -> CustomRule:
    """Name a custom rule: rule('lr_by_depth', lambda cfg, s: {'optim.lr': 1e-2 / s.n_layers})."""
    return CustomRule(name, fn)


def model_params(model: ModelConfig, which: str = "total") -> int:
    counts = count_params(model)
    return counts.total if which == "total" else counts.non_embedding


def _sci(x: float) -> str:
    """1e12 -> '1e12', 3.2e11 -> '3.2e11'."""
    exp = math.floor(math.log10(x))
    mant = round(x / 10**exp, 2)
    if mant >= 10:
        mant, exp = mant / 10, exp + 1
    return f"{mant:g}e{exp}"
