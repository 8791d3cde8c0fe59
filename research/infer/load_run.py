"""Open a trained run for inference: its config, tokenizer and checkpoint parameters, laid out on a mesh."""

from __future__ import annotations

from pathlib import Path

import jax

from research.config import ConfigError, ParallelConfig, RunConfig
from research.data import Tokenizer
from research.infer.model import InferenceModel, check_decodable
from research.model.lora import merge_lora
from research.parallel import make_mesh


def load_run(workdir: str | Path, step: int | None = None, tensor: int = 1,
             compiler_options: dict | None = None) -> tuple[InferenceModel, Tokenizer, RunConfig]:
    """(model, tokenizer, config) of checkpoint `step` (default: latest), tensor-parallel over `tensor` devices.

    A LoRA run serves with its updates merged into the weights (no extra matmuls); an adapter run with its adapters."""
    from research.train.setup import restore_state  # training code: imported only when a run is opened

    workdir = Path(workdir)
    if tensor < 1 or tensor > len(jax.devices()):
        raise ConfigError(f"tensor={tensor}: must be between 1 and the {len(jax.devices())} available devices. "
                          "Fix: use --tensor 1, or run with more devices.")
    if not (workdir / "tokenizer.json").exists():
        raise ConfigError(f"--workdir {str(workdir)!r} has no tokenizer.json. Fix: point at a trained run's workdir.")
    if (workdir / "config.json").exists():
        check_decodable(RunConfig.read(workdir / "config.json").model)
    parallel = ParallelConfig(data=1, tensor=tensor)
    devices = jax.devices()[:tensor]
    state, _, config = restore_state(workdir, step, devices=devices, parallel=parallel)
    params, adapt = state.params, (config.adapt if config.adapt.method != "full" else None)
    if config.adapt.method == "lora":
        params, adapt = merge_lora(params, config.adapt), None
    model = InferenceModel(config.model, params, make_mesh(parallel, devices), compiler_options, adapt)
    return model, Tokenizer.load(workdir / "tokenizer.json"), config
