"""python -m research.score --workdir RUN (--text-file F [--lines] [--per-token] | --split val) [--step N]
[--window N] [--max-tokens N]: log-likelihoods and perplexity under a trained run.

--text-file scores a file as one document (after an end-of-document token, as in the training stream); with --lines,
every non-empty line is its own text and gets its log-likelihood. --split val scores the run's held-out split.
Long texts are cut into windows of --window tokens (default: the run's data.seq_len, the context it trained on).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from research.cli import add_debug_flag, entry_point
from research.config import ConfigError


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.score", description=__doc__)
    parser.add_argument("--workdir", required=True, help="a trained run's directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text-file", help="a UTF-8 text file to score")
    source.add_argument("--split", choices=["val"], help="score the run's held-out split")
    parser.add_argument("--lines", action="store_true", help="score every non-empty line of --text-file separately")
    parser.add_argument("--per-token", action="store_true", help="also print every token's log-probability")
    parser.add_argument("--window", type=int, default=None, help="tokens of context per window (default: seq_len)")
    parser.add_argument("--max-tokens", type=int, default=None, help="score only the first N tokens of the split")
    parser.add_argument("--tensor", type=int, default=1, help="tensor-parallel devices")
    args = add_debug_flag(parser).parse_args(argv)
    # JAX loads after the arguments are parsed, so --help and usage errors answer at once
    from research.infer import load_run, perplexity, token_logprobs

    if args.text_file is not None:
        path = Path(args.text_file)
        if not path.is_file():
            raise ConfigError(f"--text-file={str(path)!r}: no such file. Fix: give the path of a text file.")
        text = path.read_text(encoding="utf-8")
        texts = [line for line in text.splitlines() if line.strip()] if args.lines else [text]
        if not texts or not texts[0]:
            raise ConfigError(f"--text-file={str(path)!r}: the file is empty. Fix: give a file with text.")
    if args.max_tokens is not None and args.max_tokens < 2:
        raise ConfigError(f"--max-tokens={args.max_tokens}: must be >= 2. Fix: use e.g. 100000.")
    model, tokenizer, config = load_run(args.workdir, args.step, args.tensor)
    window = config.data.seq_len if args.window is None else args.window
    if args.split == "val":
        from research.data import load_data  # the data stack, only for --split

        stream = np.asarray(load_data(config.data, args.workdir).val_tokens[:args.max_tokens], np.int32)
        result = perplexity(model, np.concatenate([[tokenizer.eos_id], stream]).astype(np.int32), window)
        print(f"held-out split: {result.tokens:,} tokens, nll {result.nll:.4f} nats/token, "
              f"perplexity {result.perplexity:.3f}")
        return 0
    ids = [tokenizer.encode(t) for t in texts]
    logprobs = token_logprobs(model, ids, tokenizer.eos_id, window)
    for i, (tokens, logp) in enumerate(zip(ids, logprobs)):
        label = f"line {i + 1}" if args.lines else str(args.text_file)
        print(f"{label}: {len(tokens)} tokens, log-likelihood {logp.sum():.4f} nats, "
              f"nll {-logp.mean():.4f} nats/token, perplexity {math.exp(-logp.mean()):.3f}")
        if args.per_token:
            for token, lp in zip(tokens, logp):
                print(f"  {tokenizer.decode([token])!r:>12} {lp:9.4f}")
    if len(ids) > 1:
        total = np.concatenate(logprobs)
        print(f"all: {len(total)} tokens, nll {-total.mean():.4f} nats/token, perplexity {math.exp(-total.mean()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
