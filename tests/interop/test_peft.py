"""PEFT LoRA adapters in and out, against the `peft` library itself: an adapter peft made on a random LLaMA imports
as a LoRA run with the logits of peft's model, and a LoRA run's export loads into peft with ours."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from research.config import ConfigError
from research.interop.__main__ import main
from research.model import Transformer
from research.train.setup import restore_state

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
tf = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def base_run(hf_dir, tmp_path_factory, small_corpus):
    root, _, _ = hf_dir
    workdir = tmp_path_factory.mktemp("peft") / "base"
    assert main(["import", str(root), "--out", str(workdir), "--set", f"data.source={small_corpus}",
                 "--set", "data.seq_len=16"]) == 0
    return workdir


def _peft_model(root, adapter_dir=None, **lora):
    """peft's model over a fresh load of the random LLaMA: a new adapter (B randomised, or it would be a no-op) or
    the one saved at `adapter_dir`."""
    hf = tf.AutoModelForCausalLM.from_pretrained(root).eval()
    if adapter_dir is not None:
        return peft.PeftModel.from_pretrained(hf, str(adapter_dir)).eval()
    model = peft.get_peft_model(hf, peft.LoraConfig(**lora))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.3)
    return model.eval()


def _ours(workdir, ids):
    state, _, config = restore_state(workdir)
    return np.asarray(jax.jit(Transformer(config.model, adapt=config.adapt).apply)({"params": state.params}, ids))


def _theirs(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.float().numpy()


@pytest.mark.parametrize("rslora", [False, True])
def test_a_peft_adapter_imports_with_its_logits(hf_dir, base_run, tmp_path, rslora):
    root, _, hf_tok = hf_dir
    made = _peft_model(root, r=4, lora_alpha=8, use_rslora=rslora,
                       target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"])
    made.save_pretrained(tmp_path / "adapter")
    assert main(["peft-import", str(tmp_path / "adapter"), "--base", str(base_run), "--out",
                 str(tmp_path / "lora")]) == 0
    config = json.loads((tmp_path / "lora" / "config.json").read_text())
    assert config["adapt"]["lora_targets"] == "q,v,o,mlp_in,mlp_gate,mlp_out" and config["adapt"]["lora_rank"] == 4
    vocab = hf_tok.get_vocab_size()
    ids = np.random.default_rng(0).integers(0, vocab, size=(2, 12))
    theirs, ours = _theirs(made, ids), _ours(tmp_path / "lora", ids)[..., :vocab]
    base = _ours(base_run, ids)[..., :vocab]
    assert np.abs(theirs - base).max() > 1e-2  # the adapter changes the logits ...
    assert np.abs(ours - theirs).max() <= 1e-4  # ... and ours change them as peft's do


def test_a_lora_run_exports_to_peft_with_its_logits(hf_dir, base_run, tmp_path, small_corpus):
    """Fine-tune LoRA on q,k and mlp_in (B moves off zero), export, and load the adapter with peft."""
    from research.train import run
    from research.train.setup import RunConfig

    root, _, hf_tok = hf_dir
    config = RunConfig.read(base_run / "config.json").override(
        f"init.from_run={base_run}", "adapt.method=lora", "adapt.lora_rank=2", "adapt.lora_alpha=6",
        "adapt.lora_targets=q,k,mlp_in", "optim.lr=3e-2", "optim.warmup_steps=0", "train.steps=3",
        "train.batch_size=8", "train.eval_batches=1")
    run(config, tmp_path / "tuned", progress=False)
    assert main(["peft-export", "--workdir", str(tmp_path / "tuned"), "--out", str(tmp_path / "exported")]) == 0
    loaded = _peft_model(root, tmp_path / "exported")
    ids = np.random.default_rng(2).integers(0, hf_tok.get_vocab_size(), size=(2, 12))
    ours = _ours(tmp_path / "tuned", ids)[..., :hf_tok.get_vocab_size()]
    assert np.abs(_theirs(loaded, ids) - ours).max() <= 1e-4
    assert np.abs(ours - _ours(base_run, ids)[..., :hf_tok.get_vocab_size()]).max() > 1e-4  # the adapter trained


def test_adapters_ours_cannot_compute_are_refused(hf_dir, base_run, tmp_path):
    root, _, _ = hf_dir
    _peft_model(root, r=2, target_modules=["q_proj"], bias="lora_only").save_pretrained(tmp_path / "bias")
    with pytest.raises(ConfigError, match=r"bias='lora_only' is not plain LoRA"):
        from research.interop.peft import import_peft

        import_peft(tmp_path / "bias", base_run, tmp_path / "out")
    _peft_model(root, r=2, target_modules=["embed_tokens"]).save_pretrained(tmp_path / "embed")
    with pytest.raises(ConfigError, match=r"target_modules=.*embed_tokens.* names no LLaMA projection"):
        import_peft(tmp_path / "embed", base_run, tmp_path / "out2")
