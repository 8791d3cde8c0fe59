"""Peak FLOP/s of the machine, for model FLOPs utilisation: a table for accelerators, a measurement for CPUs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from research.data.cache import cache_root
from research.files import write_json_atomic

# Dense peak FLOP/s per device (no sparsity), by compute dtype.
ACCELERATOR_PEAKS = {
    "H100": {"bfloat16": 989e12, "float32": 67e12},  # SXM; float32 without TF32
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 4},
    "TPU v5": {"bfloat16": 459e12, "float32": 459e12 / 4},
}


def measure_cpu_peak(size: int = 2048, repeats: int = 5) -> dict:
    """Best-of-`repeats` f32 matmul FLOP/s through JAX and through NumPy's BLAS; the peak is the faster one."""

    def best(fn) -> float:
        fn()  # warm up (and compile)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 2 * size**3 / min(times)

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    cpu = jax.devices("cpu")[0]
    ja = jax.device_put(a, cpu)
    matmul = jax.jit(jnp.matmul)
    jax_flops = best(lambda: matmul(ja, ja).block_until_ready())
    numpy_flops = best(lambda: a @ a)
    return {"jax": jax_flops, "numpy": numpy_flops, "peak": max(jax_flops, numpy_flops)}


def _cache_path() -> Path:
    return cache_root() / "cpu_peak.json"


def cpu_peak_cached() -> float:
    """The measured CPU peak, measured once per machine and cached (for run logs; benchmarks re-measure)."""
    path = _cache_path()
    try:
        return float(json.loads(path.read_text())["peak"])
    except (OSError, ValueError, KeyError):
        pass
    result = measure_cpu_peak()
    write_json_atomic(path, result)
    return result["peak"]


def peak_flops(devices: list, compute_dtype: str, cpu_peak: float | None = None) -> float:
    """Peak FLOP/s of all `devices` together. CPU devices share one machine, so their peak is the machine's."""
    if devices[0].platform == "cpu":
        return cpu_peak if cpu_peak is not None else cpu_peak_cached()
    kind = devices[0].device_kind
    for name, peaks in ACCELERATOR_PEAKS.items():
        if name.lower() in kind.lower():
            return peaks[compute_dtype] * len(devices)
    return float("nan")  # unknown accelerator: MFU is reported as NaN rather than guessed
