"""On-disk caches under $SCALELAB_CACHE (default ~/.cache/scalelab): tokenised splits, trained BPE, file hashes.

Every entry is written atomically: into a temporary name, then renamed into place, so concurrent runs (or a crash)
never leave a half-written entry that a later run would trust. Layout:
    tokens/<key>/{train.npy, val.npy, meta.json}   token streams, loaded memory-mapped (chat data: + *_flags.npy)
    tokenizers/<key>.json                           BPE trained for a (source, split, vocab)
    filehash/<hash of path, size, mtime>            memoised content hashes of source files
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from research.data.errors import DataError
from research.files import write_text_atomic


def cache_root() -> Path:
    """$SCALELAB_CACHE if set, else ~/.cache/scalelab."""
    return Path(os.environ.get("SCALELAB_CACHE") or Path.home() / ".cache" / "scalelab").expanduser()


def digest(obj) -> str:
    """Stable 16-hex-digit hash of a JSON-able object (sorted keys)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def file_digest(path: Path, root: Path) -> str:
    """Content hash of a file, memoised so a cached run does not reread big files. The memo is keyed by the path,
    inode, size, mtime and ctime: every write moves the ctime, which no tool sets back (an edit that keeps the size
    and restores the mtime is still seen). Timestamps are coarse, so a memo younger than a second past the file's
    last change is not trusted: the file is hashed again."""
    st = path.stat()
    memo = root / "filehash" / digest([str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    if memo.is_file() and memo.stat().st_mtime_ns - st.st_ctime_ns > 1_000_000_000:
        return memo.read_text()
    value = _blake2b(path)
    write_text_atomic(memo, value)
    return value


def _blake2b(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def save_tokens(entry: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write an entry ({name}.npy per array: "train", "val", and for chat data "train_flags", "val_flags") as a
    temporary directory, then rename it into place; if another run won the race, keep theirs. meta.json records each
    array file's content hash, which load_tokens checks."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        meta = {**meta, "blake2b": {f"{name}.npy": _blake2b(tmp / f"{name}.npy") for name in arrays}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokens(entry: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """({name: array} memory-mapped, meta), or None when the entry does not exist. The files' content hashes must
    match meta.json's (memoised like source files': a big cache is reread only after it changed)."""
    if not (entry / "meta.json").is_file():
        return None
    damaged = f"the token cache {str(entry)!r} is damaged"
    fix = f"Fix: rm -rf '{entry}' and run again to rebuild it."
    try:
        meta = json.loads((entry / "meta.json").read_text())
        names = [n.removesuffix(".npy") for n in meta.get("blake2b", {"train.npy": 0, "val.npy": 0})]
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in names}
    except (OSError, ValueError) as e:
        raise DataError(f"{damaged} ({e}). {fix}") from None
    sizes = {"train": meta["num_train_tokens"], "val": meta["num_val_tokens"]}
    if any(len(array) != sizes[name.removesuffix("_flags")] for name, array in arrays.items()):
        raise DataError(f"{damaged} (sizes differ from meta.json). {fix}")
    for name, expected in meta.get("blake2b", {}).items():  # entries written before hashes were recorded: sizes only
        if file_digest(entry / name, entry.parent.parent) != expected:
            raise DataError(f"{damaged} ({name}'s content changed). {fix}")
    return arrays, meta
