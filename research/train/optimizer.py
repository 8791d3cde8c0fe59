"""AdamW with warmup + (constant | cosine | linear | WSD) schedules, global-norm clipping and a weight-decay mask.

The optimiser computes AdamW's update direction; the train step scales it by -lr(step), with lr an input of the
step. optax.adamw is the same chain with the learning rate folded in: keeping it outside lets runs of different
lengths or schedules share one compiled step.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from research.config import AdaptConfig, OptimConfig

NO_DECAY_NORM_BIAS = ("scale", "bias", "bq", "bk", "bv", "bo", "b_in", "b_gate", "b_out")
EMBEDDINGS = ("embedding", "pos_embedding", "lm_head")
SCHEDULE_FIELDS = ("lr", "schedule", "warmup_steps", "min_lr_ratio", "decay_fraction", "decay_shape")  # step inputs


def learning_rate(cfg: OptimConfig, total_steps: int):
    """lr(step): linear warmup from 0 over warmup_steps, then the named decay down to lr * min_lr_ratio.

    NumPy on the host (a scalar per step, or an array of steps): the step takes lr as an input, and computing it with
    jnp cost about a millisecond of eager dispatch per step, as much as a whole step of a small model.
    """
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)

    def schedule(step):
        step = np.asarray(step, np.float64)
        warm = peak * np.minimum((step + 1.0) / max(warmup, 1), 1.0) if warmup else peak
        t = np.clip((step - warmup) / decay_steps, 0.0, 1.0)  # progress through the post-warmup phase
        if cfg.schedule == "constant":
            after = peak
        elif cfg.schedule == "cosine":
            after = floor + (peak - floor) * 0.5 * (1.0 + np.cos(np.pi * t))
        elif cfg.schedule == "linear":
            after = peak + (floor - peak) * t
        else:  # wsd: stable at peak, then cool down over the last decay_fraction of all steps
            cooldown = max(round(cfg.decay_fraction * total_steps), 1)
            u = np.clip((step - (total_steps - cooldown)) / cooldown, 0.0, 1.0)
            shape = {"linear": u, "cosine": 0.5 * (1.0 - np.cos(np.pi * u)), "sqrt": np.sqrt(u)}[cfg.decay_shape]
            after = peak + (floor - peak) * shape
        return np.where(step < warmup, warm, after)

    return schedule


def weight_decay_mask(cfg: OptimConfig, params):
    """True where AdamW applies weight decay: matrices always; norms/biases and embeddings only if asked."""

    def decays(path, _):
        name = _leaf_name(path)
        if name in NO_DECAY_NORM_BIAS:
            return cfg.decay_norms_and_biases
        if name in EMBEDDINGS:
            return cfg.decay_embeddings
        return True

    return jax.tree_util.tree_map_with_path(decays, params)


def trainable_mask(adapt: AdaptConfig, params):
    """True for the leaves that train: every one (adapt.method=full), or only those the method adds."""
    if adapt.method == "full":
        return jax.tree.map(lambda _: True, params)
    return jax.tree_util.tree_map_with_path(lambda path, _: is_adapter(path), params)


def is_adapter(path) -> bool:
    """A leaf an adaptation method adds (LoRA's A and B, an adapter's weights, a soft prompt, a prefix): trained,
    never part of a base."""
    keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return bool(keys) and (keys[-1].startswith(("lora_", "prefix_")) or keys[-1] == "soft_prompt"
                           or any(str(k).startswith("adapter_") for k in keys))


def _leaf_name(path) -> str:
    return next((k.key for k in reversed(path) if isinstance(k, jax.tree_util.DictKey)), "")


def make_optimizer(cfg: OptimConfig, adapt: AdaptConfig | None = None) -> optax.GradientTransformation:
    """Clip -> Adam moments -> decoupled weight decay: AdamW's update before the learning rate. With frozen weights
    (adapt.method other than full) it runs on the trainable leaves only: the frozen ones get no state and no update."""
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps))
    if cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=lambda p: weight_decay_mask(cfg, p)))
    adamw = optax.chain(*parts)
    if adapt is None or adapt.method == "full":
        return adamw
    return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()},
                                 lambda p: jax.tree.map(lambda t: "train" if t else "frozen", trainable_mask(adapt, p)))


def apply_learning_rate(updates, lr):
    """AdamW's last stage, optax.scale_by_learning_rate: descend by lr times the update direction."""
    return jax.tree.map(lambda u: -lr * u, updates)
