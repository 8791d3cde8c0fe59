"""Scaling-law functional forms: plain functions to evaluate, and fittable forms (JAX, log space) with start grids.

A fittable `Form` predicts log-loss from log-inputs, so fits work in the space Hoffmann et al. fit in, and its grid
of initial values is part of the form. Users add their own with `register_form`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np


# ---------------------------------------------------------------------------------------------- plain functions
def power_law(x, A, alpha):
    """L(x) = A x^-alpha."""
    return A * x ** -alpha


def saturating_power_law(x, E, A, alpha):
    """L(x) = E + A x^-alpha, for x = N, D or C."""
    return E + A * x ** -alpha


def chinchilla_loss(N, D, E, A, B, alpha, beta):
    """Hoffmann et al. (2022), eq. 2: L(N, D) = E + A / N^alpha + B / D^beta."""
    return E + A * N ** -alpha + B * D ** -beta


PARAMS = ("E", "A", "B", "alpha", "beta")  # the Chinchilla law's parameters, in order


def allocation(E, A, B, alpha, beta, flops_coefficient: float = 6.0) -> dict:
    """Compute-optimal exponents and scale of Hoffmann et al.'s eq. 4 (works elementwise on arrays too)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # degenerate fits: inf / nan, not warnings
        a = beta / (alpha + beta)
        b = alpha / (alpha + beta)
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return {"a": a, "b": b, "G": G}


def n_opt(C, E, A, B, alpha, beta, flops_coefficient: float = 6.0):
    al = allocation(E, A, B, alpha, beta)
    return al["G"] * (np.asarray(C, float) / flops_coefficient) ** al["a"]


def d_opt(C, E, A, B, alpha, beta, flops_coefficient: float = 6.0):
    al = allocation(E, A, B, alpha, beta)
    return (np.asarray(C, float) / flops_coefficient) ** al["b"] / al["G"]


def kaplan_loss(N, D, Nc, Dc, alpha_N, alpha_D):
    """Kaplan et al. (2020), eq. 1.5: L(N, D) = [(Nc / N)^(alpha_N / alpha_D) + Dc / D]^alpha_D."""
    return ((Nc / N) ** (alpha_N / alpha_D) + Dc / D) ** alpha_D


def lse(*terms):
    """log(sum(exp(terms))) without the max shift: exact and faster in float64 while every term is below ~700.

    Terms broadcast, so a scalar term (e.g. the floor e) costs one exp, not one per point.
    """
    total = jnp.exp(terms[0])
    for t in terms[1:]:
        total = total + jnp.exp(t)
    return jnp.log(total)


# ---------------------------------------------------------------------------------------------- fittable forms
@dataclass(frozen=True, eq=False)
class Form:
    """A fittable law: `log_loss(p, logx)` maps raw parameters and natural-log inputs to predicted log-loss (JAX).

    `grid` holds each raw parameter's initial values; the starts are their Cartesian product, taken in the grid's
    key order. `natural` turns raw parameters into the reported ones (e.g. a -> A = exp(a)).
    """

    name: str
    inputs: tuple[str, ...]
    grid: Mapping[str, tuple[float, ...]]
    log_loss: Callable[[dict, dict], jax.Array]
    natural: Callable[[dict], dict] = field(default=lambda raw: dict(raw))
    doc: str = ""

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(self.grid)

    def starts(self) -> np.ndarray:
        """The grid of initial values, [n_starts, n_params], columns in `params` order."""
        return np.array(list(itertools.product(*(np.asarray(v, float) for v in self.grid.values()))), float)

    def predict(self, raw: Mapping[str, float], **inputs) -> np.ndarray:
        """Predicted loss at the given inputs (natural units, not logs)."""
        with jax.enable_x64(True):
            logx = {k: jnp.log(jnp.asarray(inputs[k], jnp.float64)) for k in self.inputs}
            p = {k: jnp.asarray(raw[k], jnp.float64) for k in self.params}
            return np.exp(np.asarray(self.log_loss(p, logx)))


def _chinchilla(p, x):
    return lse(p["a"] - p["alpha"] * x["N"], p["b"] - p["beta"] * x["D"], p["e"])  # exp(e) once, broadcast


def _kaplan(p, x):
    ratio = p["alpha_N"] / p["alpha_D"]
    return p["alpha_D"] * lse(ratio * (p["log_Nc"] - x["N"]), p["log_Dc"] - x["D"])


_EXPONENTS = (0.0, 0.5, 1.0, 1.5, 2.0)
_LOG_AMPLITUDES = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
_LOG_FLOORS = (-1.0, -0.5, 0.0, 0.5, 1.0)

FORMS: dict[str, Form] = {}


def register_form(form: Form, *, replace: bool = False) -> Form:
    """Make a form available by name to `fit_form` and the CLI; the log_loss must be written in jax.numpy."""
    if form.name in FORMS and not replace:
        raise ValueError(f"form {form.name!r} is already registered. Fix: pick another name or pass replace=True.")
    if not form.grid or any(len(v) == 0 for v in form.grid.values()):
        raise ValueError(f"form {form.name!r}: every parameter needs at least one initial value in `grid`.")
    FORMS[form.name] = form
    return form


def get_form(form: str | Form) -> Form:
    if isinstance(form, Form):
        return form
    if form not in FORMS:
        raise KeyError(f"unknown form {form!r}; registered: {sorted(FORMS)}. Fix: register_form(Form(...)).")
    return FORMS[form]


register_form(Form(
    "chinchilla", ("N", "D"),
    # Hoffmann et al.'s grid, in the order Besiroglu et al.'s replication iterates it: 5*5*5*6*6 = 4500 starts.
    {"alpha": _EXPONENTS, "beta": _EXPONENTS, "e": _LOG_FLOORS, "a": _LOG_AMPLITUDES, "b": _LOG_AMPLITUDES},
    _chinchilla,
    lambda r: {"E": np.exp(r["e"]), "A": np.exp(r["a"]), "B": np.exp(r["b"]), "alpha": r["alpha"],
               "beta": r["beta"]},
    "log L = LSE(a - alpha log N, b - beta log D, e): E + A/N^alpha + B/D^beta (Hoffmann et al. 2022)"))

register_form(Form(
    "kaplan", ("N", "D"),
    {"alpha_N": (0.05, 0.1, 0.2, 0.4), "alpha_D": (0.05, 0.1, 0.2, 0.4), "log_Nc": (10.0, 20.0, 30.0, 40.0),
     "log_Dc": (10.0, 20.0, 30.0, 40.0)},
    _kaplan,
    lambda r: {"Nc": np.exp(r["log_Nc"]), "Dc": np.exp(r["log_Dc"]), "alpha_N": r["alpha_N"],
               "alpha_D": r["alpha_D"]},
    "L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D (Kaplan et al. 2020, eq. 1.5)"))

register_form(Form(
    "power_law", ("x",),
    {"alpha": _EXPONENTS, "a": _LOG_AMPLITUDES},
    lambda p, x: p["a"] - p["alpha"] * x["x"],
    lambda r: {"A": np.exp(r["a"]), "alpha": r["alpha"]},
    "L = A x^-alpha"))

register_form(Form(
    "saturating_power_law", ("x",),
    {"alpha": _EXPONENTS, "e": _LOG_FLOORS, "a": _LOG_AMPLITUDES},
    lambda p, x: lse(p["a"] - p["alpha"] * x["x"], p["e"]),
    lambda r: {"E": np.exp(r["e"]), "A": np.exp(r["a"]), "alpha": r["alpha"]},
    "L = E + A x^-alpha, x = N, D or C"))
