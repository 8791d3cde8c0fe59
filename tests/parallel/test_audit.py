"""The sharding audit: per-device bytes from shapes alone, and a failure when too much is replicated."""

from __future__ import annotations

import math

from research.config_files import load_config
from research.model.flops import count_params
from research.parallel.audit import audit, main, replicated_share


def test_fsdp_audit_shards_everything_eightfold():
    config = load_config("experiments/configs/tiny.py", ["parallel.fsdp=8"])
    placements = audit(config, devices=8)
    total = sum(p.bytes_total for p in placements)
    assert total == 4 * count_params(config.model).total  # float32, every parameter listed once
    assert replicated_share(placements) == 0.0
    assert sum(p.bytes_per_device for p in placements) == total // 8


def test_cluster_layout_from_a_laptop():
    """LLaMA-2 7B over 256 devices: answered from shapes, nothing allocated."""
    config = load_config("llama2-7b", ["parallel.fsdp=32", "parallel.tensor=8"])
    placements = audit(config, devices=256)
    per_device = sum(p.bytes_per_device for p in placements)
    assert math.isclose(per_device, 4 * 6_738_415_616 / 256, rel_tol=0.01)


def test_audit_fails_when_too_much_is_replicated(capsys):
    # tensor=2 leaves the 259-entry byte vocabulary (not divisible by 2) and the norms replicated: about 4%.
    assert main(["experiments/configs/tiny.py", "--devices", "8", "--set", "parallel.tensor=2",
                 "--max-replicated", "0.01"]) == 1
    assert "FAIL" in capsys.readouterr().err
    assert main(["experiments/configs/tiny.py", "--devices", "8", "--set", "parallel.tensor=2"]) == 0
