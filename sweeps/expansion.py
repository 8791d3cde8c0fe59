"""Expansion: Sweep -> resolved runs, each with a stable id (the hash of its config), a readable name and a workdir.

Per point and seed: base + overrides, then the budget (D from N, rounded to whole steps with the current batch) and
the sweep's rules are applied until they agree (a batch rule changes the step count; a warmup rule reads it). A
budget point whose whole-step length misses its target by more than the tolerance is dropped and reported; a budget
that no point meets, two points with one config, or an invalid config is a SweepError, all before any training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from research.config import RunConfig
from research.model.flops import count_params, flops_6nd, train_flops_per_token
from sweeps.estimate import human
from sweeps.scaling import scale_of
from sweeps.spec import Budget, Point, Sweep, SweepError, apply_overrides

MAX_ROUNDS = 6  # budget + rules reach a fixed point in 2-3 rounds unless two rules fight


@dataclass(frozen=True)
class RunSpec:
    """One resolved run of a sweep."""

    name: str
    run_id: str
    config: RunConfig
    tags: dict
    budget: str  # the budget it came from, for tables ('' if none)

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.run_id}"

    def workdir(self, out: str | Path) -> Path:
        return Path(out) / "runs" / self.dirname

    @property
    def params(self) -> int:
        return count_params(self.config.model).total

    @property
    def tokens(self) -> int:
        return self.config.num_tokens

    @property
    def flops(self) -> float:
        c = self.config
        return float(train_flops_per_token(c.model, c.data.seq_len, c.adapt)) * self.tokens

    @property
    def flops_6nd(self) -> float:
        return flops_6nd(self.config.model, self.tokens)


@dataclass(frozen=True)
class Dropped:
    """A point left out because its whole-step length misses its budget by more than the tolerance."""

    point: str
    reason: str


@dataclass(frozen=True)
class Expansion:
    runs: list[RunSpec]
    dropped: list[Dropped]


def expand(sweep: Sweep) -> Expansion:
    """Resolve every point x seed, in grid order (seeds innermost)."""
    runs, dropped, met = [], [], {}
    for point in sweep.grid:
        for seed in sweep.seeds:
            config, miss = _resolve(sweep, point, seed)
            if point.budget is not None:
                met.setdefault(point.budget, False)
            if miss is not None:
                dropped.append(Dropped(_describe(point, seed), miss))
                continue
            if point.budget is not None:
                met[point.budget] = True
            tags = dict(point.tags) | {"seed": seed}
            runs.append(RunSpec(run_name(config, point.labels), config.run_id(), config, tags,
                                point.budget.describe() if point.budget else ""))
    unmet = [b.describe() for b, ok in met.items() if not ok]
    if unmet:
        reasons = "; ".join(d.reason for d in dropped[:3])
        raise SweepError(f"no point meets the budget(s) {', '.join(unmet)} within tolerance ({reasons}). Fix: raise "
                         "the budget, use smaller models or a smaller batch, or loosen the tolerance")
    seen: dict[str, RunSpec] = {}
    for r in runs:
        if r.run_id in seen:
            raise SweepError(f"runs {seen[r.run_id].name} and {r.name} resolve to the same config (id {r.run_id}). "
                             "Fix: remove the duplicate axis value, or make the points differ")
        seen[r.run_id] = r
    return Expansion(runs, dropped)


def _resolve(sweep: Sweep, point: Point, seed: int) -> tuple[RunConfig, str | None]:
    """(config, None), or (config, why it misses its budget)."""
    config = apply_overrides(sweep.base, point.overrides + (("seed", seed),))
    budget = point.budget
    for _ in range(MAX_ROUNDS):
        before = config
        target_d, target_c = _targets(budget, config) if budget else (None, None)
        if budget is not None:
            steps = max(1, round(target_d / config.tokens_per_step))
            config = apply_overrides(config, (("train.steps", steps), ("train.tokens", None)))
        for rule in sweep.rules:
            updates = rule(config, scale_of(config, target_d, target_c))
            if updates:
                try:
                    config = apply_overrides(config, tuple(updates.items()))
                except SweepError as e:
                    raise SweepError(f"rule {rule.name}: {e}") from None
        if config == before:
            break
    else:
        raise SweepError(f"the budget and rules {[r.name for r in sweep.rules]} do not settle for point "
                         f"{_describe(point, seed)}. Fix: make the rules depend on the budget's target, not on "
                         "each other's output")
    if budget is None:
        return config, None
    achieved = config.num_tokens if target_c is None else _flops(budget, config)
    target = target_d if target_c is None else target_c
    error = abs(achieved - target) / target
    if error > budget.tolerance:
        return config, (f"{_describe(point, seed)}: {config.num_steps} whole steps of {config.tokens_per_step} tokens "
                        f"give {'C' if target_c else 'D'}={achieved:.3g}, {error:.0%} from {target:.3g} "
                        f"(tolerance {budget.tolerance:.0%})")
    return config, None


def _targets(budget: Budget, config: RunConfig) -> tuple[float, float | None]:
    """(target D, target C or None) of a budget for this point's model."""
    counts = count_params(config.model)
    n = counts.total if budget.params == "total" else counts.non_embedding
    if budget.tokens is not None:
        return float(budget.tokens), None
    if budget.tokens_per_param is not None:
        return budget.tokens_per_param * n, None
    exact = budget.flops == "exact"
    per_token = train_flops_per_token(config.model, config.data.seq_len, config.adapt) if exact else 6.0 * n
    return budget.flops_target / per_token, budget.flops_target


def _flops(budget: Budget, config: RunConfig) -> float:
    if budget.flops == "exact":
        return float(train_flops_per_token(config.model, config.data.seq_len, config.adapt)) * config.num_tokens
    counts = count_params(config.model)
    return 6.0 * (counts.total if budget.params == "total" else counts.non_embedding) * config.num_tokens


def run_name(config: RunConfig, labels: tuple[str, ...] = ()) -> str:
    """'n1.1m-d2.0m[-labels]-s0': N (total), D, the point's labels and the seed."""
    parts = [f"n{human(count_params(config.model).total)}", f"d{human(config.num_tokens)}", *labels,
             f"s{config.seed}"]
    return "-".join(_safe(p) for p in parts if p)


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in part)


def _describe(point: Point, seed: int) -> str:
    bits = [f"{k}={_v(v)}" for k, v in point.tags] + [f"seed={seed}"]
    if point.budget is not None:
        bits.insert(0, point.budget.describe())
    return "(" + ", ".join(bits) + ")"


def _v(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
