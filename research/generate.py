"""python -m research.generate --workdir RUN (--prompt TEXT | --chat IN.jsonl --out OUT.jsonl) [--step N]
[--temperature T --top-k K --top-p P] [--beams W --length-penalty A] [--max-new-tokens N] [--seed S] [--tensor N]:
continue prompts with a trained run, or reply to conversations.

Reads the run's config, tokenizer and checkpoint (the latest unless --step), tokenises each prompt, prefills a KV
cache, decodes token by token until EOS or --max-new-tokens, and prints the prompt with its continuation.
--temperature 0 is greedy; --beams W > 1 is beam search (sampling flags are then not used).
--chat: each conversation of a chat JSONL (data.format=chat's) gets the run's reply in place of its final assistant
turn, rendered with the run's chat template, and OUT.jsonl holds the results: the data sequence-level distillation
trains a student on (--temperature 0 or --beams W: the teacher's most likely reply).
"""

from __future__ import annotations

import argparse
import json
import sys

from research.cli import add_debug_flag, entry_point
from research.config import ConfigError
from research.files import write_text_atomic


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.generate", description=__doc__)
    parser.add_argument("--workdir", required=True, help="a trained run's directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--prompt", action="append", default=[], help="prompt text (repeat for a batch)")
    parser.add_argument("--chat", default=None, help="a .jsonl of conversations to reply to (with --out)")
    parser.add_argument("--out", default=None, help="where --chat writes the conversations with their replies")
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
    if bool(args.prompt) == bool(args.chat) or bool(args.chat) != bool(args.out):
        raise ConfigError("give either --prompt TEXT (repeatable) or --chat IN.jsonl with --out OUT.jsonl. Fix: "
                          "e.g. --prompt 'ROMEO:', or --chat sft.jsonl --out teacher.jsonl.")
    if args.beams < 1:
        raise ConfigError(f"--beams={args.beams}: must be >= 1. Fix: use 1 (no beam search) or e.g. 4.")
    for i, text in enumerate(args.prompt):
        if not text:
            raise ConfigError(f"--prompt[{i}]='': an empty prompt gives the model nothing to condition on. "
                              "Fix: give at least one character of prompt text.")
    if args.chat:
        return _reply_to_chat(args, method)
    model, tokenizer, _ = load_run(args.workdir, args.step, args.tensor)
    prompts = [tokenizer.encode(text) for text in args.prompt]
    max_new = _max_new_tokens(args, model, max(len(p) for p in prompts))
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


def _max_new_tokens(args, model, longest: int) -> int:
    """--max-new-tokens, or by default up to 128 within the context the longest prompt leaves."""
    if args.max_new_tokens is not None:
        return args.max_new_tokens
    return max(1, min(128, model.cfg.max_seq_len - model.virtual_tokens - longest))


def _reply_to_chat(args, method) -> int:
    from pathlib import Path

    from research.data.chat import ChatTemplate, read_conversations
    from research.infer import load_run
    from research.infer.replies import context, reply

    if not Path(args.chat).is_file():
        raise ConfigError(f"--chat {args.chat!r}: no such file. Fix: give a .jsonl of conversations.")
    # bad lines fail before the model loads
    conversations = read_conversations(Path(args.chat), f"--chat {args.chat!r}", need_reply=False)
    if not conversations:
        raise ConfigError(f"--chat {args.chat!r}: holds no conversation. Fix: give a .jsonl with one conversation "
                          "per line.")
    model, tokenizer, _ = load_run(args.workdir, args.step, args.tensor)
    template = ChatTemplate.of_run(Path(args.workdir))
    max_new = _max_new_tokens(args, model, max(len(tokenizer.encode(template.prompt(context(c))))
                                               for c in conversations))
    replied = reply(model, tokenizer, template, conversations, max_new, method, args.beams, args.length_penalty,
                    args.seed)
    write_text_atomic(Path(args.out), "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in replied))
    print(f"{len(replied)} replies from {args.workdir} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
