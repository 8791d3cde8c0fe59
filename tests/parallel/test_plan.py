"""The memory planner: exact parameter / optimiser bytes per device, compiled activations, clear early errors."""

from __future__ import annotations

import dataclasses

import jax
import pytest

from research.config import ConfigError, ParallelConfig
from research.train.plan import check_layout, main, parse_bytes, plan
from tests.parallel.test_layouts import needs_8
from tests.parallel.test_pipeline import PP_LAYOUTS, _config, _expected_bytes_per_device


def test_parse_bytes():
    assert parse_bytes("80GB") == 80 * 10**9
    assert parse_bytes("80GiB") == 80 * 2**30
    assert parse_bytes("1.5e9") == 1_500_000_000
    with pytest.raises(ConfigError, match="--device-memory=lots"):
        parse_bytes("lots")


def test_bad_layouts_fail_before_compiling():
    with pytest.raises(ConfigError, match="train.batch_size=16"):  # 4 rows per microbatch over 8 shards
        check_layout(_config(ParallelConfig(data=1, fsdp=8, pipeline=2, microbatches=2)), 16)
    with pytest.raises(ConfigError, match="parallel.microbatches=2"):  # circular: fewer microbatches than stages
        check_layout(_config(ParallelConfig(data=1, pipeline=4, microbatches=2, pipeline_schedule="circular",
                                            pipeline_repeats=2)), 4)
    assert main(["--config", "tiny-does-not-exist", "--devices", "8"]) == 2


@needs_8
def test_plan_counts_the_sharded_bytes(capsys, tmp_path):
    config = _config(PP_LAYOUTS["pp4_tp2_circular"])  # the step test_pipeline compiled: shared in one session
    p = plan(config, jax.devices()[:8])
    assert p.params == _expected_bytes_per_device(config, pipeline=4, tensor=2)
    assert p.optimizer == pytest.approx(2 * p.params, rel=0.01)  # Adam's two moments
    assert p.batch == 2 * 4 * 16 * 16  # inputs and targets, int32, every row on every device (data x fsdp = 1)
    assert p.activations > 0 and p.total == p.params + p.optimizer + p.batch + p.activations
    overrides = [f"--set=parallel.{k}={v}" for k, v in dataclasses.asdict(config.parallel).items()]
    config_file = tmp_path / "pp_config.py"
    config_file.write_text("from research.config import ParallelConfig\nfrom tests.parallel.test_pipeline import "
                           "_config\n\n\ndef config():\n    return _config(ParallelConfig())\n")
    config_file = str(config_file)
    assert main(["--config", config_file, "--devices", "8", *overrides, "--device-memory", "1GB"]) == 0
    assert "fits     yes" in capsys.readouterr().out
    assert main(["--config", config_file, "--devices", "8", *overrides, "--device-memory", "1KB"]) == 1
    assert "fits     NO" in capsys.readouterr().out
