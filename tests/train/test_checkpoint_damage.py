"""Damaged checkpoints: every kind of damage is caught by the checksum (or the read), the step is moved aside with a
warning, and the run resumes from the newest good checkpoint to bitwise the uninterrupted result."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from research.config import ConfigError
from research.train import run
from research.train.checkpoint import SEAL, Checkpointer
from research.train.setup import restore_state

from .helpers import assert_trees_bitwise_equal, final_params, tiny_run


def _largest_file(step_dir: Path) -> Path:
    return max((p for p in step_dir.rglob("*") if p.is_file() and p.name != SEAL), key=lambda p: p.stat().st_size)


def _truncate(step_dir: Path) -> None:
    path = _largest_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(step_dir: Path) -> None:  # same size, a few bytes changed: only a checksum can tell
    path = _largest_file(step_dir)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": _truncate,
    "flipped": _flip,
    "deleted": lambda d: _largest_file(d).unlink(),
    "emptied": lambda d: _largest_file(d).write_bytes(b""),
    "metadata-deleted": lambda d: next(p for p in sorted(d.rglob("*")) if p.is_file() and p.name != SEAL).unlink(),
    "unsealed": lambda d: (d / SEAL).unlink(),  # killed after orbax finished the step, before it was sealed
}


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    config = tiny_run(small_corpus)
    workdir = tmp_path_factory.mktemp("reference")
    summary = run(config, workdir, progress=False)
    return config, final_params(workdir), summary


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory):
    """A run stopped at step 10: checkpoints 4, 8 and 10, sealed."""
    workdir = tmp_path_factory.mktemp("interrupted")
    run(reference[0], workdir, progress=False, stop_after_steps=10)
    return workdir


def test_every_kind_of_damage_is_seen(interrupted, tmp_path):
    assert Checkpointer(interrupted / "checkpoints", 3).problem(10) is None
    for kind, damage in DAMAGE.items():
        copy = tmp_path / kind
        shutil.copytree(interrupted, copy)
        damage(copy / "checkpoints" / "10")
        checkpoints = Checkpointer(copy / "checkpoints", 3)
        assert checkpoints.problem(10) is not None and checkpoints.latest_verified() == 8, kind


@pytest.mark.parametrize("kind", ["flipped", "unsealed"])  # silent corruption; killed before sealing
def test_a_damaged_latest_checkpoint_is_moved_aside_and_the_previous_one_resumes(reference, interrupted, tmp_path,
                                                                                  kind, capsys):
    config, ref_params, ref_summary = reference
    shutil.copytree(interrupted, tmp_path, dirs_exist_ok=True)
    DAMAGE[kind](tmp_path / "checkpoints" / "10")
    summary = run(config, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert "checkpoint step 10" in err and "rejected" in err, err
    assert (tmp_path / "rejected" / "step-10").is_dir()  # moved aside, never deleted
    assert summary.status == "complete"  # not "diverged": a bad restore is no divergence
    assert_trees_bitwise_equal(final_params(tmp_path), ref_params)
    assert summary.final_eval_loss == ref_summary.final_eval_loss


def test_with_no_good_checkpoint_left_the_run_says_so_and_starts_fresh(reference, interrupted, tmp_path, capsys):
    config, ref_params, _ = reference
    shutil.copytree(interrupted, tmp_path, dirs_exist_ok=True)
    for step_dir in (tmp_path / "checkpoints").iterdir():
        if step_dir.name.isdigit():
            _flip(step_dir)
    summary = run(config, tmp_path, progress=False)
    assert "no usable checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == ["step-10", "step-4", "step-8"]
    assert summary.status == "complete"
    assert_trees_bitwise_equal(final_params(tmp_path), ref_params)


def test_readers_skip_damaged_steps_and_name_them(reference, tmp_path):
    config, _, _ = reference
    run(config, tmp_path, progress=False, stop_after_steps=8)
    _flip(tmp_path / "checkpoints" / "8")
    _, meta, _ = restore_state(tmp_path)  # generate / score / export: the newest verified step, nothing moved
    assert meta["step"] == 4 and (tmp_path / "checkpoints" / "8").is_dir()
    with pytest.raises(ConfigError, match="step 8 .* damaged: .*content changed"):
        restore_state(tmp_path, step=8)


def test_pruning_never_deletes_the_last_verified_checkpoint(tmp_path):
    state, directory = {"w": np.arange(6, dtype=np.float32)}, tmp_path / "checkpoints"
    first = Checkpointer(directory, keep=1)
    first.save(1, state, {"step": 1})
    first.close()
    second = Checkpointer(directory, keep=1)
    second.save(2, {"w": state["w"] + 1}, {"step": 2})
    second._manager.wait_until_finished()  # orbax finished step 2; the process dies before sealing it
    third = Checkpointer(directory, keep=1)
    assert third.steps() == [2, 1] and third.latest_verified() == 1
    step, restored, meta = third.restore_latest({"w": state["w"]}, fingerprint=None)
    assert step == 1 and meta["step"] == 1 and np.array_equal(restored["w"], state["w"])
    assert (tmp_path / "rejected" / "step-2").is_dir()
    third.save(3, state, {"step": 3})
    third.close()  # step 3 sealed: now step 1 may go
    assert Checkpointer(directory, keep=1).steps() == [3]


def test_a_writer_that_lost_the_directory_commits_nothing_and_leaves_nothing(tmp_path):
    """The fence is checked at orbax's commit (the rename into place), in its writer thread: a save in flight when the
    directory is lost ends in the fence's error with its temporary directory removed; another writer's temporary
    directory for the same step is its own and stays."""
    state, directory, owned = {"w": np.arange(6, dtype=np.float32)}, tmp_path / "checkpoints", [True]

    class Lost(Exception):
        pass

    def may_write():
        if not owned[0]:
            raise Lost("taken over")

    lost = Checkpointer(directory, keep=2, may_write=may_write)
    lost.save(1, state, {"step": 1})
    lost.close()
    lost = Checkpointer(directory, keep=2, may_write=may_write)
    other = directory / "2.orbax-checkpoint-tmp-0123456789abcdef"  # the new owner's write in flight
    other.mkdir()
    owned[0] = False
    lost.save(2, state, {"step": 2})
    with pytest.raises(Lost):
        lost._manager.wait_until_finished()
    lost.abandon()
    assert sorted(p.name for p in directory.iterdir()) == ["1", other.name]
    assert lost.sealed_steps() == [1]


def test_a_full_disk_keeps_the_last_verified_checkpoint_and_says_what_the_next_needs(reference, tmp_path,
                                                                                      monkeypatch):
    config, ref_params, _ = reference
    original = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step >= 8:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory))
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(ConfigError, match=r"no space left .* step 8 .*\(step 4\) is kept; the next one needs about "
                                          r"\d+\.\d+ MB\. Fix: free"):  # orbax's file layout varies the size
        run(config, tmp_path, progress=False)
    assert Checkpointer(tmp_path / "checkpoints", 3).latest_verified() == 4
    monkeypatch.setattr(ocp.CheckpointManager, "save", original)  # space freed: the same command resumes
    assert run(config, tmp_path, progress=False).status == "complete"
    assert_trees_bitwise_equal(final_params(tmp_path), ref_params)
