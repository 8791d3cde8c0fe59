"""The model's compute primitives, chosen by `model.kernels`: the plain math, or the same math made fast on CPU.

`reference` is what a reader checks against a paper: `x · W` by autodiff, `jax.nn` activations, and
`jax.nn.dot_product_attention`. `tuned` computes the same functions with hand-written derivatives (dense.py,
activations.py) and blocked attention (attention.py, which reads `model.kernels` itself) that run about twice as fast
on a CPU; tests/model holds the two equal in values and gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax

from research.config import ModelConfig
from research.model import activations
from research.model.dense import dense, dense_reference


@dataclass(frozen=True)
class Kernels:
    dense: Callable  # (x [*batch, *in], w [*in, *out], contract=1, out_dtype=None) -> [*batch, *out]
    gelu: Callable  # tanh approximation (GPT-2)
    silu: Callable


REFERENCE = Kernels(dense=dense_reference, gelu=functools.partial(jax.nn.gelu, approximate=True), silu=jax.nn.silu)
TUNED = Kernels(dense=dense, gelu=activations.gelu, silu=activations.silu)


def kernels(cfg: ModelConfig) -> Kernels:
    return TUNED if cfg.kernels == "tuned" else REFERENCE
