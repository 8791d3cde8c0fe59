"""Tokenise (or load from the cache) a data config and print its sizes and timings.

    python -m research.data                                  # the embedded Shakespeare corpus, byte tokenizer
    python -m research.data tokenizer=bpe bpe_vocab_size=4096 source=path/to/corpus.jsonl text_field=content

--debug shows the traceback of an error.
"""

from __future__ import annotations

import json
import sys
import time

from research.cli import entry_point
from research.config import RunConfig
from research.data.loader import load_data


@entry_point
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    argv = [a for a in argv if a != "--debug"]
    overrides = [a if a.startswith("data.") else f"data.{a}" for a in argv]
    base = RunConfig().override("model.max_seq_len=1048576", "model.vocab_size=1048576")  # no model limits here
    cfg = base.override(*overrides).data
    t0 = time.perf_counter()
    data = load_data(cfg)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    data.train_batch(0, 64, seed=0)
    batch_ms = (time.perf_counter() - t1) * 1e3
    print(json.dumps({"source": cfg.source, "tokenizer": data.tokenizer.kind, "vocab_size": data.tokenizer.vocab_size,
                      "fingerprint": data.fingerprint, "train_docs": data.info["num_train_docs"],
                      "val_docs": data.info["num_val_docs"], "train_tokens": data.num_train_tokens,
                      "val_tokens": data.num_val_tokens, "train_windows": data.num_train_windows,
                      "val_windows": data.num_val_windows, "load_seconds": round(seconds, 3),
                      "first_batch_of_64_ms": round(batch_ms, 2), "cache": str(data.cache_dir)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
