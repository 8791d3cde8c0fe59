"""Sweeps: grids of model size x data size (x anything in a RunConfig), run to completion locally or on Slurm.

A sweep file in sweeps/configs/ defines `sweep() -> Sweep`. `python -m sweeps plan|run|status` does the rest.
Names are imported on first use, so a worker's claim and status code never pays for the model stack.
"""

import importlib

_EXPORTS = {
    "sweeps.spec": ["Budget", "Grid", "Point", "Resources", "Sweep", "SweepError", "axis", "points", "product",
                    "zipped"],
    "sweeps.scaling": ["BatchPowerLaw", "LrComputePowerLaw", "LrInverseWidth", "LrPowerLaw", "OptimumGuess", "Rule",
                       "Scale", "ShapeRule", "WarmupFraction", "flop_budgets", "isoflop", "isoflop_around",
                       "preset_ladder", "rule", "sizes_around", "token_budgets", "tokens_per_param", "width_ladder"],
    "sweeps.expansion": ["Dropped", "Expansion", "RunSpec", "expand", "run_name"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
