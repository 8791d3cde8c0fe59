"""RunConfig: validation errors that name field, value and fix; JSON round trip; stable ids; dotted overrides."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from research.config import ConfigError, DataConfig, ModelConfig, ParallelConfig, RunConfig, TrainConfig
from research.parallel import make_mesh

IMPOSSIBLE = [  # (overrides, field named in the error)
    (["model.n_heads=3"], "model.n_heads"),  # heads do not divide d_model
    (["model.n_kv_heads=3"], "model.n_kv_heads"),  # kv heads do not divide heads
    (["model.positions=rope", "model.head_dim=7"], "model.head_dim"),  # RoPE needs an even head_dim
    (["model.norm=rms"], "model.norm"),  # unknown choice
    (["model.dropout=1.5"], "model.dropout"),
    (["model.vocab_size=100"], "model.vocab_size"),  # smaller than the tokenizer
    (["data.seq_len=512"], "data.seq_len"),  # longer than max_seq_len
    (["data.val_fraction=0.9"], "data.val_fraction"),
    (["data.tokenizer=bpe", "data.bpe_vocab_size=100"], "data.bpe_vocab_size"),
    (["train.tokens=1000"], "train.steps"),  # both steps and tokens
    (["train.accum_steps=3"], "train.accum_steps"),  # does not divide the batch
    (["train.batch_size=8", "train.batch_tokens=1024"], "train.batch_size"),  # both batch forms given
    (["train.batch_tokens=1000"], "train.batch_tokens"),  # not whole sequences
    (["optim.lr=-1"], "optim.lr"),
    (["optim.lr=inf"], "optim.lr"),  # every number must be finite
    (["adapt.lora_rank=0"], "adapt.lora_rank"),
    (["adapt.lora_targets=q,z"], "adapt.lora_targets"),  # names no projection
    (["adapt.adapter_size=0"], "adapt.adapter_size"),
    (["adapt.adapter_places=attn,ffn"], "adapt.adapter_places"),  # names no sublayer
    (["adapt.method=adapters"], "adapt.method"),
    (["init.step=3"], "init.step"),  # a step of no base
    (["optim.schedule=cosine_decay"], "optim.schedule"),
    (["parallel.tensor=3"], "parallel.tensor"),  # does not divide heads
    (["parallel.pipeline=3"], "parallel.pipeline"),  # does not divide layers
    (["model.sliding_window=16", "model.causal=false"], "model.sliding_window"),
]


@pytest.mark.parametrize("overrides,field", IMPOSSIBLE)
def test_impossible_configs_fail_with_field_value_and_fix(overrides, field):
    with pytest.raises(ConfigError) as err:
        RunConfig().override(*overrides)
    message = str(err.value)
    assert field in message and "Fix:" in message, message


def test_mesh_mismatch_names_the_axes_and_device_count():
    devices = jax.devices()
    with pytest.raises(ConfigError, match=r"parallel.*Fix:"):
        make_mesh(ParallelConfig(data=len(devices) + 1), devices)
    with pytest.raises(ConfigError, match="Fix:"):
        make_mesh(ParallelConfig(fsdp=3), devices[:2])


def test_missing_data_file_fails_before_training(tmp_path):
    from research.train import run

    config = RunConfig(data=DataConfig(source=str(tmp_path / "missing.txt")))
    with pytest.raises(Exception, match="data.source") as err:
        run(config, tmp_path / "run", progress=False)
    assert "Fix" in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'model.d_model'"):
        RunConfig().override("model.d_modle=3")
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        RunConfig().override("optim.lrr=3")


def test_overrides_parse_types():
    c = RunConfig().override("model.d_model=128", "optim.lr=3e-3", "model.tie_embeddings=false",
                             "model.n_kv_heads=2", "model.sliding_window=null", "train.steps=none",
                             "train.tokens=2e6", "seed=5")
    assert c.model.d_model == 128 and c.optim.lr == 3e-3 and c.model.tie_embeddings is False
    assert c.model.n_kv_heads == 2 and c.train.steps is None and c.train.tokens == 2_000_000 and c.seed == 5
    assert c.num_steps == -(-2_000_000 // (32 * 256))
    with pytest.raises(ConfigError, match="not a valid int"):
        RunConfig().override("model.d_model=12.5")


def test_json_round_trip_and_stable_id():
    c = RunConfig(model=ModelConfig(d_model=64, n_heads=2, n_kv_heads=1, sliding_window=8),
                  train=TrainConfig(tokens=10**6, batch_tokens=8192))
    again = RunConfig.from_json(c.to_json())
    assert again == c and again.run_id() == c.run_id()
    assert c.run_id() != c.override("seed=1").run_id()
    # The id is a hash of canonical JSON: independent of process, hash seed and dict order.
    code = ("from research.config import *; import json, sys; "
            "print(RunConfig.from_dict(json.loads(sys.stdin.read())).run_id())")
    shuffled = json.dumps(dict(reversed(list(c.to_dict().items()))))
    out = subprocess.run([sys.executable, "-c", code], input=shuffled, capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == c.run_id()


def test_run_ids_are_pinned():
    """Ids of existing runs never change: a rename or a new field that would change them must version the hash."""
    assert RunConfig().run_id() == "9fe037a1f474"
    assert RunConfig(model=ModelConfig(n_kv_heads=2, d_ff=100, head_dim=32)).run_id() == "31cf6f6f43f1"
    assert RunConfig().override("model.kernels=reference").run_id() != RunConfig().run_id()  # set, it counts


def test_renamed_keys_fail_naming_the_new_key_but_old_files_load():
    with pytest.raises(ConfigError, match="renamed to 'parallel.pipeline_schedule'"):
        RunConfig().override("parallel.schedule=circular")
    old = json.loads(RunConfig().to_json())
    del old["parallel"]["pipeline_schedule"]
    old["parallel"]["schedule"] = "circular"  # as config.json files written before the rename hold it
    assert RunConfig.from_dict(old).parallel.pipeline_schedule == "circular"


def test_resolved_spells_out_derived_sizes_once():
    m = ModelConfig(d_model=96, n_heads=4, activation="swiglu")
    r = m.resolved()
    assert (r.n_kv_heads, r.head_dim, r.d_ff) == (4, 24, 256) and r.resolved() is r
    assert ModelConfig(d_model=96, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=50).resolved().d_ff == 50
    assert RunConfig(model=m).to_dict()["model"]["d_ff"] is None  # the config keeps what was given


def test_derived_quantities():
    c = RunConfig(data=DataConfig(seq_len=128), train=TrainConfig(tokens=100_000, batch_tokens=4096))
    assert c.batch_size == 32 and c.tokens_per_step == 4096 and c.num_steps == 25 and c.num_tokens == 102_400
    assert ModelConfig(d_model=96, activation="swiglu").resolved().d_ff == 256  # 8/3 d rounded up to 64
    assert ModelConfig(d_model=96, activation="gelu").resolved().d_ff == 384


def test_cli_reports_config_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "research.train", "--config", "experiments/configs/tiny.py",
                          "--workdir", str(tmp_path), "--set", "model.n_layer=3"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "did you mean 'model.n_layers'" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written for an invalid config"


def test_one_cli_lists_and_dispatches_the_single_run_tools():
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "research", "--help"], capture_output=True, text=True)
    assert listed.returncode == 0 and all(c in listed.stdout for c in ("train", "bench", "plan", "audit", "hf"))
    unknown = subprocess.run([sys.executable, "-m", "research", "trian"], capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown command 'trian'. Fix:")
    assert "Traceback" not in unknown.stderr
    train = subprocess.run([sys.executable, "-m", "research", "train", "--help"], capture_output=True, text=True)
    assert train.returncode == 0 and "--workdir" in train.stdout
