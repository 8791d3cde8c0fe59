"""`import_run(hf_dir, workdir)`: an HF checkpoint as a scalelab run directory that the normal tools continue;
`merge_run(lora_run, workdir)`: a LoRA fine-tune with its updates folded in, as a plain run directory.

The directory holds config.json (a RunConfig with the imported model), tokenizer.json (converted from the HF one)
and a step-0 orbax checkpoint: the imported parameters plus a fresh AdamW state, i.e. exactly the state a new run
would start from had it been initialised with these weights. `python -m research.train --config RUN --workdir RUN`
then fine-tunes it (the checkpoint carries the data fingerprint of the config's data), and restore_state,
scoring and generation read it like any run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp

from research.config import (
    AdaptConfig,
    ConfigError,
    DataConfig,
    InitConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
)
from research.data import Tokenizer, load_data
from research.files import write_json_atomic
from research.interop.convert import check_params, import_hf
from research.interop.hf_tokenizer import tokenizer_from_hf
from research.model.lora import merge_lora
from research.train.checkpoint import Checkpointer
from research.train.setup import TrainState, restore_state, setup, stored

# Fine-tuning defaults (a pretrained model wants a far smaller step than training from scratch); --set changes them.
FINETUNE_OPTIM = OptimConfig(lr=1e-4, schedule="cosine", warmup_steps=10, weight_decay=0.0)
TRAINING_ONLY_MODEL_FIELDS = ("dropout", "compute_dtype", "remat")  # the only model.* overrides that keep the logits


def grow_vocab(cfg: ModelConfig, params: dict, vocab_size: int) -> tuple[ModelConfig, dict]:
    """Append rows for new token ids, set to the mean embedding (as transformers' resize_token_embeddings does).

    Logits of the existing ids are unchanged; the new ids get the logit of the average token.
    """
    extra = vocab_size - cfg.vocab_size
    params = dict(params)
    emb = params["embedding"]  # [vocab, d]
    params["embedding"] = jnp.concatenate([emb, jnp.repeat(emb.mean(0, keepdims=True), extra, 0)], 0)
    if "lm_head" in params:  # [d, vocab]
        head = params["lm_head"]
        params["lm_head"] = jnp.concatenate([head, jnp.repeat(head.mean(1, keepdims=True), extra, 1)], 1)
    return dataclasses.replace(cfg, vocab_size=vocab_size), params


def import_config(model: ModelConfig, tokenizer, overrides: list[str]) -> RunConfig:
    """The RunConfig of an imported model: its tokenizer's data config, fine-tuning defaults, then `overrides`."""
    bad = [o for o in overrides if o.startswith("model.") and o.split("=")[0][6:] not in TRAINING_ONLY_MODEL_FIELDS]
    if bad:
        raise ConfigError(f"override {bad[0]!r}: the imported weights fix the architecture. Fix: override only "
                          f"model.{{{','.join(TRAINING_ONLY_MODEL_FIELDS)}}}, data.*, optim.*, train.*, seed.")
    data = DataConfig(tokenizer=tokenizer.kind, seq_len=min(256, model.max_seq_len),
                      **({"bpe_vocab_size": tokenizer.vocab_size} if tokenizer.kind == "bpe" else {}))
    config = RunConfig(model=model, data=data, optim=FINETUNE_OPTIM, train=TrainConfig(steps=100))
    return apply_overrides(config, list(overrides))


def import_run(hf_dir: str | Path, workdir: str | Path, overrides: list[str] = ()) -> tuple[RunConfig, list[str]]:
    """Write the run directory `workdir` for the HF checkpoint `hf_dir`; returns its config and notes on specials."""

    hf_dir, workdir = Path(hf_dir), Path(workdir)
    refuse_existing(workdir)
    if not (hf_dir / "tokenizer.json").is_file():
        raise ConfigError(f"path={str(hf_dir)!r}: no tokenizer.json, and a run directory needs the tokenizer its "
                          "weights were trained with. Fix: add the model's fast-tokenizer tokenizer.json, or load "
                          "the weights alone with research.interop.import_hf.")
    model, params = import_hf(hf_dir)
    tokenizer, notes = tokenizer_from_hf(hf_dir)
    if tokenizer.vocab_size > model.vocab_size:
        notes.append(f"model.vocab_size {model.vocab_size} -> {tokenizer.vocab_size}: new rows = mean embedding")
        model, params = grow_vocab(model, params, tokenizer.vocab_size)
    config = import_config(model, tokenizer, list(overrides))
    check_params(config.model, params)
    write_run_dir(workdir, config, params, tokenizer, {"imported_from": str(hf_dir.absolute()), "tokenizer": notes})
    return config, notes


def merge_run(source: str | Path, workdir: str | Path, step: int | None = None) -> RunConfig:
    """Write the run directory `workdir` holding a LoRA fine-tune's weights with its updates folded in: a plain
    model (adapt.method=full, no base) that serves, exports and fine-tunes further like any run."""
    source, workdir = Path(source), Path(workdir)
    refuse_existing(workdir)
    state, meta, config = restore_state(source, step)
    if config.adapt.method != "lora":
        raise ConfigError(f"adapt.method={config.adapt.method!r} in {source}: only LoRA updates fold into the weights. "
                          "Fix: merge a run trained with adapt.method=lora (an adapter run serves as it is).")
    params = jax.device_get(merge_lora(state.params, config.adapt))
    plain = dataclasses.replace(config, adapt=AdaptConfig(), init=InitConfig())
    write_run_dir(workdir, plain, params, Tokenizer.load(source / "tokenizer.json"),
                  {"merged_from": {"run": str(source.absolute()), "step": meta["step"], "base": meta.get("base")}})
    return plain


def write_run_dir(workdir: Path, config: RunConfig, params, tokenizer, provenance: dict) -> None:
    """A run directory whose step-0 checkpoint holds `params` and a fresh optimiser state: config.json (written
    last: its presence marks a complete directory), tokenizer.json, and `provenance` in the checkpoint's metadata.
    A fine-tune that stores its base separately keeps only its own leaves; `provenance` then records the "base"."""
    refuse_existing(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(workdir / "tokenizer.json")
    data = load_data(config.data, workdir)  # the fingerprint the training loop checks on resume
    run_setup = setup(config, jax.devices()[:1])
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=run_setup.tx.init(params))
    if jax.tree.structure(run_setup.abstract) != jax.tree.structure(state):
        raise ConfigError("the written train state does not have the training loop's structure. Fix: report this "
                          "as a bug in research.interop.rundir.")
    meta = {"step": 0, "data_fingerprint": f"{data.fingerprint}:seed={config.seed}", "run_id": config.run_id(),
            "wall_time_s": 0.0, "train_time_s": 0.0, **provenance}
    checkpoints = Checkpointer(workdir / "checkpoints", config.train.keep_checkpoints)
    checkpoints.save(0, stored(config, state), meta)
    checkpoints.close()
    write_json_atomic(workdir / "config.json", config.to_dict())


def refuse_existing(workdir: Path) -> None:
    if (workdir / "config.json").exists() or (workdir / "checkpoints").exists():
        raise ConfigError(f"--out {str(workdir)!r} already holds a run. Fix: write into a new directory.")
