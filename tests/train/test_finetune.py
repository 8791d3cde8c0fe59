"""Full fine-tuning (ADAPT-1): a run starts from a base run's checkpoint with its own optimiser state and schedule,
records the base, resumes exactly, and refuses a base of another shape."""

from __future__ import annotations

import json
import random

import jax
import numpy as np
import pytest

from research.config import ConfigError
from research.data import load_data
from research.data.chat import LOSS
from research.model import Transformer
from research.train import run
from research.train.setup import base_params, setup

from .helpers import assert_trees_bitwise_equal, final_params, tiny_run


@pytest.fixture(scope="module")
def base(small_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("base")
    summary = run(tiny_run(small_corpus), workdir, progress=False)
    return workdir, summary


def _finetune(small_corpus, base_dir, **train):
    config = tiny_run(small_corpus, steps=8, **train).override(f"init.from_run={base_dir}", "optim.lr=1e-3",
                                                             "optim.warmup_steps=0")
    return config


def test_the_base_weights_arrive_bitwise_in_this_runs_layout(small_corpus, base):
    base_dir, base_summary = base
    config = _finetune(small_corpus, base_dir)
    run_setup = setup(config)
    params, identity = base_params(config, run_setup, jax.devices(), run_setup.init_state().params)
    assert_trees_bitwise_equal(jax.device_get(params), final_params(base_dir))
    assert identity["step"] == base_summary.step == 24 and len(identity["params_hash"]) == 32


def test_a_finetune_starts_from_its_base_records_it_and_resumes_exactly(small_corpus, base, tmp_path):
    base_dir, base_summary = base
    config = _finetune(small_corpus, base_dir)
    assert config.run_id() != tiny_run(small_corpus, steps=8).run_id()  # the base is part of what the run is
    whole = run(config, tmp_path / "whole", progress=False)
    first = json.loads((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[0])
    fresh = run(tiny_run(small_corpus, steps=2), tmp_path / "fresh", progress=False)
    assert first["loss"] < fresh.final_train_loss - 0.5  # it starts where the base ended, not from scratch
    assert whole.base["step"] == 24 and whole.base["run"] == str(base_dir.absolute())
    assert json.loads((tmp_path / "whole" / "summary.json").read_text())["base"] == whole.base
    run(config, tmp_path / "split", progress=False, stop_after_steps=3)
    resumed = run(config, tmp_path / "split", progress=False)
    assert resumed.base == whole.base and resumed.final_eval_loss == whole.final_eval_loss
    assert_trees_bitwise_equal(final_params(tmp_path / "split"), final_params(tmp_path / "whole"))


def test_a_base_of_another_shape_or_no_base_is_refused(small_corpus, base, tmp_path):
    base_dir, _ = base
    wider = _finetune(small_corpus, base_dir).override("model.d_model=48")
    with pytest.raises(ConfigError, match=r"init.from_run=.*the base's parameter \[.*\] has shape \(.*32.*\), "
                                          r"this run's model needs \(.*48.*\)"):
        run(wider, tmp_path / "wider", progress=False)
    with pytest.raises(ConfigError, match="init.from_run=.*no config.json there"):
        run(_finetune(small_corpus, tmp_path / "nowhere"), tmp_path / "orphan", progress=False)
    with pytest.raises(ConfigError, match="init.step=3: needs init.from_run"):
        tiny_run(small_corpus).override("init.step=3")


def test_sft_on_chat_data_trains_the_base_on_the_replies_only(small_corpus, base, tmp_path):
    """Supervised fine-tuning: chat data (data.format=chat, packed whole with document masking) from a base run. The
    first logged loss is the base model's mean cross-entropy over batch 0's reply tokens, computed here in NumPy
    from the base's logits (each example attended alone) and the template's flags."""
    base_dir, _ = base
    rng = random.Random(1)
    words = "the a cat dog sat ran on mat".split()
    say = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps({"prompt": say(rng.randint(1, 3)), "response": say(rng.randint(1, 4))}) + "\n"
                              for _ in range(40)))
    config = _finetune(small_corpus, base_dir, log_every=1, eval_batches=1).override(
        f"data.source={source}", "data.format=chat", "data.document_mask=true", "data.seq_len=96",
        "model.max_seq_len=96", "model.dropout=0")
    summary = run(config, tmp_path / "sft", progress=False)
    assert summary.status == "complete" and (tmp_path / "sft" / "chat_template.json").is_file()
    first = json.loads((tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    data = load_data(config.data)
    batch = data.train_batch(0, config.batch_size, config.seed)
    windows = np.asarray(data.train_tokens).reshape(-1, config.data.seq_len + 1)  # [n, L + 1] examples packed whole
    window_flags = np.asarray(data.train_flags).reshape(windows.shape)
    rows = [next(w for w in range(len(windows)) if np.array_equal(windows[w, :-1], tokens)) for tokens in
            batch["inputs"]]  # which window each row of the shuffled batch is
    targets, trained = windows[rows, 1:], (window_flags[rows, 1:] & LOSS).astype(bool)
    logits = Transformer(config.model).apply({"params": final_params(base_dir)}, batch["inputs"], batch["positions"],
                                             segments=batch["segments"])
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0][trained].mean()
    np.testing.assert_allclose(first, expected, rtol=1e-4)
