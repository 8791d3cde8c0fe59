"""python -m research COMMAND [ARGS]: the single-run tools under one name (`python -m research COMMAND --help`).

  train         train (or resume) one run                    = python -m research.train
  generate      sample from a run's checkpoint               = python -m research.generate
  score         log-likelihood and perplexity of text        = python -m research.score
  bench         training throughput and MFU, --against torch = python -m research.bench
  decode-bench  decode speed with and without the KV cache   = python -m research.infer.bench
  plan          will a layout fit device memory?             = python -m research.train.plan
  audit         every parameter's sharding and bytes         = python -m research.parallel.audit
  hf            Hugging Face import/export, LoRA merge        = python -m research.interop
  data          tokenise a source and print its sizes        = python -m research.data

Many runs: python -m sweeps; named experiments: python -m experiments; scaling laws: python -m analysis.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"train": "research.train.__main__", "generate": "research.generate", "score": "research.score",
            "bench": "research.bench", "decode-bench": "research.infer.bench", "plan": "research.train.plan",
            "audit": "research.parallel.audit", "hf": "research.interop.__main__", "data": "research.data.__main__"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}. Fix: use one of {', '.join(COMMANDS)} (python -m research --help).",
              file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name]).main(rest)  # imported on use: --help stays instant


if __name__ == "__main__":
    sys.exit(main())
