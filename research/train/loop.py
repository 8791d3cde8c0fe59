"""`run(config, workdir) -> RunSummary`: the one entry point for a single training run.

Validates everything before any expensive work, resumes from the newest verified checkpoint, trains with periodic
eval, logging and asynchronous checkpoints, stops cleanly on SIGTERM/SIGINT and on a non-finite loss. A resumed run
writes the same files as an uninterrupted one, wall-time fields aside.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from research.config import ConfigError, RunConfig
from research.data import load_data
from research.files import write_json_atomic, write_text_atomic
from research.model.flops import mfu_flops_per_token, run_flops
from research.parallel import activate, batch_sharding
from research.parallel.mesh import check_batch_split
from research.train.checkpoint import Checkpointer
from research.train.host_memory import keep_freed_host_memory
from research.train.metrics import MetricsLog, Progress, RunSummary
from research.train.mfu import peak_flops
from research.train.optimizer import learning_rate, trainable_mask
from research.train.setup import base_params, initial_soft_prompt, setup, stored, teacher_params, with_base
from research.train.signals import StopSignals, fenced
from research.train.step import call_inputs, steps_per_call

jax.config.update("jax_threefry_partitionable", True)  # initial values independent of the mesh


def _prepare_workdir(config: RunConfig, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    if path.exists():
        existing = RunConfig.read(path)
        if existing.run_id() != config.run_id():
            raise ConfigError(
                f"workdir {str(workdir)!r} holds run {existing.run_id()}, not this config's run {config.run_id()}. "
                f"Fix: use another --workdir, or resume it with --config {path}.")
    if not path.exists() or RunConfig.read(path) != config:
        write_json_atomic(path, config.to_dict())  # a resumed run may change only its parallel layout


def run(config: RunConfig, workdir: str | Path, *, devices: list | None = None, progress: bool = True,
        stop_after_steps: int | None = None, fence: Callable[[], None] | None = None) -> RunSummary:
    """Train `config` in `workdir`, resuming whatever is there. `stop_after_steps` ends early (as if signalled).
    `fence()` runs before every write into `workdir` once training starts and raises if this process may no longer
    write there (a sweep worker whose claim was taken over)."""
    with StopSignals() as signals:  # every process checks the fence at the same points (signals.fenced)
        return _run(config, Path(workdir), devices, progress, stop_after_steps, fence or (lambda: None), signals)


def _run(config: RunConfig, workdir: Path, devices, progress: bool, stop_after_steps, may_write, signals) -> RunSummary:
    fence = functools.partial(fenced, may_write)  # agreed across processes, at the same points on each
    started = time.perf_counter()
    keep_freed_host_memory()
    devices = jax.devices() if devices is None else devices
    # layout errors before anything is read or compiled
    check_batch_split(config, config.parallel.mesh_shape(len(devices)), jax.process_count())
    if jax.process_index() == 0:
        _prepare_workdir(config, workdir)
    finished = _finished_summary(config, workdir)
    if finished is not None:  # a rerun of a finished run changes no file
        return finished
    if config.init.from_run is not None:
        _adopt_tokenizer(Path(config.init.from_run), workdir)
    data = load_data(config.data, workdir)
    if config.distill.teacher is not None:
        _adopt_tokenizer(Path(config.distill.teacher), workdir, "teacher")
    if data.tokenizer.vocab_size > config.model.vocab_size:
        raise ConfigError(f"model.vocab_size={config.model.vocab_size} is smaller than the tokenizer's "
                          f"{data.tokenizer.vocab_size}. Fix: set model.vocab_size >= {data.tokenizer.vocab_size}.")
    rows = config.batch_size // config.train.accum_steps
    one_pass = -(-data.num_val_windows // rows)
    if config.train.eval_batches > one_pass:
        raise ConfigError(
            f"train.eval_batches={config.train.eval_batches}: {one_pass} batches of {rows} windows already cover "
            f"the {data.num_val_windows} held-out windows; more would repeat them. Fix: set train.eval_batches <= "
            f"{one_pass}, or hold out more text with data.val_fraction.")
    fingerprint = f"{data.fingerprint}:seed={config.seed}"
    total = config.num_steps
    run_setup = setup(config, devices)
    mesh, abstract = run_setup.mesh, run_setup.abstract

    checkpoints = Checkpointer(workdir / "checkpoints", config.train.keep_checkpoints, may_write)
    try:
        previous = {"wall_time_s": 0.0, "train_time_s": 0.0}
        had_checkpoints = bool(checkpoints.steps())
        restored = checkpoints.restore_latest(stored(config, abstract), fingerprint)
        meta = {}
        if restored is not None:
            _, state, meta = restored
            state = with_base(config, run_setup, devices, state, meta)
            previous.update({k: meta.get(k, 0.0) for k in previous})
        else:
            if had_checkpoints:
                print(f"warning: no usable checkpoint left in {workdir / 'checkpoints'}; starting from step 0.",
                      file=sys.stderr, flush=True)
            state = run_setup.init_state()
            if config.init.from_run is not None:  # fine-tuning: the base's weights, this run's optimiser state
                params, base = base_params(config, run_setup, devices, state.params)
                state, meta = state.replace(params=params), {"base": base}
            state = state.replace(params=initial_soft_prompt(config, state.params, run_setup.shardings.params))
        step = int(jax.device_get(state.step))
        log = MetricsLog(workdir / "metrics.jsonl", step, enabled=jax.process_index() == 0)

        pad_id = data.tokenizer.pad_id
        seq_len, global_batch = config.data.seq_len, config.batch_size
        batch_spec = batch_sharding(mesh)
        max_steps = steps_per_call(config)
        train_step = run_setup.train_step(pad_id, max_steps)
        teacher, teacher_args = None, ()
        if config.distill.teacher is not None:  # the recorded teacher on resume, checked against its hash
            params, teacher = teacher_params(config, devices, meta.get("teacher"))
            teacher_args = (params,)
        eval_step = run_setup.eval_step(pad_id)

        def global_batch_at(batch: dict, spec=batch_spec) -> dict:
            return {k: jax.make_array_from_process_local_data(spec, np.asarray(v, np.int32)) for k, v in batch.items()}

        def evaluate(params) -> float | None:
            """Mean held-out loss, or None if a signal arrived (checked after every batch)."""
            nll = count = 0.0
            with activate(mesh):
                for k in range(config.train.eval_batches):
                    if signals.stop_requested():
                        return None
                    batch = data.val_batch(k, rows, jax.process_index(), jax.process_count())
                    n, c = eval_step(params, global_batch_at(batch))
                    nll, count = nll + float(n), count + float(c)
            return nll / max(count, 1.0)

        schedule = learning_rate(config.optim, total)
        seed = np.int32(config.seed)
        peak = peak_flops(devices, config.model.compute_dtype)
        flops_per_token_mfu = mfu_flops_per_token(config.model, seq_len)
        bar = Progress(total, enabled=progress and jax.process_index() == 0)
        train_time = 0.0
        # the open logging window (steps since the last log line) is part of each checkpoint, so a resumed run logs
        # the same means as an uninterrupted one
        window = meta.get("log_window", {"losses": [], "time": 0.0})
        interval_losses, interval_time = list(window["losses"]), float(window["time"])
        last_loss = last_eval = None
        status, diverged_at = "complete", None
        tokens_per_s = mfu = 0.0

        def checkpoint_meta(at_step: int, pending: dict | None = None) -> dict:
            return {"step": at_step, "data_fingerprint": fingerprint, "run_id": config.run_id(),
                    "wall_time_s": previous["wall_time_s"] + time.perf_counter() - started,
                    "train_time_s": previous["train_time_s"] + train_time,
                    "log_window": {"losses": interval_losses, "time": interval_time},
                    "pending_record": pending,  # a log line whose evaluation a signal cut short
                    "base": meta.get("base"),  # the run a fine-tune started from
                    "teacher": teacher}  # the run distilled from

        def write_record(record: dict) -> None:
            fence()
            log.write(record)
            if last_loss is not None:
                extra = f"  eval {last_eval:.4f}" if last_eval is not None else ""
                bar.update(record["step"], last_loss, tokens_per_s, 1.0 / max(train_time / max(step, 1), 1e-9), extra)

        every = (config.train.log_every, config.train.eval_every, config.train.checkpoint_every)

        def call_length(at: int) -> int:
            """Steps in the call starting at step `at`: at most max_steps, ending at the next log, eval or checkpoint
            step (and at stop_after_steps), so everything between calls happens where it would between single steps."""
            ends = [total, *((at // k + 1) * k for k in every)]
            if stop_after_steps is not None:
                ends.append(max(stop_after_steps, at + 1))
            return min(max_steps, min(ends) - at)

        def inputs_at(at: int, n: int) -> tuple:
            """The batches and learning rates of steps at .. at + n - 1, as the compiled step takes them."""
            batches = [data.train_batch(at + i, global_batch, config.seed, jax.process_index(), jax.process_count())
                       for i in range(n)]
            host, *rest = call_inputs(batches, schedule(np.arange(at, at + n)), max_steps)
            return global_batch_at(host, batch_sharding(mesh, stacked=max_steps > 1)), *rest

        signals.training()
        if meta.get("pending_record") is not None:  # the interrupted evaluation of the restored step, redone
            last_eval = evaluate(state.params)
            if last_eval is not None:
                write_record(meta["pending_record"] | {"eval_loss": last_eval})
            else:
                status = "interrupted"  # cut short again: the checkpoint still holds the pending line
        n = call_length(step) if step < total and not signals.stop_requested() else 0
        inputs = inputs_at(step, n) if n else None
        while n:
            t0 = time.perf_counter()
            with activate(mesh):
                state, metrics = train_step(state, *inputs, seed, *teacher_args)
            next_n = call_length(step + n) if step + n < total else 0
            if next_n:  # the next batches are a pure function of their steps: build them while this call runs
                inputs = inputs_at(step + n, next_n)
            losses, norms = (np.atleast_1d(v)[:n].tolist() for v in jax.device_get((metrics["loss"],
                                                                                     metrics["grad_norm"])))
            elapsed = time.perf_counter() - t0
            train_time += elapsed
            checkpoints.seal_finished()
            bad = next((i for i in range(n) if not (math.isfinite(losses[i]) and math.isfinite(norms[i]))), None)
            if bad is not None:
                step += bad + 1
                status, diverged_at = "diverged", step
                break
            step, n = step + n, next_n
            interval_time += elapsed
            interval_losses += losses
            is_last = step == total
            record = pending = None
            if step % config.train.log_every == 0 or is_last:
                tokens_per_s = len(interval_losses) * config.tokens_per_step / interval_time
                mfu = tokens_per_s * flops_per_token_mfu / peak
                last_loss = float(np.mean(interval_losses))
                record = {"step": step, "tokens": step * config.tokens_per_step, "loss": last_loss,
                          "lr": float(schedule(step - 1)), "grad_norm": norms[-1], "tokens_per_s": tokens_per_s,
                          "mfu": mfu}
                interval_time, interval_losses = 0.0, []
            if step % config.train.eval_every == 0 or is_last:
                record = record or {"step": step, "tokens": step * config.tokens_per_step}
                last_eval = evaluate(state.params)
                if last_eval is None:
                    record, pending = None, record
                else:
                    record |= {"eval_loss": last_eval}
            if record is not None:
                write_record(record)
            stopping = signals.stop_requested() or (stop_after_steps is not None and step >= stop_after_steps)
            if step % config.train.checkpoint_every == 0 or is_last or stopping:
                fence()
                checkpoints.save(step, stored(config, state), checkpoint_meta(step, pending))
            if stopping and not (is_last and pending is None):
                status = "interrupted"
                break
        bar.close()
        fence()
        checkpoints.close()
    except BaseException:  # an error, a lost claim, a signal before training: no half-written checkpoint
        checkpoints.abandon()
        raise
    last_good = checkpoints.latest_verified()

    def last_logged(key: str, current):  # a run resumed at its end reports what it logged before
        return current if current else next((r[key] for r in reversed(log.records) if r.get(key) is not None), current)

    last_loss, last_eval = last_logged("loss", last_loss), last_logged("eval_loss", last_eval)
    tokens_per_s, mfu = last_logged("tokens_per_s", tokens_per_s), last_logged("mfu", mfu)
    tokens = step * config.tokens_per_step
    summary = RunSummary(
        run_id=config.run_id(), config_hash=hashlib.sha256(config.to_json(None).encode()).hexdigest(),
        status=status, step=step, steps=total, epochs=tokens / max(data.num_train_tokens, 1),
        **run_flops(config.model, seq_len, tokens, config.adapt, teacher and run_setup.teacher[0].cfg),
        final_train_loss=last_loss, final_eval_loss=last_eval,
        wall_time_s=previous["wall_time_s"] + time.perf_counter() - started,
        train_time_s=previous["train_time_s"] + train_time, tokens_per_s=tokens_per_s, mfu=mfu, seed=config.seed,
        devices=len(devices), mesh=dict(mesh.shape), diverged_at_step=diverged_at,
        last_good_checkpoint=last_good if status == "diverged" else None, base=meta.get("base"), teacher=teacher,
        trainable_params=sum(x.size for x, t in zip(jax.tree.leaves(abstract.params),
                                                     jax.tree.leaves(trainable_mask(config.adapt, abstract.params)))
                             if t),
        config=config.to_dict())
    fence()  # on every process: the fence agrees across them
    if jax.process_index() == 0:
        write_json_atomic(workdir / "summary.json", summary.to_dict())
    return summary


def _adopt_tokenizer(other: Path, workdir: Path, role: str = "base") -> None:
    """A fine-tune reads text with its base's tokenizer (an imported HF model's own, a BPE the base trained); a
    distilled student must read it as its teacher does (called once the run's own tokenizer is in place)."""
    theirs, ours = other / "tokenizer.json", workdir / "tokenizer.json"
    if not theirs.is_file() or jax.process_index() != 0:
        return
    if not ours.exists():
        write_text_atomic(ours, theirs.read_text())
    elif ours.read_text() != theirs.read_text():
        raise ConfigError(f"{ours} differs from the {role}'s {theirs}. Fix: run in a fresh --workdir with the "
                          f"{role}'s data config, so the run reads text as its {role} does.")


def _finished_summary(config: RunConfig, workdir: Path) -> RunSummary | None:
    """The summary of this very run if it already finished (complete or diverged), else None."""
    try:
        done = json.loads((workdir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if done.get("run_id") != config.run_id() or done.get("status") not in ("complete", "diverged"):
        return None
    return RunSummary.from_dict(done)


def read_config(workdir: str | Path) -> RunConfig:
    return RunConfig.read(Path(workdir) / "config.json")


__all__ = ["RunSummary", "read_config", "run"]
