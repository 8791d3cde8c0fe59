"""HF checkpoint -> run directory -> fine-tune with the training loop -> export: the CLI path end to end."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from research.config import ConfigError, RunConfig
from research.data.tokenizer import BOS, EOS, PAD, Tokenizer
from research.interop.__main__ import main
from research.model import Transformer
from research.train import run
from research.train.setup import restore_state

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
TEXT = "the king and the queen of the sea, the fool and the ghost of the storm"


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.float().numpy()


def test_import_finetune_export_roundtrip(hf_dir, small_corpus, tmp_path, capsys):
    root, model, hf_tok = hf_dir
    workdir, out = tmp_path / "run", tmp_path / "hf_out"
    assert main(["import", str(root), "--out", str(workdir), "--set", f"data.source={small_corpus}",
                 "--set", "data.seq_len=16", "--set", "train.steps=2", "--set", "train.batch_size=8",
                 "--set", "train.eval_batches=1"]) == 0
    assert "fine-tune: python -m research.train" in capsys.readouterr().out

    # The run's tokenizer: HF's <s> and </s> renamed (same ids), a new PAD appended; text encodes as HF encodes it.
    tok = Tokenizer.load(workdir / "tokenizer.json")
    vocab = hf_tok.get_vocab_size()
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, vocab)
    assert tok.encode(TEXT) == hf_tok.encode(TEXT, add_special_tokens=False).ids
    assert [tok._tok.id_to_token(i) for i in (1, 2, vocab)] == [BOS, EOS, PAD]

    # restore_state reads the step-0 checkpoint; logits of the HF ids match transformers, the PAD row is extra.
    state, meta, config = restore_state(workdir)
    assert int(state.step) == 0 and config.model.vocab_size == vocab + 1 and meta["step"] == 0
    ids = np.random.default_rng(0).integers(0, vocab, size=(2, 10))
    ours = np.asarray(jax.jit(Transformer(config.model).apply)({"params": state.params}, ids))
    assert np.abs(ours[..., :vocab] - _hf_logits(model, ids)).max() <= 1e-4

    # The training loop resumes the imported checkpoint (same data fingerprint) and fine-tunes it.
    summary = run(config, workdir, progress=False)
    assert summary.status == "complete" and summary.step == 2 and np.isfinite(summary.final_train_loss)

    # Export the fine-tuned run; transformers loads it as-is and agrees with our logits, vocabulary included.
    assert main(["export", "--workdir", str(workdir), "--out", str(out)]) == 0
    tuned, _, _ = restore_state(workdir)
    exported = tf.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = np.random.default_rng(1).integers(0, vocab + 1, size=(2, 10))
    ours = np.asarray(jax.jit(Transformer(config.model).apply)({"params": tuned.params}, ids))
    assert np.abs(ours - _hf_logits(exported, ids)).max() <= 1e-4
    assert np.abs(ours[..., :vocab] - _hf_logits(model, ids % vocab)).max() > 1e-3  # fine-tuning changed it
    hf_tok_out = tf.AutoTokenizer.from_pretrained(out)
    assert hf_tok_out.encode(TEXT) == tok.encode(TEXT)
    assert (exported.config.bos_token_id, exported.config.eos_token_id, exported.config.pad_token_id) == (1, 2, vocab)


def test_import_refuses_architecture_overrides_and_missing_tokenizer(hf_dir, tmp_path, capsys):
    root, _, _ = hf_dir
    assert main(["import", str(root), "--out", str(tmp_path / "a"), "--set", "model.rope_base=500"]) == 2
    assert "model.rope_base=500" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((root / name).read_bytes())
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        from research.interop import import_run

        import_run(bare, tmp_path / "b")


def test_an_imported_model_is_a_base_for_init_from_run(hf_dir, small_corpus, tmp_path):
    """init.from_run takes an import's run directory: the fine-tune adopts its tokenizer and starts from its weights."""
    root, model, _ = hf_dir
    imported = tmp_path / "imported"
    assert main(["import", str(root), "--out", str(imported), "--set", f"data.source={small_corpus}",
                 "--set", "data.seq_len=16", "--set", "train.batch_size=8", "--set", "train.eval_batches=1"]) == 0
    config = RunConfig.read(imported / "config.json").override(f"init.from_run={imported}", "train.steps=2")
    summary = run(config, tmp_path / "tuned", progress=False)
    assert summary.status == "complete" and summary.base["step"] == 0
    assert (tmp_path / "tuned" / "tokenizer.json").read_text() == (imported / "tokenizer.json").read_text()
