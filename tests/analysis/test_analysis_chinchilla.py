"""Approach 3: recovery of a known law, Hoffmann et al.'s allocation, and the diagnostics of a broken fit."""

import numpy as np
import pytest
import scipy.optimize
from scaling_fixtures import TRUE

import analysis
from analysis.forms import get_form

# Hoffmann et al.'s published Approach 3 fit, and the unrounded values behind it (shared by the authors with
# Besiroglu et al.): a = beta / (alpha + beta) is 0.452 rounded, 0.457 unrounded; their Table 2 reports 0.46.
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
HOFFMANN_EXACT = {"E": np.exp(0.5267228), "A": np.exp(6.0073404), "B": np.exp(6.0179186), "alpha": 0.33917084,
                  "beta": 0.2849083}


@pytest.fixture(scope="module")
def fit(chinchilla_grid):
    return analysis.fit_chinchilla(*chinchilla_grid)


def test_recovers_a_known_law_on_a_realistic_grid(fit, chinchilla_grid):
    # Tolerances are about 2-3 standard deviations of each estimate over noise draws (B is the least identified).
    assert len(chinchilla_grid[0]) == 250
    assert fit.E == pytest.approx(TRUE["E"], abs=0.04)
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.02)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.025)
    assert np.log(fit.A) == pytest.approx(np.log(TRUE["A"]), abs=0.3)
    assert np.log(fit.B) == pytest.approx(np.log(TRUE["B"]), abs=0.6)
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert fit.a == pytest.approx(a_true, abs=0.02)
    assert fit.a + fit.b == pytest.approx(1.0)
    d = fit.diagnostics
    assert d.n_starts == 4500 and d.n_at_best >= 10 and not d.best_is_start and d.warnings == []


def huber_objective(x, logN, logD, logL, delta=1e-3):
    """An independent NumPy implementation of Hoffmann et al.'s objective and its gradient, for scipy."""
    a, b, e, alpha, beta = x
    terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    r = top + np.log(w.sum(axis=0)) - logL
    p = w / w.sum(axis=0)  # d r / d (a, b, e)
    psi = np.clip(r, -delta, delta)  # Huber'(r)
    f = np.sum(np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)))
    g = np.array([np.sum(psi * p[0]), np.sum(psi * p[1]), np.sum(psi * p[2]), -np.sum(psi * p[0] * logN),
                  -np.sum(psi * p[1] * logD)])
    return f, g


