"""Reading a Hugging Face config.json and the checks every architecture shares (RoPE variant, tensor lookup).

The config is parsed by transformers' own AutoConfig (so defaults and legacy keys such as `rope_scaling` resolve
exactly as transformers resolves them), but only after the model type is known to be one we can map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from research.config import ConfigError

LLAMA_FAMILY = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
GPT2 = {"gpt2": "GPT2LMHeadModel"}
SUPPORTED = {**LLAMA_FAMILY, **GPT2}


def fail(field: str, value: Any, problem: str, fix: str) -> None:
    raise ConfigError(f"{field}={value!r}: {problem}. Fix: {fix}.")


def transformers_module():
    """Import transformers lazily: only the [hf] extra installs it, and its absence should say so."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("research.interop needs `transformers` (and torch, safetensors). Fix: pip install -e "
                          "'.[hf]'.") from None
    return transformers


def load_hf_config(path: str | Path):
    """transformers' config object for the checkpoint at `path`, refusing unsupported model types before parsing."""
    path = Path(path)
    file = path / "config.json"
    if not file.is_file():
        raise ConfigError(f"path={str(path)!r}: no config.json. Fix: point at a local Hugging Face checkpoint "
                          "directory (config.json + safetensors); hub names are not fetched.")
    model_type = json.loads(file.read_text()).get("model_type")
    if model_type not in SUPPORTED:
        fail("model_type", model_type, f"{file} is not an architecture research.interop maps",
             f"use a checkpoint of one of {sorted(SUPPORTED)}")
    return transformers_module().AutoConfig.from_pretrained(str(path), local_files_only=True)


def rope_base(hf) -> float:
    """RoPE's base (rope_theta) for plain RoPE; any scaled or partial variant is refused by name."""
    params = getattr(hf, "rope_parameters", None)
    if params is None:  # transformers 4 layout
        scaling = getattr(hf, "rope_scaling", None)
        if scaling:
            fail("rope_scaling", scaling, "scaled RoPE is not implemented in research.model",
                 "use a checkpoint with plain RoPE (rope_scaling null), e.g. LLaMA 2 / Mistral / Qwen2")
        params = {"rope_type": "default", "rope_theta": getattr(hf, "rope_theta", 10000.0)}
    if "rope_theta" not in params and len({json.dumps(v, sort_keys=True) for v in params.values()}) == 1:
        params = next(iter(params.values()))  # per-layer-type parameters, all equal
    if "rope_theta" not in params:
        fail("rope_parameters", params, "differs between layer types", "use a checkpoint with one RoPE setting")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        fail("rope_scaling", params, f"RoPE type {kind!r} (scaled RoPE) is not implemented in research.model",
             "use a checkpoint with plain RoPE (rope_type 'default'), e.g. LLaMA 2 / Mistral / Qwen2")
    partial = params.get("partial_rotary_factor", getattr(hf, "partial_rotary_factor", 1.0))
    if partial != 1.0:
        fail("partial_rotary_factor", partial, "research.model rotates every feature of a head",
             "use a checkpoint with partial_rotary_factor 1.0")
    return float(params["rope_theta"])


class Tensors:
    """A checkpoint's tensors, taken one by one with shape checks; what is never taken is reported as unmapped."""

    def __init__(self, tensors: dict[str, np.ndarray], prefix: str, where: str):
        self._tensors, self._prefix, self._where = tensors, prefix, where
        self._taken: set[str] = set()

    def has(self, name: str, prefix: bool = True) -> bool:
        return (self._prefix if prefix else "") + name in self._tensors

    def take(self, name: str, shape: tuple[int, ...], prefix: bool = True) -> np.ndarray:
        """The float32 tensor `name` (after the prefix unless prefix=False), which must have `shape`."""
        key = (self._prefix if prefix else "") + name
        if key not in self._tensors:
            raise ConfigError(f"tensor {key!r} is missing from {self._where}, though its config.json implies it. "
                              "Fix: check that the weights and config.json belong to the same model.")
        value = self._tensors[key]
        if tuple(value.shape) != tuple(shape):
            raise ConfigError(f"tensor {key!r} in {self._where} has shape {tuple(value.shape)}, but config.json "
                              f"implies {tuple(shape)}. Fix: check that the weights and config.json match.")
        self._taken.add(key)
        return np.asarray(value, dtype=np.float32)

    def check_all_used(self, ignorable: tuple[str, ...]) -> None:
        """Refuse weights we did not map (they would change the logits) unless they are known to be redundant."""
        left = sorted(k for k in self._tensors if k not in self._taken and not any(s in k for s in ignorable))
        if left:
            raise ConfigError(f"{self._where} holds tensors with no place in a research.model Transformer: "
                              f"{left[:5]}{' ...' if len(left) > 5 else ''}. Fix: these weights mean the checkpoint "
                              "is a variant this importer does not represent; use a supported architecture.")
