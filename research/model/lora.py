"""LoRA's low-rank updates folded into the weights they adapt (Hu et al. 2022, ADAPT-5): W + (alpha / rank) A B.

The adapted model (research.model.transformer with `lora`) computes x W + (alpha / rank) (x A) B; the merged plain
model computes x (W + (alpha / rank) A B), the same function with no extra matmuls at inference."""

from __future__ import annotations

import jax.numpy as jnp

WEIGHTS = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "mlp_in": "w_in", "mlp_gate": "w_gate", "mlp_out": "w_out"}


def merge_lora(params: dict, lora) -> dict:
    """`params` of a LoRA model -> the plain model's parameters (the A and B leaves folded in and removed)."""
    scale = lora.lora_alpha / lora.lora_rank
    out = {}
    for name, value in params.items():
        if isinstance(value, dict):
            out[name] = merge_lora(value, lora)
        elif not name.startswith("lora_"):
            out[name] = value
    for target, weight in WEIGHTS.items():
        a, b = params.get(f"lora_a_{target}"), params.get(f"lora_b_{target}")
        if a is None:
            continue
        w = params[weight]  # [layers, *in, *out]; a: [layers, *in, rank]; b: [layers, rank, *out]
        layers, rank = a.shape[0], a.shape[-1]
        delta = jnp.matmul(a.reshape(layers, -1, rank), b.reshape(layers, rank, -1))  # [layers, in, out]
        out[weight] = w + scale * delta.reshape(w.shape)
    return out
