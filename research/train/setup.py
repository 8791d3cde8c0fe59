"""setup(config, devices) -> RunSetup: a run's mesh, model, optimiser, state shapes and shardings, and its compiled
steps. The one way every caller builds them: run(), the benchmark, the planner, background precompiles, restoring
a checkpoint (`restore_state`, for evaluation, generation and export; `base_params`, the weights a fine-tune starts
from) and the Hugging Face importer."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from research.config import ConfigError, DistillConfig, ParallelConfig, RunConfig
from research.model import Transformer
from research.parallel import make_mesh
from research.parallel.pipeline import model_for
from research.train.checkpoint import Checkpointer
from research.train.optimizer import is_adapter, make_optimizer
from research.train.state import TrainState, init_state, state_shardings
from research.train.step import compile_train_step, eval_step_for


@dataclass(frozen=True)
class RunSetup:
    """What a run computes with, before any data: compiled pieces are cached by shape and shared across runs."""

    config: RunConfig
    mesh: Mesh
    model: Transformer  # the plain stack, or the same parameters run as a pipeline
    tx: optax.GradientTransformation
    abstract: TrainState  # ShapeDtypeStructs carrying their shardings
    shardings: TrainState  # NamedShardings

    @functools.cached_property
    def teacher(self) -> tuple[Transformer, dict] | None:
        """distill.teacher's (model, abstract params carrying their shardings on this mesh), or None. Read only when
        training compiles: a distilled run's checkpoints serve without their teacher."""
        if self.config.distill.teacher is None:
            return None
        ours = _teacher_config(self.config)
        abstract, _ = state_shardings(ours, model_for(ours), make_optimizer(ours.optim, ours.adapt), self.mesh)
        return Transformer(ours.model), abstract.params

    def init_state(self) -> TrainState:
        """The initial state, created directly in its shardings (values independent of the mesh)."""
        return init_state(self.config, self.model, self.tx, self.mesh, self.shardings)

    def train_step(self, pad_id: int, steps: int = 1):
        """The compiled train step (steps > 1: a loop of up to `steps` steps per call, research.train.step)."""
        return compile_train_step(self.config, self.mesh, self.shardings, self.abstract, pad_id, steps, self.teacher)

    def eval_step(self, pad_id: int):
        return eval_step_for(self.config, self.mesh, self.abstract.params, pad_id)


def setup(config: RunConfig, devices: list | None = None) -> RunSetup:
    """Mesh errors surface here, before anything is read or compiled."""
    mesh = make_mesh(config.parallel, jax.devices() if devices is None else devices)
    model, tx = model_for(config), make_optimizer(config.optim, config.adapt)
    abstract, shardings = state_shardings(config, model, tx, mesh)
    return RunSetup(config, mesh, model, tx, abstract, shardings)


def _teacher_config(config: RunConfig) -> RunConfig:
    """The teacher run's config, laid out like this run; its vocabulary must be this run's."""
    path = Path(config.distill.teacher) / "config.json"
    if not path.is_file():
        raise ConfigError(f"distill.teacher={config.distill.teacher!r}: no config.json there. Fix: point at a trained "
                          "run's directory, or one `python -m research.interop import` wrote.")
    teacher = RunConfig.read(path)
    if teacher.model.vocab_size != config.model.vocab_size:
        raise ConfigError(f"distill.teacher={config.distill.teacher!r}: its vocabulary has {teacher.model.vocab_size} "
                          f"entries, this run's {config.model.vocab_size}; distillation compares the two "
                          "distributions token by token. Fix: set model.vocab_size to the teacher's and use its "
                          "tokenizer (data config), or another teacher.")
    return dataclasses.replace(teacher, parallel=config.parallel, distill=DistillConfig())


def teacher_params(config: RunConfig, devices: list, recorded: dict | None = None):
    """(params, identity) of distill.teacher: its checkpoint at the recorded step (a resumed run), else distill.
    teacher_step or its newest, in this run's layout; identity {"run", "step", "params_hash"} is what checkpoints
    record, and a resumed run whose teacher's weights changed is refused."""
    step = (recorded or {}).get("step", config.distill.teacher_step)
    state, meta, _ = restore_state(config.distill.teacher, step, devices, config.parallel)
    identity = {"run": str(Path(config.distill.teacher).absolute()), "step": meta["step"],
                "params_hash": params_hash(state.params)}
    if recorded and recorded.get("params_hash") != identity["params_hash"]:
        raise ConfigError(f"distill.teacher={config.distill.teacher!r}: its weights at step {identity['step']} hash "
                          f"to {identity['params_hash']}, but this run was distilled from "
                          f"{recorded.get('params_hash')}. Fix: restore the original teacher run at that path, or "
                          "start the run again in a new workdir.")
    return state.params, identity


def params_hash(params, keep=lambda path: True) -> str:
    """blake2b of the bytes of the leaves `keep(path)` selects, in tree order."""
    digest = hashlib.blake2b(digest_size=16)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if keep(path):
            digest.update(np.asarray(jax.device_get(leaf)).tobytes())
    return digest.hexdigest()


