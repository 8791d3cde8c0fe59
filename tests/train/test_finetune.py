"""Full fine-tuning (ADAPT-1): a run starts from a base run's checkpoint with its own optimiser state and schedule,
records the base, resumes exactly, and refuses a base of another shape."""

from __future__ import annotations

import json

import jax
import pytest

from research.config import ConfigError
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
