"""`import_hf(path) -> (ModelConfig, params)` and `export_hf(...)`: Hugging Face checkpoints <-> our parameters.

Both directions are exact re-layouts of float32 weights (no arithmetic), so logits agree to float rounding;
tests/interop checks that against transformers' own forward pass.
"""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.config import ConfigError, ModelConfig, RunConfig
from research.data import Tokenizer
from research.interop import gpt2, llama
from research.interop.hf_config import LLAMA_FAMILY, SUPPORTED, fail, load_hf_config
from research.interop.hf_tokenizer import write_hf_tokenizer
from research.interop.safetensors_io import read_tensors, write_tensors
from research.model import Transformer
from research.model.lora import merge_lora
from research.train.setup import restore_state

ARCHS = {"llama": llama, "gpt2": gpt2}


def import_hf(path: str | Path) -> tuple[ModelConfig, dict]:
    """(ModelConfig, float32 parameter tree) of the local HF checkpoint at `path` (config.json + safetensors)."""
    path = Path(path)
    hf = load_hf_config(path)
    family = llama if hf.model_type in LLAMA_FAMILY else gpt2
    cfg = family.config_from_hf(hf)  # refuses unrepresentable options before any weight is read
    params = family.params_from_hf(cfg, read_tensors(path), str(path))
    check_params(cfg, params)
    return cfg, jax.tree.map(jnp.asarray, params)


def check_params(cfg: ModelConfig, params: dict) -> None:
    """Raise unless `params` has exactly the tree and shapes research.model's Transformer(cfg) creates."""

    tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    expected = nn.meta.unbox(jax.eval_shape(lambda t: Transformer(cfg).init(jax.random.key(0), t), tokens)["params"])
    want = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    have = {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise ConfigError(f"parameters do not match model config {cfg}: differing (path, shape) {diff}. Fix: pass "
                          "the parameters of a model built from this config.")


def default_arch(cfg: ModelConfig) -> str:
    """gpt2 for learned positions, otherwise llama (whose checks then name what does not fit)."""
    return "gpt2" if cfg.positions == "learned" else "llama"


def export_hf(source: ModelConfig | RunConfig | str | Path, params: dict | None, out_dir: str | Path, *,
              arch: str | None = None, step: int | None = None) -> Path:
    """Write a checkpoint directory that transformers' AutoModelForCausalLM loads as-is (float32 safetensors).

    `source` is a ModelConfig / RunConfig with `params`, or a run's workdir (params None: restore checkpoint `step`,
    default the latest); a workdir's tokenizer.json is exported too. Unrepresentable options raise before writing.
    """
    tokenizer = None
    if isinstance(source, str | Path):

        workdir = Path(source)
        if params is None:
            state, _, run_config = restore_state(workdir, step)
            params = state.params
        else:
            run_config = RunConfig.read(workdir / "config.json")
        cfg = run_config.model
        if run_config.adapt.method == "lora":  # the plain model with the updates folded in: what HF can load
            params = merge_lora(nn.meta.unbox(params), run_config.adapt)
        elif run_config.adapt.method != "full":
            fail("adapt.method", run_config.adapt.method, "a Hugging Face checkpoint of this architecture has no "
                 "adapter layers", "export the base run (init.from_run), or fine-tune with adapt.method=lora or full")
        if (workdir / "tokenizer.json").is_file():
            tokenizer = Tokenizer.load(workdir / "tokenizer.json")
    else:
        cfg = source.model if isinstance(source, RunConfig) else source
        if params is None:
            fail("params", None, "exporting a config needs its parameters", "pass params, or a run's workdir")
    arch = arch or default_arch(cfg)
    if arch not in ARCHS:
        fail("--arch", arch, "is not a Hugging Face architecture research.interop writes", f"use one of {list(ARCHS)}")
    specials = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer is not None:
        specials = {f"{k}_token_id": getattr(tokenizer, f"{k}_id") for k in ("bos", "eos", "pad")}
    hf_config = ARCHS[arch].config_to_hf(cfg, specials)  # raises on anything unrepresentable, before writing
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), nn.meta.unbox(params))
    check_params(cfg, params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_config.architectures = [SUPPORTED[hf_config.model_type]]
    hf_config.save_pretrained(str(out))
    write_tensors(out, ARCHS[arch].params_to_hf(cfg, params))
    if tokenizer is not None:

        write_hf_tokenizer(tokenizer, out)
    return out