def restore_state(workdir: str | Path, step: int | None = None, devices: list | None = None,
                  parallel: ParallelConfig | None = None):
    """(state, meta, config) of checkpoint `step` (default: latest), laid out for `devices` (default: one device)."""
    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise ConfigError(f"--workdir {str(workdir)!r} has no config.json. Fix: point at a run's workdir.")
    config = RunConfig.read(workdir / "config.json")
    devices = jax.devices()[:1] if devices is None else devices
    config = dataclasses.replace(config, parallel=parallel or ParallelConfig())
    run_setup = setup(config, devices)
    checkpoints = Checkpointer(workdir / "checkpoints", config.train.keep_checkpoints)
    available = checkpoints.steps()
    if not available:
        raise ConfigError(f"{workdir}/checkpoints holds no complete checkpoint. Fix: train the run first.")
    if step is None:  # the newest verified one; damaged ones are named, and left where they are
        step = checkpoints.latest_verified()
        for skipped in available[:available.index(step) if step is not None else None]:
            print(f"warning: skipping checkpoint step {skipped} in {workdir}: {checkpoints.problem(skipped)}.",
                  file=sys.stderr, flush=True)
        if step is None:
            raise ConfigError(f"{workdir}/checkpoints holds no checkpoint that verifies. Fix: train the run again.")
    elif step not in available:
        raise ConfigError(f"step={step}: no checkpoint at that step in {workdir}. Fix: use one of {sorted(available)}.")
    state, meta = checkpoints.restore(step, stored(config, run_setup.abstract), fingerprint=None)
    checkpoints.close()
    return with_base(config, run_setup, devices, state, meta), meta, config


def base_params(config: RunConfig, run_setup: RunSetup, devices: list, initial, step: int | None = None):
    """(params, identity) a fine-tune starts from: the base run's (`config.init.from_run`) checkpointed weights
    (at `step`, default init.step or its newest) in this run's shardings, with the adapters that `initial` holds
    (LoRA's A and B, adapters' weights) kept; and {"run", "step", "params_hash"} of the base to record. A base whose
    weights have other shapes is refused, naming the first that differs."""
    base_dir = Path(config.init.from_run)
    if not (base_dir / "config.json").is_file():
        raise ConfigError(f"init.from_run={config.init.from_run!r}: no config.json there. Fix: point at a trained "
                          "run's directory, or one `python -m research.interop import` wrote.")
    state, meta, _ = restore_state(base_dir, config.init.step if step is None else step, devices, config.parallel)
    theirs = dict(jax.tree_util.tree_flatten_with_path(state.params)[0])
    leaves, treedef = jax.tree_util.tree_flatten_with_path(initial)
    fix = (f"Fix: give this run the base's model config (--config {base_dir} --set ...), or another base.")
    params = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        if is_adapter(path):  # not part of any base: kept as initialised
            params.append(leaf)
            continue
        got = theirs.pop(path, None)
        if got is None or got.shape != leaf.shape:
            raise ConfigError(f"init.from_run={config.init.from_run!r}: the base's parameter {name} has shape "
                              f"{None if got is None else tuple(got.shape)}, this run's model needs "
                              f"{tuple(leaf.shape)}. {fix}")
        params.append(got)
    if theirs:
        raise ConfigError(f"init.from_run={config.init.from_run!r}: the base has parameters this run's model lacks "
                          f"({', '.join(map(jax.tree_util.keystr, theirs))}). {fix}")
    params = jax.device_put(jax.tree_util.tree_unflatten(treedef, params), run_setup.shardings.params)
    identity = {"run": str(base_dir.absolute()), "step": meta["step"],
                "params_hash": params_hash(params, keep=lambda path: not is_adapter(path))}
    return params, identity


def initial_soft_prompt(config: RunConfig, params, shardings):
    """Prompt tuning's start (Lester et al. 2021): with adapt.prompt_init=vocab the soft prompt is the embeddings of
    virtual_tokens vocabulary entries drawn by the run's seed (the tokenizer's entries, specials included); with
    random it keeps its N(0, 0.02) initialisation."""
    if config.adapt.method != "prompt_tuning" or config.adapt.prompt_init != "vocab":
        return params
    vocab = min(config.model.vocab_size, config.data.vocab_size)
    k = config.adapt.virtual_tokens
    ids = np.random.default_rng(config.seed).choice(vocab, k, replace=k > vocab)
    prompt = jax.device_put(jax.device_get(params["embedding"])[ids], shardings["soft_prompt"])
    return params | {"soft_prompt": prompt}


def stores_base_separately(config: RunConfig) -> bool:
    """A parameter-efficient fine-tune of a base run checkpoints only what trains (and its optimiser state): the
    frozen weights are read back from init.from_run, at the recorded step and checked against the recorded hash."""
    return config.adapt.method != "full" and config.init.from_run is not None


def stored(config: RunConfig, state):
    """What a checkpoint of this run holds: `state` (arrays or abstract shapes), with the frozen base weights left
    out (optax.MaskedNode, as the optimiser state leaves them out) when stores_base_separately(config)."""
    if not stores_base_separately(config):
        return state
    return state.replace(params=jax.tree_util.tree_map_with_path(
        lambda path, p: p if is_adapter(path) else optax.MaskedNode(), state.params))


def with_base(config: RunConfig, run_setup: RunSetup, devices: list, state, meta: dict):
    """A restored checkpoint's state made whole: the frozen weights from the base step it recorded; a base whose
    weights no longer hash to the recorded value (retrained, replaced) is refused."""
    if not stores_base_separately(config):
        return state
    recorded = meta.get("base") or {}
    adapters = dict(jax.tree_util.tree_flatten_with_path(state.params)[0])
    initial = jax.tree_util.tree_map_with_path(lambda path, a: adapters[path] if is_adapter(path) else a,
                                               run_setup.abstract.params)
    params, base = base_params(config, run_setup, devices, initial, step=recorded.get("step"))
    if base["params_hash"] != recorded.get("params_hash"):
        raise ConfigError(
            f"init.from_run={config.init.from_run!r}: the base's weights at step {base['step']} hash to "
            f"{base['params_hash']}, but this run was trained on {recorded.get('params_hash')} (its checkpoints hold "
            "only the trained adapters). Fix: restore the original base run at that path, or start the fine-tune "
            "again in a new workdir.")
    return state.replace(params=params)
