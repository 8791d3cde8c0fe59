"""LoRA adapters in Hugging Face PEFT's format (adapter_config.json + adapter_model.safetensors) for LLaMA-family
models, with the same function on both sides: PEFT adds (alpha / r) B A x to each target Linear (rsLoRA: alpha /
sqrt(r)); ours adds (alpha / rank) (x A) B with A = PEFT's A^T and B = PEFT's B^T, the in and out axes laid out as
the weights' (research.interop.llama). `export_peft` writes a LoRA run's adapters; `import_peft` writes a LoRA run
directory on a base run (e.g. the `python -m research.interop import` of the model the adapter was trained on)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import jax
import numpy as np

from research.config import AdaptConfig, ConfigError, InitConfig, RunConfig, apply_overrides
from research.data import Tokenizer
from research.files import write_text_atomic
from research.interop.llama import check_exportable
from research.interop.safetensors_io import _read_file
from research.model.lora import WEIGHTS

MODULES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
           "mlp_in": "mlp.up_proj", "mlp_gate": "mlp.gate_proj", "mlp_out": "mlp.down_proj"}
SUBLAYER = {"q": "attn", "k": "attn", "v": "attn", "o": "attn", "mlp_in": "mlp", "mlp_gate": "mlp", "mlp_out": "mlp"}
CONFIG, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model.model.layers."  # PeftModelForCausalLM -> LlamaForCausalLM -> LlamaModel


def export_peft(workdir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """Write the LoRA run `workdir`'s adapters (checkpoint `step`, default the latest) as a PEFT adapter directory."""
    from safetensors.numpy import save_file

    from research.train.setup import restore_state

    state, _, config = restore_state(workdir, step)
    if config.adapt.method != "lora":
        raise ConfigError(f"adapt.method={config.adapt.method!r} in {workdir}: the PEFT LoRA format holds LoRA "
                          "adapters only. Fix: export a run trained with adapt.method=lora.")
    check_exportable(config.model)
    params = jax.device_get(state.params)["blocks"]
    tensors = {}
    for target in config.adapt.targets:
        a, b = (np.asarray(params[SUBLAYER[target]][f"lora_{ab}_{target}"], np.float32) for ab in "ab")
        layers, rank = a.shape[0], a.shape[-1]
        for i in range(layers):  # ours a [*in, r], b [r, *out] -> PEFT's A [r, in], B [out, r]
            tensors[f"{PREFIX}{i}.{MODULES[target]}.lora_A.weight"] = a[i].reshape(-1, rank).T
            tensors[f"{PREFIX}{i}.{MODULES[target]}.lora_B.weight"] = b[i].reshape(rank, -1).T
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adapter = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.adapt.lora_rank,
               "lora_alpha": config.adapt.lora_alpha, "lora_dropout": config.adapt.lora_dropout,
               "target_modules": sorted(MODULES[t].split(".")[1] for t in config.adapt.targets), "bias": "none",
               "fan_in_fan_out": False, "use_rslora": False, "inference_mode": True,
               "base_model_name_or_path": (config.init.from_run or ""), "modules_to_save": None}
    partial = out / f".{WEIGHTS_FILE}.partial"  # weights first, renamed into place, then the config that names them
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(partial), metadata={"format": "pt"})
    os.replace(partial, out / WEIGHTS_FILE)
    write_text_atomic(out / CONFIG, json.dumps(adapter, indent=1))
    return out


