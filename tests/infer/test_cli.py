"""The CLIs on a run directory (config.json, tokenizer.json and one checkpoint of a randomly initialised model):
they read the run's own config and tokenizer, and bad input exits 2 with a clear message."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import generate as generate_cli
from research import score as score_cli
from research.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from research.data import ByteTokenizer

STEP = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_corpus):
    """A run whose checkpoint at step 3 holds small random parameters (std 0.02: near-uniform logits)."""
    from research.model import Transformer
    from research.parallel import make_mesh
    from research.train.checkpoint import Checkpointer
    from research.train.optimizer import make_optimizer
    from research.train.state import state_shardings

    workdir = tmp_path_factory.mktemp("infer-run")
    config = RunConfig(model=ModelConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_seq_len=32),
                       data=DataConfig(source=small_corpus, seq_len=16, val_fraction=0.1),
                       train=TrainConfig(steps=STEP, batch_size=2))
    (workdir / "config.json").write_text(config.to_json())
    ByteTokenizer().save(workdir / "tokenizer.json")
    mesh = make_mesh(config.parallel, jax.devices()[:1])
    abstract, _ = state_shardings(config, Transformer(config.model), make_optimizer(config.optim), mesh)
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda a: jnp.asarray(rng.normal(0.0, 0.02, a.shape), a.dtype), abstract)
    checkpoints = Checkpointer(workdir / "checkpoints", keep=2)
    checkpoints.save(STEP, state, {"step": STEP})
    checkpoints.close()
    return str(workdir)


def test_generate_cli(run_dir, capsys):
    assert generate_cli.main(["--workdir", run_dir, "--prompt", "the king", "--max-new-tokens", "6",
                              "--temperature", "0.8", "--top-k", "50", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("the king")


def test_score_cli_text_file_and_split(run_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the queen loves the sea.\n")
    assert score_cli.main(["--workdir", run_dir, "--text-file", str(text)]) == 0
    out = capsys.readouterr().out
    assert "25 tokens" in out
    nll = float(out.split("nll ")[1].split()[0])
    assert abs(nll - math.log(259)) < 0.1  # an untrained model is close to uniform over the byte vocabulary
    assert score_cli.main(["--workdir", run_dir, "--split", "val", "--max-tokens", "200"]) == 0
    assert "held-out split: 200 tokens" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--step", "7", "--prompt", "hi"], "step=7: no checkpoint at that step"),
    (["--prompt", ""], "an empty prompt"),
    (["--prompt", "x" * 40], "length=40 tokens: fills the model's whole context model.max_seq_len=32"),
    (["--prompt", "hi", "--top-p", "2"], "top_p=2.0"),
])
def test_generate_cli_errors(run_dir, capsys, argv, match):
    assert generate_cli.main(["--workdir", run_dir] + argv) == 2
    assert match in capsys.readouterr().err


def test_score_cli_errors(run_dir, tmp_path, capsys):
    assert score_cli.main(["--workdir", run_dir, "--text-file", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert score_cli.main(["--workdir", run_dir, "--step", "9", "--split", "val"]) == 2
    assert "step=9" in capsys.readouterr().err
