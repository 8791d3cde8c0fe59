"""load_data: DataConfig -> LMData. Resolves the source, picks the tokenizer, tokenises once and caches on disk.

The token cache is keyed by what the tokens depend on (source content, split, tokenizer) but not by seq_len, so runs
that differ only in seq_len share it; the data fingerprint adds seq_len. Chat data (data.format=chat,
research.data.chat) is packed whole per window, so its entries are keyed by seq_len too, and hold flag streams beside
the tokens. A second run on the same data only hashes the source files' stat (content hashes are memoised) and
memory-maps the cached arrays.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from research.config import DataConfig
from research.data import cache, packing
from research.data.chat import TEMPLATE_FILE, ChatTemplate, pack_examples, read_conversations, render
from research.data.errors import DataError, fail
from research.data.pipeline import LMData
from research.data.sources import read_documents, resolve_source, source_identity
from research.data.split import split_documents
from research.data.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, _hf, token_dtype

log = logging.getLogger(__name__)
FORMAT_VERSION = 1  # bump when packing or splitting changes: it invalidates every cache entry and fingerprint
TOKENIZER_FILE = "tokenizer.json"  # in the run directory


def load_data(cfg: DataConfig, workdir: str | os.PathLike | None = None) -> LMData:
    """Tokenised train/validation streams for `cfg` (from the cache when possible) with tokenizer and fingerprint.

    With a workdir: a tokenizer.json already there is reused (resume); otherwise the tokenizer is written there.
    BPE is trained on the training documents only, deterministically, and cached per (source, split, vocab).
    """
    src = resolve_source(cfg)  # missing files and readers fail here, before any tokenisation
    if cfg.tokenizer == "bpe":
        _hf()
    root = cache.cache_root()
    identity = source_identity(src, lambda path: cache.file_digest(path, root))
    split_key = {"version": FORMAT_VERSION, "source": identity,
                 "val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed}
    chat = cfg.format == "chat"
    template = ChatTemplate()
    if chat:  # conversations are split whole (by their canonical JSON), and BPE learns their rendered text
        split_key |= {"format": "chat"}
        split = _Once(lambda: _split_conversations(src, cfg))
        bpe_texts = lambda: [template.text(c) for c in split()[0]]  # noqa: E731
    else:
        split = _Once(lambda: split_documents(read_documents(src), cfg.val_fraction, cfg.split_seed, cfg.source))
        bpe_texts = lambda: split()[0]  # noqa: E731

    tokenizer = _tokenizer(cfg, workdir, split_key, root, bpe_texts)
    # chat windows depend on seq_len (examples are packed whole) and on which turns train
    packed = {"seq_len": cfg.seq_len, "loss_on": cfg.loss_on, "template": template.__dict__} if chat else {}
    key = cache.digest({"split": split_key, "tokenizer": tokenizer.identity} | packed)
    entry = root / "tokens" / key
    loaded = cache.load_tokens(entry)
    if loaded is None:
        t0 = time.perf_counter()
        arrays, meta = _chat_arrays(split(), tokenizer, template, cfg) if chat else _text_arrays(split(), tokenizer)
        meta |= {"key": key, "source": cfg.source, "kind": src.kind, "tokenizer": tokenizer.kind,
                 "vocab_size": tokenizer.vocab_size, "num_train_tokens": len(arrays["train"]),
                 "num_val_tokens": len(arrays["val"]), "seconds": round(time.perf_counter() - t0, 3)}
        cache.save_tokens(entry, arrays, meta)
        log.info("tokenised %s: %d train + %d val tokens in %.1fs -> %s", cfg.source, len(arrays["train"]),
                 len(arrays["val"]), meta["seconds"], entry)
        loaded = cache.load_tokens(entry)
    arrays, meta = loaded
    if workdir is not None and not (Path(workdir) / TOKENIZER_FILE).exists():
        tokenizer.save(Path(workdir) / TOKENIZER_FILE)
    if workdir is not None and chat:
        template.save(Path(workdir) / TEMPLATE_FILE)
    batches = {"tokens": key, "seq_len": cfg.seq_len} | ({"document_mask": True} if cfg.document_mask else {})
    return LMData(tokenizer=tokenizer, fingerprint=cache.digest(batches), seq_len=cfg.seq_len,
                  train_tokens=arrays["train"], val_tokens=arrays["val"], info=meta, cache_dir=entry,
                  document_mask=cfg.document_mask, train_flags=arrays.get("train_flags"),
                  val_flags=arrays.get("val_flags"))


def _text_arrays(split, tokenizer: Tokenizer) -> tuple[dict, dict]:
    """Documents each followed by EOS, one stream per split."""
    train_docs, val_docs = split
    dtype = token_dtype(tokenizer.vocab_size)
    arrays = {name: packing.pack(tokenizer.encode_documents(docs), tokenizer.eos_id, dtype)
              for name, docs in (("train", train_docs), ("val", val_docs))}
    return arrays, {"num_train_docs": len(train_docs), "num_val_docs": len(val_docs), "dtype": str(dtype)}


def _chat_arrays(split, tokenizer: Tokenizer, template: ChatTemplate, cfg: DataConfig) -> tuple[dict, dict]:
    """Rendered conversations packed whole into windows, with their flag streams."""
    arrays, meta = {}, {"dtype": "int32"}
    for name, conversations in zip(("train", "val"), split):
        examples = [render(c, tokenizer, template, cfg.loss_on) for c in conversations]
        arrays[name], arrays[f"{name}_flags"], truncated = pack_examples(examples, cfg.seq_len, tokenizer.pad_id)
        meta |= {f"num_{name}_docs": len(conversations), f"truncated_{name}_examples": truncated}
        if truncated:
            log.warning("data.source=%s: %d of %d %s conversations are longer than data.seq_len + 1 = %d tokens and "
                        "were cut there", cfg.source, truncated, len(conversations), name, cfg.seq_len + 1)
    return arrays, meta


def _split_conversations(src, cfg: DataConfig) -> tuple[list, list]:
    conversations = read_conversations(src.files[0][1], f"data.source={cfg.source!r}")
    if len(conversations) < 2:
        raise DataError(f"data.source={cfg.source!r}: {len(conversations)} conversation(s), too few to hold any out "
                        "for validation. Fix: give at least two conversations (one JSON object per line).")
    canonical = [json.dumps(c, sort_keys=True, ensure_ascii=False) for c in conversations]
    train, val = split_documents(canonical, cfg.val_fraction, cfg.split_seed, cfg.source)
    return [json.loads(c) for c in train], [json.loads(c) for c in val]


def check_fingerprint(saved: str | None, data: LMData) -> None:
    """Refuse to resume a checkpoint onto different data: DataError unless the fingerprints match (None: no check)."""
    if saved is not None and saved != data.fingerprint:
        raise DataError(f"data fingerprint {data.fingerprint!r} differs from the checkpoint's {saved!r}: this run "
                        "would resume onto different data (source content, tokenizer, seq_len or split). Fix: resume "
                        "with the data config saved in the run directory's config.json and unchanged source files, "
                        "or start a new run directory.")


def _tokenizer(cfg: DataConfig, workdir, split_key: dict, root: Path, bpe_texts) -> Tokenizer:
    """The run directory's tokenizer if there is one, else byte, else the cached or freshly trained BPE."""
    saved = Path(workdir) / TOKENIZER_FILE if workdir is not None else None
    if saved is not None and saved.is_file():
        tok = Tokenizer.load(saved)
        if tok.kind != cfg.tokenizer or tok.vocab_size > cfg.vocab_size:
            fail("data.tokenizer", cfg.tokenizer, f"the run directory holds {saved}, a {tok.kind} tokenizer of "
                 f"{tok.vocab_size} entries, which this config (vocab {cfg.vocab_size}) cannot resume",
                 "resume with the data config saved in that run directory, or start a new run directory")
        return tok
    if cfg.tokenizer == "byte":
        return ByteTokenizer()
    path = root / "tokenizers" / f"{cache.digest({'split': split_key, 'bpe_vocab_size': cfg.bpe_vocab_size})}.json"
    if path.is_file():
        return Tokenizer.load(path)
    t0 = time.perf_counter()
    tok = BPETokenizer.train(bpe_texts(), cfg.bpe_vocab_size)  # training documents only: no validation leakage
    tok.save(path)
    log.info("trained BPE (%d entries) in %.1fs -> %s", tok.vocab_size, time.perf_counter() - t0, path)
    return tok


class _Once:
    """Call a function at most once, on first use: cached runs never read the documents."""

    def __init__(self, fn) -> None:
        self._fn, self._done, self._value = fn, False, None

    def __call__(self):
        if not self._done:
            self._value, self._done = self._fn(), True
        return self._value
