"""`dense`: the projection with a transpose-free weight gradient, against einsum under autodiff."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.model.dense import dense

# (x shape, w shape, contract, einsum spec): every projection the model makes, with the input wider than the
# output and narrower (the two weight-gradient orders).
CASES = {
    "qkv": ((2, 5, 6), (6, 3, 4), 1, "btd,dhk->bthk"),
    "out": ((2, 5, 3, 4), (3, 4, 6), 2, "bthk,hkd->btd"),
    "mlp-in": ((2, 5, 6), (6, 16), 1, "btd,df->btf"),
    "mlp-out": ((2, 5, 16), (16, 6), 1, "btf,fd->btd"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dense_values_and_gradients_equal_einsum(case):
    x_shape, w_shape, contract, spec = CASES[case]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    cotangent = rng.standard_normal(jnp.einsum(spec, x, w).shape).astype(np.float32)
    value, pullback = jax.vjp(lambda x, w: dense(x, w, contract), x, w)
    ref_value, ref_pullback = jax.vjp(lambda x, w: jnp.einsum(spec, x, w), x, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, np.einsum(spec, x.astype(np.float64), w.astype(np.float64)), rtol=1e-4,
                               atol=1e-4)
    for got, want in zip(pullback(cotangent), ref_pullback(cotangent)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_float32_output_from_bfloat16_inputs():
    """The logits path: bf16 activations and weights, float32 output, gradients back in the inputs' dtypes."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 3, 8)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((8, 5)), jnp.bfloat16)
    y, pullback = jax.vjp(lambda x, w: dense(x, w, 1, jnp.float32), x, w)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, np.asarray(x, np.float32) @ np.asarray(w, np.float32), rtol=1e-5, atol=1e-5)
    dx, dw = pullback(jnp.ones_like(y))
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(dw, np.float32), np.asarray(x, np.float32).sum((0, 1))[:, None]
                               * np.ones((1, 5)), rtol=1e-2)
