"""Tokenizers: byte-level (default, nothing to train) and byte-level BPE trained locally with HF `tokenizers`.

Both share one small interface (`Tokenizer`) and one file format: `tokenizer.json`, which `Tokenizer.load` reads back
whatever the kind. `encode` never adds special tokens; `decode` drops them. Specials: BOS, EOS, PAD.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from research.data.errors import DataError
from research.files import write_text_atomic

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIALS = (BOS, EOS, PAD)  # BPE ids 0, 1, 2 (the trainer puts specials first); byte ids 256, 257, 258


class Tokenizer(abc.ABC):
    """Text <-> ids. `encode_documents` is the fast path the packer uses (one array per document)."""

    kind: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, no special tokens added."""

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, special tokens dropped."""

    @abc.abstractmethod
    def to_json(self) -> str:
        """The whole tokenizer as a JSON string (the content of tokenizer.json)."""

    def encode_documents(self, docs: Sequence[str]) -> list[np.ndarray]:
        """One id array per document; subclasses vectorise this."""
        return [np.asarray(self.encode(d), dtype=np.int64) for d in docs]

    @property
    def identity(self) -> str:
        """Hash of the serialised tokenizer: part of the data fingerprint."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json atomically (tmp file then rename), so a reader never sees half a file."""
        write_text_atomic(Path(path), self.to_json())

    @staticmethod
    def load(path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer.json written by `save` (byte or BPE)."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise DataError(f"tokenizer file {str(path)!r} cannot be read ({e}). Fix: give the path of a "
                            "tokenizer.json written by research.data (it sits in the run directory).") from None
        return Tokenizer.from_json(text, where=str(path))

    @staticmethod
    def from_json(text: str, where: str = "<string>") -> Tokenizer:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"tokenizer file {where!r} is not JSON ({e}). Fix: delete it to rebuild the "
                            "tokenizer, or restore it from the run directory.") from None
        if obj.get("type") == "byte":
            return ByteTokenizer()
        if isinstance(obj.get("model"), dict) and obj["model"].get("type") == "BPE":
            return BPETokenizer.from_json(text)
        raise DataError(f"tokenizer file {where!r} is neither a byte tokenizer nor a BPE tokenizer.json. "
                        "Fix: give a tokenizer.json written by research.data.")


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes are ids 0..255; BOS=256, EOS=257, PAD=258 (vocab 259 = research.config.BYTE_VOCAB_SIZE)."""

    kind = "byte"
    vocab_size = 259
    bos_id, eos_id, pad_id = 256, 257, 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        return arr[arr < 256].astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def encode_documents(self, docs: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(d.encode("utf-8"), dtype=np.uint8) for d in docs]  # no Python loop over bytes

    def to_json(self) -> str:
        return json.dumps({"type": "byte", "vocab_size": 259, "bos_id": 256, "eos_id": 257, "pad_id": 258})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash("ByteTokenizer")


def _hf():
    """Import HF `tokenizers` lazily: only BPE needs it, and its absence should say how to install it."""
    try:
        import tokenizers
    except ImportError:
        raise DataError("data.tokenizer='bpe': the package `tokenizers` is not installed. Fix: pip install "
                        "'tokenizers>=0.21' (or pip install -e '.[bpe]'), or use data.tokenizer=byte.") from None
    return tokenizers


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2 style pre-tokenisation, no prefix space): round-trips any text exactly."""

    kind = "bpe"

    def __init__(self, hf_tokenizer) -> None:
        self._tok = hf_tokenizer
        self._tok.encode_special_tokens = True  # a literal "<|eos|>" in the text is text, not the EOS token
        ids = [self._tok.token_to_id(s) for s in SPECIALS]
        if None in ids:
            raise DataError(f"BPE tokenizer lacks the special tokens {SPECIALS}. Fix: retrain it with "
                            "research.data (delete the tokenizer.json).")
        self.bos_id, self.eos_id, self.pad_id = ids
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(cls, docs: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Train on `docs` (deterministic for the same documents in the same order); vocab includes the specials.

        A corpus too small for `vocab_size` merges yields a smaller vocabulary; ids stay below `vocab_size`.
        """
        tk = _hf()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(docs, trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        return cls(_hf().Tokenizer.from_str(text))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def encode_documents(self, docs: Sequence[str]) -> list[np.ndarray]:
        encs = self._tok.encode_batch(list(docs), add_special_tokens=False)  # parallel, in Rust
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def to_json(self) -> str:
        return self._tok.to_str()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and other.to_json() == self.to_json()

    def __hash__(self) -> int:
        return hash(self.identity)


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest dtype holding every id: uint16 up to 65536 entries, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)
