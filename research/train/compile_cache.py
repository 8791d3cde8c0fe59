"""JAX's persistent compilation cache under the scalelab cache root: a restarted or repeated run skips compiling."""

from __future__ import annotations

import os
from pathlib import Path

import jax

from research.data.cache import cache_root


def enable_compilation_cache(min_compile_time_s: float = 0.5) -> Path:
    path = cache_root() / "jax-compile"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
    return path


# XLA:CPU routes dots through YNNPACK by default; its kernels need row-major operands, so every weight-gradient
# matmul first materialises a transposed copy. Eigen's dots take transposes natively. Interleaved A/B in one
# process (python -m research.bench shapes, 2-core CPU): 13% faster train steps at 25M parameters, 12% at 1M.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}

# Initialisation runs once per run but compiles once per shape, and most of that compile is LLVM optimising the
# threefry hash of every parameter. Backend level 1 instead of 2: the same bits (checked), ~45% less compile time
# (2.6 s -> 1.4 s for the largest demo model), init itself still a few tens of milliseconds.
INIT_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


# SCALELAB_FAST_COMPILE=1: cheaper XLA:CPU code generation (no fusion emitters, no LLVM optimisation): about half the
# compile time of a small model, slower steps, and results that may differ from a default compile in the last bits.
# For tests and quick checks; processes whose numbers are compared must agree on it (the test suite sets it for all).
FAST_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}


def fast_compile() -> bool:
    return os.environ.get("SCALELAB_FAST_COMPILE") == "1"


def compile_lowered(lowered, platform: str, cpu_options: dict | None = None):
    """Compile with CPU options (default: the ones above) where they apply (and where this XLA still knows them)."""
    if platform == "cpu":
        options = CPU_COMPILER_OPTIONS if cpu_options is None else cpu_options
        try:
            return lowered.compile(compiler_options=options | FAST_COMPILE_OPTIONS if fast_compile() else options)
        except jax.errors.JaxRuntimeError as e:
            if "INVALID_ARGUMENT" not in str(e):
                raise
    return lowered.compile()
