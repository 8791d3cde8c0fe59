"""`python -m analysis.bench`: time Approach 3 (4500 starts) and a 1000-sample bootstrap on 250 synthetic runs.

The runs lie on Chinchilla's design (9 IsoFLOP budgets, 6e18 to 3e21 FLOPs) with Besiroglu et al.'s refit as the
law and 0.5% log-normal noise. "cold" includes compilation (the first call in a process), "warm" does not.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from analysis.bootstrap import bootstrap
from analysis.chinchilla import allocation, fit_chinchilla, n_opt
from analysis.forms import chinchilla_loss

LAW = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def synthetic_runs(n: int = 250, noise: float = 0.005, seed: int = 0):
    """(N, D, loss): per budget, sizes log-spaced over 30x around the law's optimum, D = C / 6N."""
    budgets = [6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21]
    per = -(-n // len(budgets))
    N = np.concatenate([n_opt(C, **LAW) * np.geomspace(1 / np.sqrt(30), np.sqrt(30), per) for C in budgets])[:n]
    C = np.repeat(budgets, per)[:n]
    D = C / (6 * N)
    loss = chinchilla_loss(N, D, **LAW) * np.exp(np.random.default_rng(seed).normal(0, noise, n))
    return N, D, loss


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m analysis.bench", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=250)
    p.add_argument("--samples", type=int, default=1000)
    args = p.parse_args(argv)
    N, D, loss = synthetic_runs(args.runs)
    print(f"{args.runs} runs, jax {jax.__version__}, {len(jax.devices())} {jax.default_backend()} device(s)")
    for label in ("cold", "warm"):
        fit, wall, cpu = _timed(lambda: fit_chinchilla(N, D, loss))
        print(f"Approach 3, {fit.diagnostics.n_starts} starts ({label}): {wall:.2f} s wall, {cpu:.2f} s CPU; "
              f"{fit.diagnostics.n_at_best} starts reach the best objective")
    for label in ("cold", "warm"):
        boot, wall, cpu = _timed(lambda: bootstrap(fit, n_samples=args.samples, seed=0))
        print(f"bootstrap, {args.samples} samples x {1 + boot.extra_starts} starts ({label}): {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU; {int(boot.ok.sum())} converged")
    t = boot.param_table()
    a_true = allocation(**LAW)["a"]
    print(f"a = {fit.a:.4f} (true {a_true:.4f}), 95% CI [{t.loc['a', 'ci_low']:.4f}, {t.loc['a', 'ci_high']:.4f}]")


if __name__ == "__main__":
    main()
