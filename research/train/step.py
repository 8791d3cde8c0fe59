"""The jitted training and evaluation steps: token cross-entropy (+ z-loss, + distillation from a teacher),
gradient accumulation by scan."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.config import RunConfig
from research.model import Transformer
from research.model.flops import train_flops_per_token
from research.parallel import activate, batch_sharding, replicated
from research.parallel.pipeline import model_for
from research.train.compile_cache import compile_lowered
from research.train.executables import ExecutableCache, compile_key
from research.train.losses import distillation_loss, token_losses
from research.train.optimizer import apply_learning_rate, make_optimizer, trainable_mask
from research.train.state import TrainState


def batch_keys(config: RunConfig) -> tuple[str, ...]:
    """The arrays of a batch, each int32 [global_batch, T]: documents packed with document masking also carry the
    document of each token and its position in it."""
    return ("inputs", "targets") + (("segments", "positions") if config.data.document_mask else ())


def apply_model(model: Transformer, params, batch: dict, **kwargs) -> jnp.ndarray:
    """Logits [batch, T, vocab] of a batch (of any of batch_keys' forms)."""
    return model.apply({"params": params}, batch["inputs"], batch.get("positions"), segments=batch.get("segments"),
                       **kwargs)


def make_train_step(config: RunConfig, model: Transformer, tx: optax.GradientTransformation, pad_id: int,
                    teacher: Transformer | None = None):
    """step(state, batch, lr, seed[, teacher_params]) -> (state, metrics); batch: batch_keys(config), int32
    [global_batch, T]. With a `teacher` model (distill.teacher), its logits on the batch enter the objective
    (research.train.losses); the logged loss stays the label cross-entropy.

    lr (float32) and seed (int32) are inputs rather than constants, so one compiled step serves every run of the
    same shapes whatever its length, schedule or seed.
    """
    accum = config.train.accum_steps
    deterministic = config.model.dropout == 0.0 and (config.adapt.method != "lora" or config.adapt.lora_dropout == 0)

    def loss_fn(params, batch, rng, teacher_params):
        if config.adapt.method != "full":  # no gradient into frozen weights (XLA drops their weight-gradient matmuls)
            params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                                  trainable_mask(config.adapt, params))
        logits = apply_model(model, params, batch, deterministic=deterministic, rngs={"dropout": rng})
        objective, nll, count = token_losses(logits, batch["targets"], pad_id, config.train.z_loss)
        if teacher is not None:
            teacher_logits = apply_model(teacher, teacher_params, batch, deterministic=True)
            kd = distillation_loss(logits, teacher_logits, batch["targets"], pad_id, config.distill)
            objective = (1.0 - config.distill.weight) * objective + config.distill.weight * kd
        return objective, (nll, count)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: dict, lr: jnp.ndarray, seed: jnp.ndarray, teacher_params=None):
        rng = jax.random.fold_in(jax.random.key(seed), state.step)  # dropout depends on (seed, step): resumable
        # [accum, batch / accum, T]; microbatch j takes rows j, j + accum, ... so every data shard feeds every one
        micro = jax.tree.map(lambda x: x.reshape(-1, accum, x.shape[-1]).swapaxes(0, 1), batch)
        micro = jax.tree.map(lambda x: nn.with_logical_constraint(x, (None, "act_batch", "act_seq")), micro)

        def accumulate(carry, xs):
            grads, nll, count = carry
            batch, index = xs
            g, (n, c) = grad_fn(state.params, batch, jax.random.fold_in(rng, index), teacher_params)
            return (jax.tree.map(jnp.add, grads, g), nll + n, count + c), None

        if accum == 1:  # no loop: the same numbers as the scan below, without its zero-filled carry and its compile
            grads, (nll, count) = grad_fn(state.params, jax.tree.map(lambda x: x[0], micro),
                                          jax.random.fold_in(rng, 0), teacher_params)
        else:
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, nll, count), _ = jax.lax.scan(
                accumulate, (zeros, 0.0, 0.0), (micro, jnp.arange(accum)))
        count = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g: g / count, grads)  # mean per-token gradient over the global batch
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, apply_learning_rate(updates, lr))
        metrics = {"loss": nll / count, "grad_norm": optax.tree.norm(grads)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def make_multi_step(step, steps: int):
    """multi(state, batches, lrs, n, seed[, teacher_params]) -> (state, metrics): `step` applied to the first n
    (<= steps) of the stacked batches (batch_keys): int32 [steps, global_batch, T] with lrs float32 [steps]; metrics
    [steps] each (entries from n on are 0). One call runs n optimizer steps in a device loop, so a small model pays
    the host's dispatch and synchronisation once per call instead of once per step. The loop body is `step` itself:
    any n, and any split of a run into calls, gives bitwise the same numbers (tests/train/test_steps_per_call.py)."""
    def multi(state: TrainState, batches: dict, lrs: jnp.ndarray, n: jnp.ndarray, seed: jnp.ndarray,
              teacher_params=None):
        def body(i, carry):
            state, losses, norms = carry
            batch = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), batches)
            state, metrics = step(state, batch, lrs[i], seed, teacher_params)
            return state, losses.at[i].set(metrics["loss"]), norms.at[i].set(metrics["grad_norm"])

        zeros = jnp.zeros((steps,), jnp.float32)
        state, losses, norms = jax.lax.fori_loop(0, n, body, (state, zeros, zeros))
        return state, {"loss": losses, "grad_norm": norms}

    return multi


