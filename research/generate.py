"""python -m research.generate --workdir RUN --prompt TEXT [--step N] [--temperature T --top-k K --top-p P]
[--beams W --length-penalty A] [--max-new-tokens N] [--seed S] [--tensor N]: continue prompts with a trained run.

Reads the run's config, tokenizer and checkpoint (the latest unless --step), tokenises each prompt, prefills a KV
cache, decodes token by token until EOS or --max-new-tokens, and prints the prompt with its continuation.
--temperature 0 is greedy; --beams W > 1 is beam search (sampling flags are then not used).
"""

from __future__ import annotations

import argparse
import sys

from research.cli import add_debug_flag, entry_point
from research.config import ConfigError


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.generate", description=__doc__)
    parser.add_argument("--workdir", required=True, help="a trained run's directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--prompt", action="append", required=True, help="prompt text (repeat for a batch)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="default: up to 128, within the model's context")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus: the smallest set with probability >= p")
    parser.add_argument("--beams", type=int, default=1, help="beam width (> 1: beam search)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam score = logprob / length^penalty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ignore-eos", action="store_true", help="do not stop at the end-of-document token")
    parser.add_argument("--tensor", type=int, default=1, help="tensor-parallel devices to decode on")
    args = add_debug_flag(parser).parse_args(argv)
    # JAX loads after the arguments are parsed, so --help and usage errors answer at once
    from research.infer import Sampling, beam_generate, generate, load_run

    method = Sampling(args.temperature, args.top_k, args.top_p)
    if args.beams < 1:
        raise ConfigError(f"--beams={args.beams}: must be >= 1. Fix: use 1 (no beam search) or e.g. 4.")
    for i, text in enumerate(args.prompt):
        if not text:
            raise ConfigError(f"--prompt[{i}]='': an empty prompt gives the model nothing to condition on. "
                              "Fix: give at least one character of prompt text.")
    model, tokenizer, _ = load_run(args.workdir, args.step, args.tensor)
    prompts = [tokenizer.encode(text) for text in args.prompt]
    room = model.cfg.max_seq_len - max(len(p) for p in prompts)
    max_new = args.max_new_tokens if args.max_new_tokens is not None else max(1, min(128, room))
    stops = () if args.ignore_eos else (tokenizer.eos_id,)
    if args.beams > 1:
        out = beam_generate(model, prompts, max_new, args.beams, args.length_penalty, stops, tokenizer.pad_id)
    else:
        out = generate(model, prompts, max_new, method, stops, args.seed, tokenizer.pad_id)
    for i, (text, ids) in enumerate(zip(args.prompt, out.tokens)):
        if len(args.prompt) > 1:
            print(f"--- [{i}] {len(ids)} new tokens, {'stopped at EOS' if out.stopped[i] else 'length limit'}")
        print(text + tokenizer.decode(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
