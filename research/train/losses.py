"""Per-token training losses as sums over the tokens that count (targets other than pad): the label
cross-entropy (+ z-loss) and the knowledge-distillation term (ADAPT-9)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from research.config import DistillConfig


def token_losses(logits: jnp.ndarray, targets: jnp.ndarray, pad_id: int, z_loss: float):
    """Sums over non-pad targets: (cross-entropy + z_loss * log(Z)^2, cross-entropy, token count). logits float32."""
    log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, T]
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    mask = (targets != pad_id).astype(jnp.float32)
    nll = jnp.sum((log_z - target_logit) * mask)
    objective = nll + z_loss * jnp.sum(jnp.square(log_z) * mask) if z_loss else nll
    return objective, nll, jnp.sum(mask)


def distillation_loss(student_logits: jnp.ndarray, teacher_logits: jnp.ndarray, targets: jnp.ndarray, pad_id: int,
                      cfg: DistillConfig) -> jnp.ndarray:
    """Sum over non-pad targets of KL(q || p): q = softmax(teacher / T); p = softmax(student), or with
    cfg.temper_student softmax(student / T) and the KL scaled by T^2 (Hinton et al.: gradients keep their size
    as T changes). Logits [batch, T, vocab] float32; the teacher's carry no gradient."""
    t = cfg.temperature
    log_q = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / t, axis=-1)  # [batch, T, vocab]
    log_p = jax.nn.log_softmax(student_logits / t if cfg.temper_student else student_logits, axis=-1)
    kl = jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)  # [batch, T]
    scale = t * t if cfg.temper_student else 1.0
    return scale * jnp.sum(kl * (targets != pad_id))
