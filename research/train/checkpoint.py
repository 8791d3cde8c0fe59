"""Verified, layout-independent checkpoints with orbax: the train state plus JSON metadata (step, data fingerprint).

Orbax writes each step to a temporary directory and renames it when complete. Once a step is complete, a checksum
of every file in it (`checksums.json`, written last and atomically) seals it; restores verify the seal, and a step
that is unsealed, fails to verify or fails to read is moved aside to `rejected/` (never deleted) with a warning, and
the newest good step is used instead. Old steps are pruned only after a newer one is sealed, so the last verified
checkpoint is never deleted. Restore targets carry the current shardings: any checkpoint restores onto any mesh.

Each Checkpointer writes into temporary directories of its own (`<step>.orbax-checkpoint-tmp-<tag>`) and checks
`may_write()` before renaming one into place, so a writer that lost the directory (a sweep worker paused past its
claim) never mixes its files into the new owner's, and removes what it had started.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint._src.path import atomicity

from research.config import ConfigError
from research.files import write_json_atomic

SEAL = "checksums.json"


class Checkpointer:
    """`may_write()` raises if this process may no longer write into `directory`; it is checked (by the primary
    process, in orbax's writer thread) before each step is renamed into place."""

    def __init__(self, directory: Path, keep: int, may_write: Callable[[], None] = lambda: None):
        self.directory, self.keep = Path(directory).absolute(), keep
        self.primary = jax.process_index() == 0
        self._tag = _shared_tag()
        options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=True, create=True,
                                               cleanup_tmp_directories=True,
                                               temporary_path_class=_fenced_rename(self._tag, may_write))
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._unsealed: list[int] = []  # saved by this process, waiting for orbax to finish them
        # what pruning reads: kept in memory, so every process of a multi-process run prunes the same steps
        self._sealed = self.sealed_steps()

    # ---- writing ----------------------------------------------------------------------------------------------
    def save(self, step: int, state, meta: dict) -> None:
        """Start an asynchronous save; training continues while it is written (and sealed when it is done)."""
        self._finish()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        try:
            self._manager.save(step, args=args, force=True)
        except Exception as e:  # noqa: BLE001 - a full disk is reported as such; anything else as it is
            self._raise_if_disk_full(e, step)
            raise
        self._unsealed.append(step)

    def seal_finished(self) -> None:
        """Seal what orbax has finished writing, without waiting (called between training steps). With several
        processes, whose writes finish at different times, sealing waits for the next save or close instead: all
        processes must reach orbax's collective calls together."""
        if self._unsealed and jax.process_count() == 1 and not self._manager.is_saving_in_progress():
            self._finish()

    def _finish(self) -> None:
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            self._raise_if_disk_full(e, self._unsealed[-1] if self._unsealed else None)
            raise
        for step in self._unsealed:
            if self.primary:
                write_json_atomic(self._step_dir(step) / SEAL, _checksums(self._step_dir(step)))
        self._sealed = sorted(set(self._sealed) | set(self._unsealed), reverse=True)
        self._unsealed = []
        for step in self._sealed[self.keep:]:  # the newest `keep` sealed steps stay
            self._manager.delete(step)
        self._sealed = self._sealed[:self.keep]

    def close(self) -> None:
        self._finish()
        self._manager.close()

    def abandon(self) -> None:
        """Let the writes in flight end and remove this writer's unfinished ones, sealing and pruning nothing: for a
        run that stops on an error or may no longer write here (a lost claim)."""
        try:
            self._manager.wait_until_finished()
            self._manager.close()
        except Exception:  # noqa: BLE001 - the error that stopped the run is the one to report
            pass
        if self.primary:
            for tmp in self.directory.glob(f"*{atomicity.TMP_DIR_SUFFIX}-{self._tag}"):
                shutil.rmtree(tmp, ignore_errors=True)

    def _raise_if_disk_full(self, error: BaseException, step: int | None) -> None:
        cause = error
        while cause is not None and not (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            return
        kept = self.latest_verified()
        need = sum(p.stat().st_size for p in self._step_dir(kept).rglob("*") if p.is_file()) if kept is not None else 0
        raise ConfigError(
            f"no space left on device writing checkpoint step {step} in {self.directory}. The last verified "
            f"checkpoint (step {kept}) is kept; the next one needs about {need / 1e6:.1f} MB. Fix: free that much "
            "space (or use a --workdir on another disk) and run the same command again: it resumes from there.") \
            from error

    # ---- reading ----------------------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """Every complete step orbax sees, newest first (sealed or not)."""
        return sorted(self._manager.all_steps(), reverse=True)

    def sealed_steps(self) -> list[int]:
        """Steps with a seal, newest first (the seal is not checked against the files here: see `problem`)."""
        return [s for s in self.steps() if (self._step_dir(s) / SEAL).is_file()]

    def latest_verified(self) -> int | None:
        return next((s for s in self.steps() if self.problem(s) is None), None)

    def problem(self, step: int) -> str | None:
        """Why checkpoint `step` cannot be trusted, or None if its files match its seal."""
        seal = self._step_dir(step) / SEAL
        if not seal.is_file():
            return "it has no checksum (the run stopped before the step was sealed)"
        try:
            expected = json.loads(seal.read_text())
        except (OSError, ValueError) as e:
            return f"its checksum file is unreadable ({e})"
        actual = _checksums(self._step_dir(step))
        for name in sorted(set(expected) | set(actual)):
            if name not in actual:
                return f"{name} is missing"
            if name not in expected:
                return f"{name} was not part of the checkpoint"
            if actual[name] != expected[name]:
                size, wanted = actual[name][0], expected[name][0]
                return f"{name} has {size} bytes, not {wanted}" if size != wanted else f"{name}'s content changed"
        return None

    def restore(self, step: int, abstract_state, fingerprint: str | None):
        """Restore verified `step` into `abstract_state`'s shapes and shardings; refuse a checkpoint made on other
        data (fingerprint None: no data will be read, e.g. for evaluation or generation, so no check)."""
        problem = self.problem(step)
        if problem is not None:
            raise ConfigError(f"checkpoint step {step} in {self.directory} is damaged: {problem}. Fix: use another "
                              f"step (verified: {[s for s in self.steps() if self.problem(s) is None]}).")
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        meta = restored["meta"]
        if fingerprint is not None and meta.get("data_fingerprint") != fingerprint:
            raise ConfigError(
                f"checkpoint step {step} was trained on data {meta.get('data_fingerprint')!r} but this run's data is "
                f"{fingerprint!r}. Fix: resume with the original data config, or start in a fresh workdir.")
        return restored["state"], meta

    def restore_latest(self, abstract_state, fingerprint: str | None):
        """(step, state, meta) of the newest checkpoint that verifies and reads, or None if there is none. Every
        newer step that fails is moved to `rejected/` with a warning saying why."""
        for step in self.steps():
            problem = self.problem(step)
            if problem is None:
                try:
                    return (step, *self.restore(step, abstract_state, fingerprint))
                except ConfigError:
                    raise
                except Exception as e:  # noqa: BLE001 - orbax raises many kinds on damaged files
                    problem = f"it cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            self._reject(step, problem)
        return None

    def _reject(self, step: int, problem: str) -> None:
        target = self.directory.parent / "rejected" / f"step-{step}"
        if self.primary:
            target.parent.mkdir(parents=True, exist_ok=True)
            n = 1
            while target.exists():
                n += 1
                target = target.with_name(f"step-{step}.{n}")
            shutil.move(self._step_dir(step), target)
        self._sealed = [s for s in self._sealed if s != step]
        print(f"warning: checkpoint step {step} in {self.directory} is not usable: {problem}. Moved it to {target}; "
              "restoring the newest earlier checkpoint.", file=sys.stderr, flush=True)
        self._manager.reload()

    def _step_dir(self, step: int) -> Path:
        return self.directory / str(step)


def _shared_tag() -> str:
    """A random name for this writer's temporary directories, the same on every process of the run (all of them
    write shards into the same directory)."""
    tag = np.frombuffer(os.urandom(8), np.uint32)
    if jax.process_count() > 1:
        tag = multihost_utils.broadcast_one_to_all(tag)
    return "".join(f"{int(x):08x}" for x in tag)


def _fenced_rename(tag: str, may_write: Callable[[], None]) -> type:
    """Orbax's write-then-rename, into a temporary directory named with `tag`, committed only while `may_write()`
    passes; otherwise the temporary directory is removed and the error raised (the writer thread's save fails)."""

    class FencedRename(atomicity.AtomicRenameTemporaryPath):
        @classmethod
        def from_final(cls, final_path, **options):
            return cls(final_path.parent / f"{final_path.name}{atomicity.TMP_DIR_SUFFIX}-{tag}", final_path,
                       **options)

        async def finalize(self):
            try:
                may_write()
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, self.get(), True)
                raise
            await super().finalize()

    return FencedRename


def _checksums(directory: Path) -> dict[str, list]:
    """{relative path: [size, blake2b hex]} of every file under `directory` but the seal itself."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name == SEAL:
            continue
        with open(path, "rb") as f:
            out[name] = [path.stat().st_size, hashlib.file_digest(f, "blake2b").hexdigest()]
    return out