MAX_STEPS_PER_CALL = 32
FLOPS_PER_CALL = 2e10  # about 0.1 s of a 2-core CPU: dispatch (~ms) becomes noise, and a stop signal waits little


def steps_per_call(config: RunConfig) -> int:
    """train.steps_per_call, or by default as many steps (up to 32) as fit in FLOPS_PER_CALL training FLOPs:
    1 for models whose single step already dwarfs the per-call overhead."""
    if config.train.steps_per_call is not None:
        return config.train.steps_per_call
    step_flops = train_flops_per_token(config.model, config.data.seq_len, config.adapt) * config.tokens_per_step
    return max(1, min(MAX_STEPS_PER_CALL, int(FLOPS_PER_CALL // step_flops)))


def call_inputs(batches: list[dict], lrs, steps: int) -> tuple:
    """The host inputs (before `seed`) of one call of the step compiled with `steps`, for n = len(batches) <= steps
    steps: (batch, lr) when steps == 1, else (batches stacked and zero-padded to [steps, rows, T], lrs zero-padded to
    [steps], n). The first entry is the one to place on the devices."""
    n = len(batches)
    if steps == 1:
        return batches[0], np.float32(lrs[0])
    pad = [{k: np.zeros_like(v) for k, v in batches[0].items()}] * (steps - n)
    stacked = {k: np.stack([b[k] for b in batches + pad]) for k in batches[0]}  # [steps, rows, T]
    padded = np.zeros(steps, np.float32)
    padded[:n] = lrs
    return stacked, padded, np.int32(n)


_EVAL_STEPS = ExecutableCache()


def eval_step_for(config: RunConfig, mesh, abstract_params, pad_id: int):
    """The eval step for these shapes, compiled ahead of time and shared by later runs of the same model and mesh:
    compiled(params, batch) with batch rows = batch_size / accum_steps."""
    rows = config.batch_size // config.train.accum_steps

    def build():
        batch = jax.ShapeDtypeStruct((rows, config.data.seq_len), jnp.int32, sharding=batch_sharding(mesh))
        with activate(mesh):
            lowered = jax.jit(make_eval_step(model_for(config), pad_id)).lower(
                abstract_params, {k: batch for k in batch_keys(config)})
            return compile_lowered(lowered, mesh.devices.flat[0].platform)

    return _EVAL_STEPS.get(compile_key(config, mesh, pad_id=pad_id), build)


def make_eval_step(model: Transformer, pad_id: int):
    """eval(params, batch) -> (summed cross-entropy, token count), deterministic."""
    def evaluate(params, batch):
        logits = apply_model(model, params, batch, deterministic=True)
        _, nll, count = token_losses(logits, batch["targets"], pad_id, 0.0)
        return nll, count

    return evaluate


_TRAIN_STEPS = ExecutableCache()


def compile_train_step(config: RunConfig, mesh, shardings, abstract_state, pad_id: int, steps: int = 1,
                       teacher: tuple | None = None):
    """Jit with explicit shardings (state donated), compile ahead of time (so timing never includes it), and keep
    the executable for later runs of the same shapes. steps == 1: compiled(state, batch, lr, seed);
    steps > 1: compiled(state, batches, lrs, n, seed), `make_multi_step`'s loop of up to `steps` steps. With
    `teacher` = (model, abstract params carrying their shardings), the teacher's params follow as the last input."""
    def build():
        model, tx = model_for(config), make_optimizer(config.optim, config.adapt)  # plain stack or pipeline
        step = make_train_step(config, model, tx, pad_id, None if teacher is None else teacher[0])
        lead = () if steps == 1 else (steps,)
        batch_spec = batch_sharding(mesh, stacked=steps > 1)
        abstract_batch = {k: jax.ShapeDtypeStruct(lead + (config.batch_size, config.data.seq_len), jnp.int32,
                                                  sharding=batch_spec) for k in batch_keys(config)}
        scalar = lambda dtype, shape=(): jax.ShapeDtypeStruct(shape, dtype, sharding=replicated(mesh))  # noqa: E731
        metric_sharding = {"loss": replicated(mesh), "grad_norm": replicated(mesh)}
        args = [abstract_state, abstract_batch, scalar(jnp.float32, lead)]
        if steps > 1:
            step = make_multi_step(step, steps)
            args.append(scalar(jnp.int32))  # n
        args.append(scalar(jnp.int32))  # seed
        in_shardings = (shardings, batch_spec) + (replicated(mesh),) * (len(args) - 2)
        if teacher is not None:
            args.append(teacher[1])
            in_shardings += (jax.tree.map(lambda x: x.sharding, teacher[1]),)
        with activate(mesh):
            jitted = jax.jit(step, in_shardings=in_shardings, out_shardings=(shardings, metric_sharding),
                             donate_argnums=0)
            return compile_lowered(jitted.lower(*args), mesh.devices.flat[0].platform)

    teacher_shapes = None if teacher is None else (teacher[0].cfg, jax.tree.map(lambda x: x.shape, teacher[1]))
    return _TRAIN_STEPS.get(compile_key(config, mesh, pad_id=pad_id, steps=steps, teacher=teacher_shapes), build)
