"""Fixtures for the analysis tests: hand-made sweeps in the training code's file layout, and synthetic tables."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # scaling_fixtures, whatever pytest's import mode
from scaling_fixtures import TRUE, isoflop_grid, law_loss, write_sweep  # noqa: E402


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory):
    """A 5-budget IsoFLOP sweep (30 complete runs, one diverged, one still running) with training curves."""
    return write_sweep(tmp_path_factory.mktemp("sweep") / "out")


@pytest.fixture(scope="session")
def chinchilla_grid():
    """250 (N, D, loss) points on Chinchilla's design: 9 IsoFLOP budgets 6e18..3e21, 0.5% log-normal noise."""
    rng = np.random.default_rng(0)
    budgets = [6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21]
    N, D, C = isoflop_grid(budgets, sizes_per_budget=28, span=30.0, law={**TRUE})[:250].T
    loss = law_loss(N, D, **TRUE) * np.exp(rng.normal(0, 0.005, len(N)))
    return N, D, loss

