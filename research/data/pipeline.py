"""LMData: the packed token streams of a data config, served as batches by random access through grain.

Train: window ids in shuffled epochs (shuffle.EpochShuffle) -> grain batch(B) -> this process's rows -> gather
tokens. Batch k holds positions k*B .. k*B+B-1 of that infinite stream, so it is a pure function of (data, seed, k):
resume needs only the step, and the stream is the same for any number of processes.
Validation: the same without the shuffle, wrapping around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grain
import numpy as np

from research.data import packing
from research.data.errors import DataError, fail
from research.data.shuffle import EpochShuffle
from research.data.tokenizer import Tokenizer


def local_rows(batch_size: int, process_index: int, process_count: int) -> slice:
    """This process's contiguous slice of the global batch's rows."""
    if process_count < 1 or not 0 <= process_index < process_count:
        fail("process_index", process_index, f"must be in [0, process_count={process_count})",
             "pass jax.process_index() and jax.process_count()")
    if batch_size < 1 or batch_size % process_count:
        fail("batch_size", batch_size, f"must be a positive multiple of process_count={process_count}",
             f"choose a global batch divisible by {process_count}")
    per = batch_size // process_count
    return slice(process_index * per, (process_index + 1) * per)


@dataclass(eq=False)
class LMData:
    """Token streams of one data config (memory-mapped from the cache) plus its tokenizer and fingerprint.

    Batches are {"inputs": int32 [B / processes, L], "targets": same}, with document_mask also "segments" and
    "positions" (same shape). The last window of each split is padded with tokenizer.pad_id: the loss masks targets
    == pad_id.
    """

    tokenizer: Tokenizer
    fingerprint: str  # hash of (source content, text field, tokenizer, seq_len, val_fraction, split_seed)
    seq_len: int
    train_tokens: np.ndarray  # [num_train_tokens] documents each followed by EOS
    val_tokens: np.ndarray  # [num_val_tokens]
    info: dict = field(default_factory=dict)  # cache entry metadata: document counts, source, ...
    cache_dir: Path | None = None
    document_mask: bool = False  # batches carry "segments" and "positions" (packing.to_document_example)
    train_flags: np.ndarray | None = None  # chat data: uint8 flags per token (research.data.chat), else None
    val_flags: np.ndarray | None = None
    _datasets: dict = field(default_factory=dict, repr=False)

    @property
    def num_train_tokens(self) -> int:
        return len(self.train_tokens)

    @property
    def num_val_tokens(self) -> int:
        return len(self.val_tokens)

    @property
    def num_train_windows(self) -> int:
        return packing.num_windows(self.num_train_tokens, self.seq_len)

    @property
    def num_val_windows(self) -> int:
        return packing.num_windows(self.num_val_tokens, self.seq_len)

    # ---- grain datasets ------------------------------------------------------------------------------------------
    def train_dataset(self, batch_size: int, seed: int, process_index: int = 0,
                      process_count: int = 1) -> grain.MapDataset:
        """Infinite MapDataset: dataset[k] == train_batch(k, batch_size, seed, process_index, process_count)."""
        rows = local_rows(batch_size, process_index, process_count)
        windows = EpochShuffle(self.num_train_windows, seed)  # window ids, epoch e permuted by (seed, e)
        batches = windows.batch(batch_size, batch_fn=np.asarray)  # [B] global batch of window ids
        return batches.map(lambda ids: self._example(self.train_tokens, self.train_flags, ids[rows]))

    def val_dataset(self, batch_size: int, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
        """Infinite MapDataset of validation batches in a fixed order (no shuffle), wrapping around."""
        rows = local_rows(batch_size, process_index, process_count)
        windows = grain.MapDataset.range(self.num_val_windows).repeat()
        batches = windows.batch(batch_size, batch_fn=np.asarray)  # [B]
        return batches.map(lambda ids: self._example(self.val_tokens, self.val_flags, ids[rows]))

    def train_iter(self, batch_size: int, seed: int, start_step: int = 0, process_index: int = 0,
                   process_count: int = 1, prefetch: int = 2):
        """Iterator over batches start_step, start_step + 1, ..., built in `prefetch` background threads (grain)."""
        ds = self.train_dataset(batch_size, seed, process_index, process_count)[_check_index("start_step", start_step):]
        return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=2 * prefetch)))

    # ---- random access -------------------------------------------------------------------------------------------
    def train_batch(self, step: int, batch_size: int, seed: int, process_index: int = 0,
                    process_count: int = 1) -> dict[str, np.ndarray]:
        """Batch `step`: global stream positions step*B .. step*B+B-1, this process's rows.

        O(batch) work, plus O(windows) once per epoch to draw that epoch's permutation.
        """
        key = ("train", batch_size, seed, process_index, process_count)
        if key not in self._datasets:
            self._datasets[key] = self.train_dataset(batch_size, seed, process_index, process_count)
        return self._datasets[key][_check_index("step", step)]

    def val_batch(self, k: int, batch_size: int, process_index: int = 0,
                  process_count: int = 1) -> dict[str, np.ndarray]:
        """Validation batch k: windows k*B .. k*B+B-1 modulo num_val_windows, this process's rows."""
        key = ("val", batch_size, process_index, process_count)
        if key not in self._datasets:
            self._datasets[key] = self.val_dataset(batch_size, process_index, process_count)
        return self._datasets[key][_check_index("k", k)]

    def _example(self, stream: np.ndarray, flags: np.ndarray | None, window_ids: np.ndarray) -> dict[str, np.ndarray]:
        rows = packing.gather_windows(stream, window_ids, self.seq_len, self.tokenizer.pad_id)  # [b, L + 1]
        if flags is not None:
            flags = packing.gather_windows(flags, window_ids, self.seq_len, 0)  # [b, L + 1]
        if self.document_mask:
            return packing.to_document_example(rows, self.tokenizer.eos_id, self.tokenizer.pad_id, flags)
        return packing.to_example(rows, self.tokenizer.pad_id, flags)


def _check_index(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"{name}={value!r}: batch indices are non-negative integers. Fix: pass the step number.")
    return int(value)
