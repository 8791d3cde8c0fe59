"""Compile a run's executables before it starts, e.g. in a background thread while the previous run trains.

A sweep spends most of its non-training time compiling each new model shape (init, train step, eval step). On an
accelerator the sweep worker calls `precompile_in_background(next_config)` before training the current run, so the
next shape compiles on the host while the device trains. Nothing is allocated: everything is lowered from abstract
shapes.
"""

from __future__ import annotations

import logging
import threading

import jax

from research.config import RunConfig
from research.data import load_data
from research.parallel import make_mesh
from research.parallel.pipeline import model_for
from research.train.optimizer import make_optimizer
from research.train.state import compiled_init, state_shardings
from research.train.step import compile_train_step, eval_step_for

log = logging.getLogger(__name__)


def overlaps_training() -> bool:
    """Whether compiling in the background actually overlaps training: when the steps run on an accelerator.

    On a CPU backend the steps already use every core, so a background compile only slows them: measured on the
    2-core CPU, the cold demo sweep took the same wall time with and without it (289.5 s vs 288.9 s) while the
    runs' own tokens/s dropped.
    """
    return jax.default_backend() != "cpu"


def precompile(config: RunConfig, devices: list | None = None) -> None:
    """Fill the in-process caches with `config`'s compiled init, train step and eval step (allocating nothing)."""
    devices = jax.devices() if devices is None else devices
    mesh = make_mesh(config.parallel, devices)
    pad_id = load_data(config.data).tokenizer.pad_id  # served from the token cache after the sweep's first run
    model, tx = model_for(config), make_optimizer(config.optim)
    abstract, shardings = state_shardings(config, model, tx, mesh)
    compiled_init(config, model, tx, mesh, shardings)
    compile_train_step(config, mesh, shardings, abstract, pad_id)
    eval_step_for(config, mesh, abstract.params, pad_id)


def precompile_in_background(config: RunConfig, devices: list | None = None) -> threading.Thread:
    """Start `precompile(config)` in a daemon thread. A failure is only logged: the run itself raises it properly."""
    def work() -> None:
        try:
            precompile(config, devices)
        except Exception as e:  # noqa: BLE001 - the run that needs these executables reports its own errors
            log.info("background precompile of %s failed: %s: %s", config.run_id(), type(e).__name__, e)

    thread = threading.Thread(target=work, name=f"precompile-{config.run_id()}", daemon=True)
    thread.start()
    return thread