def test_best_fit_matches_scipy_lbfgsb_from_the_same_grid(fit, chinchilla_grid):
    """The reference: scipy's L-BFGS-B on an independent implementation of the objective, from every 90th start."""
    logN, logD, logL = (np.log(v) for v in chinchilla_grid)
    form = get_form("chinchilla")
    order = ["a", "b", "e", "alpha", "beta"]
    perm = [form.params.index(k) for k in order]
    best = None
    for start in form.starts()[::90]:
        r = scipy.optimize.minimize(huber_objective, start[perm], args=(logN, logD, logL), jac=True,
                                    method="L-BFGS-B")
        if r.success and (best is None or r.fun < best.fun):
            best = r
    assert fit.objective == pytest.approx(huber_objective(np.array([fit.fit.raw[k] for k in order]), logN, logD,
                                                          logL)[0], rel=1e-12)
    assert fit.objective <= best.fun * (1 + 1e-6)
    np.testing.assert_allclose([fit.fit.raw[k] for k in order], best.x, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("params,a", [(HOFFMANN, 0.28 / 0.62), (HOFFMANN_EXACT, 0.4565)])
def test_hoffmann_parameters_give_their_compute_optimal_exponent(params, a):
    al = analysis.allocation(**params)
    assert al["a"] == pytest.approx(a, abs=5e-4)
    assert al["a"] == pytest.approx(0.46, abs=0.01)
    assert al["a"] + al["b"] == pytest.approx(1.0)
    # Independently: minimise L(N, C / 6N) over N numerically at several budgets and fit the slope.
    C = np.geomspace(1e18, 1e25, 8)
    def loss_along_isoflop(x, c):
        return analysis.chinchilla_loss(np.exp(x), c / (6 * np.exp(x)), *params.values())

    n_star = [np.exp(scipy.optimize.minimize_scalar(loss_along_isoflop, args=(c,), bounds=(np.log(1e6), np.log(1e13)),
                                                    method="bounded", options={"xatol": 1e-10}).x) for c in C]
    slope, intercept = np.polyfit(np.log(C), np.log(n_star), 1)
    assert slope == pytest.approx(al["a"], abs=1e-6)
    np.testing.assert_allclose(analysis.n_opt(C, *params.values()), n_star, rtol=1e-6)
    np.testing.assert_allclose(analysis.d_opt(C, *params.values()) * analysis.n_opt(C, *params.values()) * 6, C)


def test_frontier_is_the_argmin_of_the_fitted_law(fit):
    C = np.array([1e20, 1e22])
    t = fit.frontier(C)
    for c, n, best in zip(C, t["N_opt"], t["L_opt"], strict=True):
        for factor in (0.9, 1.1):  # moving off the optimum along the IsoFLOP raises the loss
            assert fit.predict(n * factor, c / (6 * n * factor)) > best


def test_an_averaged_huber_loss_is_caught_by_the_diagnostics(fit, chinchilla_grid):
    """Hoffmann et al.'s objective is a sum. Averaged over 250 runs, f and its changes fall below L-BFGS-B's
    absolute tolerances, so each start stops wherever its progress slows: the best objective is reached by that
    one start only (scipy's L-BFGS-B does the same on this data), and the diagnostics say so."""
    averaged = analysis.fit_chinchilla(*chinchilla_grid, reduction="mean")
    assert fit.diagnostics.warnings == [] and fit.diagnostics.n_at_best >= 100
    d = averaged.diagnostics
    assert d.n_at_best == 1
    assert any("reach the best objective" in w for w in d.warnings)
    assert averaged.to_dict()["reduction"] == "mean"


def test_a_best_fit_that_is_its_own_start_is_flagged(fit, chinchilla_grid):
    """A start already at the optimum stops before its first iteration: the fit is its start, and is flagged."""
    form = get_form("chinchilla")
    optimum = [fit.fit.raw[k] for k in form.params]
    again = analysis.fit_chinchilla(*chinchilla_grid, reduction="mean", starts=[optimum, form.starts()[0]])
    d = again.diagnostics
    assert d.best_is_start and d.best_iterations == 0 and d.best_moved == 0.0
    assert any("its own starting point" in w for w in d.warnings)


def test_dataframe_input_records_convention_and_dropped_runs(sweep_dir):
    df = analysis.load(sweep_dir)
    fit = analysis.fit_chinchilla(df)
    assert len(fit.loss) == 30
    assert fit.dropped == {"status not in complete": 3}  # diverged, failed and running
    assert fit.convention["params"] == "total" and fit.convention["flops"] == "6ND"
    assert "C = 6 N D" in fit.convention["description"]
    out = fit.to_dict()
    assert out["allocation"]["flops"] == "C = 6 N D" and out["n_starts"] == 4500
    ne = analysis.fit_chinchilla(df, convention=analysis.Convention(params="non_embedding"))
    np.testing.assert_allclose(ne.N, df.loc[df.status == "complete", "N_nonembed"])
    assert ne.convention["params"] == "non_embedding"


def test_exclude_highest_drops_the_k_worst_runs_as_besiroglu_et_al(chinchilla_grid):
    N, D, loss = chinchilla_grid
    fit = analysis.fit_chinchilla(N, D, loss, exclude_highest=5, starts=get_form("chinchilla").starts()[::9])
    assert len(fit.loss) == 245 and fit.loss.max() < np.sort(loss)[-5]