def import_peft(adapter_dir: str | Path, base: str | Path, workdir: str | Path,
                overrides: list[str] = ()) -> RunConfig:
    """Write the run directory `workdir`: a LoRA fine-tune (at step 0) of the run `base` holding the PEFT adapter
    `adapter_dir`; it serves, scores, merges, exports and trains further like any LoRA run."""
    from research.interop.rundir import refuse_existing, write_run_dir
    from research.train.setup import base_params, setup

    adapter_dir, base, workdir = Path(adapter_dir), Path(base), Path(workdir)
    refuse_existing(workdir)
    adapt, tensors = _read_adapter(adapter_dir)
    if not (base / "config.json").is_file():
        raise ConfigError(f"--base {str(base)!r}: no config.json there. Fix: point at the run of the adapter's base "
                          "model (python -m research.interop import HF_DIR --out RUN writes one).")
    config = dataclasses.replace(RunConfig.read(base / "config.json"), adapt=adapt,
                                 init=InitConfig(from_run=str(base.absolute())))
    config = apply_overrides(config, list(overrides))
    check_exportable(config.model)
    run_setup = setup(config, jax.devices()[:1])
    initial = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), run_setup.abstract.params)
    rank = adapt.lora_rank
    for target in adapt.targets:  # PEFT's A [r, in], B [out, r] -> ours a [*in, r], b [r, *out], per layer
        sub = initial["blocks"][SUBLAYER[target]]
        a, b = sub[f"lora_a_{target}"], sub[f"lora_b_{target}"]  # [layers, *in, r], [layers, r, *out]
        fan_in, fan_out = a[0].size // rank, b[0].size // rank
        for i in range(a.shape[0]):
            key = f"{PREFIX}{i}.{MODULES[target]}"
            a[i] = _take(tensors, f"{key}.lora_A.weight", (rank, fan_in)).T.reshape(a.shape[1:])
            b[i] = _take(tensors, f"{key}.lora_B.weight", (fan_out, rank)).T.reshape(b.shape[1:])
    if tensors:
        raise ConfigError(f"{adapter_dir / WEIGHTS_FILE}: tensors of no target of this model: {sorted(tensors)[:3]}. "
                          "Fix: import an adapter trained on a model of the base's architecture and depth.")
    params, identity = base_params(config, run_setup, jax.devices()[:1], initial)
    write_run_dir(workdir, config, jax.device_get(params), Tokenizer.load(base / "tokenizer.json"),
                  {"base": identity, "imported_from": str(adapter_dir.absolute())})
    return config


def _read_adapter(adapter_dir: Path) -> tuple[AdaptConfig, dict]:
    """(our LoRA config, PEFT tensors by name) of a PEFT adapter directory; options ours cannot compute raise."""
    where = f"{adapter_dir / CONFIG}"
    if not (adapter_dir / CONFIG).is_file() or not (adapter_dir / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{str(adapter_dir)!r}: no {CONFIG} with {WEIGHTS_FILE}. Fix: point at a directory PEFT's "
                          "save_pretrained wrote (safe_serialization=True).")
    peft = json.loads((adapter_dir / CONFIG).read_text())
    unsupported = {"peft_type": peft.get("peft_type") != "LORA", "fan_in_fan_out": peft.get("fan_in_fan_out"),
                   "bias": peft.get("bias", "none") != "none", "rank_pattern": peft.get("rank_pattern"),
                   "alpha_pattern": peft.get("alpha_pattern"), "layers_to_transform": peft.get("layers_to_transform"),
                   "modules_to_save": peft.get("modules_to_save"), "use_dora": peft.get("use_dora")}
    for name, bad in unsupported.items():
        if bad:
            raise ConfigError(f"{where}: {name}={peft.get(name)!r} is not plain LoRA on every layer, which is what "
                              "research.model computes. Fix: export the adapter with PEFT's defaults for this option.")
    modules = peft.get("target_modules") or []
    modules = [modules] if isinstance(modules, str) else modules
    names = {path.split(".")[1]: t for t, path in MODULES.items()}
    unknown = [m for m in modules if m not in names]
    if unknown or not modules:
        raise ConfigError(f"{where}: target_modules={modules!r} names no LLaMA projection research.model adapts "
                          f"({unknown or 'none'}). Fix: use target_modules among {sorted(names)}.")
    rank, alpha = int(peft["r"]), float(peft["lora_alpha"])
    if peft.get("use_rslora"):  # alpha / sqrt(r) == alpha' / r
        alpha *= math.sqrt(rank)
    targets = sorted({names[m] for m in modules}, key=list(WEIGHTS).index)
    adapt = AdaptConfig(method="lora", lora_rank=rank, lora_alpha=alpha, lora_targets=",".join(targets),
                        lora_dropout=float(peft.get("lora_dropout") or 0.0))
    tensors = {k.replace(".default.", "."): np.asarray(v, np.float32)
               for k, v in _read_file(adapter_dir / WEIGHTS_FILE).items()}
    return adapt, tensors


def _take(tensors: dict, name: str, shape: tuple) -> np.ndarray:
    if name not in tensors:
        raise ConfigError(f"adapter tensor {name!r} is missing. Fix: import an adapter for a model of the base's "
                          "architecture and depth (every layer's target modules).")
    value = tensors.pop(name)
    if value.shape != shape:
        raise ConfigError(f"adapter tensor {name!r} has shape {value.shape}, the base needs {shape}. Fix: import an "
                          "adapter trained on the base's model.")
    return value
