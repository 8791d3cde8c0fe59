"""Projections x · W with a backward pass whose matmuls read their operands as laid out (no transposed copies).

Autodiff of `x @ W` builds the weight gradient as a transposed dot(dY, X), and XLA's CPU backend materialised a
transposed copy of the larger [tokens, features] operand for it (in the MLP, [tokens, d_ff]: as slow as a matmul).
Here the weight gradient transposes whichever of X and dY is smaller.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def dense(x: jnp.ndarray, w: jnp.ndarray, contract: int = 1, out_dtype=None) -> jnp.ndarray:
    """Contract the last `contract` axes of x with the first `contract` axes of w.

    x: [*batch, *in]; w: [*in, *out] -> [*batch, *out] in `out_dtype` (default x's dtype). For example
    "btd,dhk->bthk" is dense(x, w) and "bthk,hkd->btd" is dense(x, w, contract=2).
    """
    return dense_reference(x, w, contract, out_dtype)


def dense_reference(x: jnp.ndarray, w: jnp.ndarray, contract: int = 1, out_dtype=None) -> jnp.ndarray:
    """The same contraction, differentiated by autodiff (model.kernels=reference)."""
    dims = ((tuple(range(x.ndim - contract, x.ndim)), tuple(range(contract))), ((), ()))
    return jax.lax.dot_general(x, w, dims, preferred_element_type=out_dtype or x.dtype)


def _dense_fwd(x, w, contract, out_dtype):
    return dense_reference(x, w, contract, out_dtype), (x, w)


def _dense_bwd(contract, out_dtype, residuals, g):
    x, w = residuals
    g = g.astype(x.dtype)  # [*batch, *out]
    n_batch = x.ndim - contract
    # dx [*batch, *in] = g · W^T, contracting the output axes
    dx_dims = ((tuple(range(n_batch, g.ndim)), tuple(range(contract, w.ndim))), ((), ()))
    dx = jax.lax.dot_general(g, w, dx_dims, preferred_element_type=jnp.float32).astype(x.dtype)
    # dW [*in, *out] = X^T · g, contracting the batch axes. The matmul reads its first operand transposed, which
    # XLA materialises: transpose the smaller of X and g, and if that is g, transpose the (small) product back.
    batch_axes = tuple(range(n_batch))
    if math.prod(x.shape[n_batch:]) <= math.prod(g.shape[n_batch:]):
        dw = jax.lax.dot_general(x, g, ((batch_axes, batch_axes), ((), ())), preferred_element_type=jnp.float32)
    else:
        dw_t = jax.lax.dot_general(g, x, ((batch_axes, batch_axes), ((), ())), preferred_element_type=jnp.float32)
        n_out = w.ndim - contract
        dw = dw_t.transpose(tuple(range(n_out, w.ndim)) + tuple(range(n_out)))  # [*out, *in] -> [*in, *out]
    return dx, dw.astype(w.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)
