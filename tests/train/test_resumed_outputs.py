"""A resumed run writes the same files as an uninterrupted one (wall-time fields aside), whatever the logging window;
a signal during evaluation stops within a batch; a rerun of a finished run changes no file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal

import pytest

from research.config import ConfigError
from research.data.pipeline import LMData
from research.train import loop as loop_module
from research.train import run
from research.train.metrics import read_jsonl
from research.train.signals import RunInterrupted

from .helpers import assert_trees_bitwise_equal, final_params, tiny_run

TIMING = {"tokens_per_s", "mfu", "wall_time_s", "train_time_s"}  # the fields that measure time, not the run


def _config(small_corpus):
    # log windows of 5 steps that align neither with checkpoints (every 4) nor with evaluations (every 6)
    return tiny_run(small_corpus, log_every=5, checkpoint_every=4, eval_every=6, eval_batches=6)


def _outputs(workdir) -> tuple[list, dict]:
    metrics = [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(workdir / "metrics.jsonl")]
    summary = json.loads((workdir / "summary.json").read_text())
    return metrics, {k: v for k, v in summary.items() if k not in TIMING}


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run(_config(small_corpus), workdir, progress=False)
    return workdir, _outputs(workdir), final_params(workdir)


@pytest.mark.parametrize("stops", [(3,), (7, 13), (12, 17, 23)])
def test_resumed_runs_write_the_uninterrupted_files(small_corpus, reference, tmp_path, stops):
    config = _config(small_corpus)
    for stop in stops:
        assert run(config, tmp_path, progress=False, stop_after_steps=stop).status == "interrupted"
    assert run(config, tmp_path, progress=False).status == "complete"
    assert _outputs(tmp_path) == reference[1]
    assert_trees_bitwise_equal(final_params(tmp_path), reference[2])


def test_a_signal_during_evaluation_stops_within_a_batch(small_corpus, reference, tmp_path, monkeypatch):
    """SIGTERM at the 2nd of 6 evaluation batches of step 6: the run stops there with a checkpoint; the resume
    redoes that evaluation, and the files equal the uninterrupted run's."""
    calls = []
    original = LMData.val_batch

    def val_batch(self, k, *args, **kwargs):
        calls.append(k)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, k, *args, **kwargs)

    monkeypatch.setattr(LMData, "val_batch", val_batch)
    summary = run(_config(small_corpus), tmp_path, progress=False)
    assert summary.status == "interrupted" and summary.step == 6 and len(calls) == 2
    monkeypatch.setattr(LMData, "val_batch", original)
    run(_config(small_corpus), tmp_path, progress=False)
    assert _outputs(tmp_path) == reference[1]


def test_a_signal_before_training_stops_at_once(small_corpus, tmp_path, monkeypatch):
    """While data loads or steps compile, a signal ends the run immediately, with nothing trained or saved."""
    original = loop_module.load_data

    def load_data(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "load_data", load_data)
    with pytest.raises(RunInterrupted):
        run(_config(small_corpus), tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "summary.json").exists()


def test_rerunning_a_finished_run_changes_no_file(reference, small_corpus, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(reference[0], workdir)

    def snapshot():
        return {str(p.relative_to(workdir)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
                for p in sorted(workdir.rglob("*")) if p.is_file()}

    before = snapshot()
    summary = run(_config(small_corpus), workdir, progress=False)
    assert summary.status == "complete" and snapshot() == before


def test_eval_batches_beyond_the_held_out_split_are_refused(small_corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"train.eval_batches=100000: \d+ batches .* cover"):
        run(_config(small_corpus).override("train.eval_batches=100000"), tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists()


def test_a_signal_during_compilation_stops_at_once(small_corpus, tmp_path, monkeypatch):
    """XLA compiles in C++, where Python cannot run a signal handler; compiling in a thread while the main thread
    waits keeps the run interruptible. A compile that would take a minute is cut off within about a second."""
    import threading
    import time

    from research.train import state as state_module
    from research.train import step as step_module

    threads, done = [], threading.Event()

    def slow_compile(lowered, platform, *args):  # stands in for XLA, which does not return to Python for long
        threads.append(threading.current_thread())
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while "compiling"
        done.wait(60)
        raise RuntimeError("abandoned")  # a failed build leaves nothing in the cache for later tests

    for module in (step_module, state_module):
        monkeypatch.setattr(module, "compile_lowered", slow_compile)
    config = _config(small_corpus).override("model.d_model=40")  # a shape no other test compiles
    started = time.perf_counter()
    try:
        with pytest.raises(RunInterrupted):
            run(config, tmp_path, progress=False)
        assert time.perf_counter() - started < 10
        assert threads and threads[0] is not threading.main_thread()  # the main thread only waited, interruptibly
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=10)
