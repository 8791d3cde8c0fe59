"""How wide would Approach 3's interval on a be for a given IsoFLOP design? Simulate it before paying for the sweep.

    python -m analysis.examples.design_power SWEEP_DIR [--trials 3] [--bootstrap 200]

Fits Approach 3 to a finished sweep (e.g. `runs/demo`) for a law and its residual scale, draws IsoFLOP designs
from it (per budget, sizes log-spaced over one decade around the law's optimum, `seeds` independent noise draws of
each run, log-normal noise of the demo's residual scale), fits each with Approach 3 and its bootstrap, and prints
the median width of the 95% interval on a per design. The designs are the demo's (4 budgets over 1.5 decades x 5
sizes) and larger ones, so the output says what budget a width of 0.2 would need.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import analysis

DESIGNS = {  # name -> (budgets in decades above the smallest, sizes per budget, seeds per run)
    "demo: 4 budgets / 1.5 decades x 5 sizes": (np.arange(4) * 0.5, 5, 1),
    "4 budgets / 1.5 decades x 5 sizes x 2 seeds": (np.arange(4) * 0.5, 5, 2),
    "4 budgets / 1.5 decades x 5 sizes x 4 seeds": (np.arange(4) * 0.5, 5, 4),
    "4 budgets / 1.5 decades x 9 sizes": (np.arange(4) * 0.5, 9, 1),
    "6 budgets / 2.5 decades x 5 sizes": (np.arange(6) * 0.5, 5, 1),
    "6 budgets / 2.5 decades x 5 sizes x 2 seeds": (np.arange(6) * 0.5, 5, 2),
    "8 budgets / 3.5 decades x 5 sizes": (np.arange(8) * 0.5, 5, 1),
}


def design(law: dict, smallest: float, decades, sizes: int, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) of an IsoFLOP design around the law's optimum N* = G (C/6)^a, repeated `seeds` times."""
    n, d = [], []
    for c in smallest * 10.0 ** np.asarray(decades):
        n_opt = float(analysis.n_opt(c, **law))
        for size in np.geomspace(n_opt / 10**0.5, n_opt * 10**0.5, sizes):
            n += [size] * seeds
            d += [c / (6 * size)] * seeds
    return np.array(n), np.array(d)


def interval_width(law: dict, noise: float, n: np.ndarray, d: np.ndarray, rng, n_bootstrap: int) -> float:
    loss = analysis.chinchilla_loss(n, d, **law) * np.exp(rng.normal(0.0, noise, len(n)))
    fit = analysis.fit_chinchilla(n, d, loss, n_bootstrap=n_bootstrap, seed=int(rng.integers(1 << 30)))
    t = fit.bootstrap.param_table()
    return float(t.loc["a", "ci_high"] - t.loc["a", "ci_low"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir")
    parser.add_argument("--trials", type=int, default=3, help="simulated sweeps per design (median reported)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--smallest", type=float, default=3e10, help="smallest budget C (FLOPs)")
    parser.add_argument("--noise", type=float, default=None, help="log-loss noise (default: the fit's residuals)")
    args = parser.parse_args(argv)
    try:
        fitted = analysis.fit_chinchilla(analysis.load(args.sweep_dir))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)  # analysis.load's message names the path and the fix
        return 2
    law = {k: float(v) for k, v in fitted.params.items()}
    noise = args.noise if args.noise is not None else float(np.std(fitted.residuals()))
    rng = np.random.default_rng(0)
    print(f"law {law}, noise {noise:.4f} (log loss), {args.trials} simulated sweeps per design")
    for name, (decades, sizes, seeds) in DESIGNS.items():
        n, d = design(law, args.smallest, decades, sizes, seeds)
        widths = [interval_width(law, noise, n, d, rng, args.bootstrap) for _ in range(args.trials)]
        compute = float(np.sum(6 * n * d))
        print(f"{name:<45s} runs {len(n):3d}  total C {compute:.2e}  median 95% width on a {np.median(widths):.3f}"
              f"  ({', '.join(f'{w:.3f}' for w in widths)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
