"""python -m research.infer.bench [--config PRESET] [--batches 1 16] [--new-tokens 32 128 256]: decode tokens/s
with and without the KV cache (greedy, random-initialised weights; the 25M benchmark shape by default).

With the cache: research.infer.generate (prefill + one-token steps; each step attends over the cache's slots).
Without: each new token re-runs the full forward over the whole [batch, prompt + new] window, as a jitted decoder
without a cache must with static shapes; that per-token cost does not depend on the step, so it is timed over the
first --no-cache-steps steps. Compiles are excluded; each time is the best of --repeats.
"""

from __future__ import annotations

import argparse
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.cli import add_debug_flag, entry_point
from research.config import ConfigError, ModelConfig
from research.infer import InferenceModel, generate
from research.model import Transformer
from research.presets import model as preset


def _recompute_fn(model, steps: int, start: int):
    """Jitted greedy decoding by full recompute: `steps` tokens written into tokens [batch, window] from `start`."""

    def run(params, tokens):
        def step(i, tokens):
            logits = model.apply(params, tokens)  # [batch, window, V]: the whole window, every step
            pos = start + i
            token = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, pos - 1, axis=1, keepdims=False), axis=-1)
            return jax.lax.dynamic_update_index_in_dim(tokens, token.astype(jnp.int32), pos, axis=1)

        return jax.lax.fori_loop(0, steps, step, tokens)

    return run


def _best_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def benchmark(cfg: ModelConfig, batches=(1, 16), new_tokens=(32, 128, 256), prompt_len: int = 16,
              no_cache_steps: int = 8, repeats: int = 2) -> list[dict]:
    """One row per (batch, new tokens): tokens/s with the cache, without, and their ratio."""
    if prompt_len + max(new_tokens) > cfg.max_seq_len:
        raise ConfigError(f"--new-tokens={max(new_tokens)}: with a {prompt_len}-token prompt it exceeds "
                          f"model.max_seq_len={cfg.max_seq_len}. Fix: use at most {cfg.max_seq_len - prompt_len}.")
    params = jax.jit(Transformer(cfg).init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    model = InferenceModel.create(cfg, nn.meta.unbox(params))
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        prompts = rng.integers(0, min(cfg.vocab_size, 256), (batch, prompt_len)).tolist()
        for new in new_tokens:
            cached_s = _best_time(lambda: generate(model, prompts, new).tokens, repeats)  # noqa: B023
            steps = min(new, no_cache_steps)
            window = np.zeros((batch, prompt_len + new), np.int32)
            window[:, :prompt_len] = prompts
            fn = model.jitted(("recompute", batch, prompt_len + new, steps),
                              lambda: _recompute_fn(model, steps, prompt_len))  # noqa: B023
            recompute_s = _best_time(lambda: fn(model.params, window), repeats)  # noqa: B023
            cached, recompute = batch * new / cached_s, batch * steps / recompute_s
            rows.append({"batch": batch, "new_tokens": new, "cache_tokens_per_s": cached,
                         "no_cache_tokens_per_s": recompute, "speedup": cached / recompute})
    return rows


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.infer.bench", description=__doc__)
    parser.add_argument("--config", default="bench-25m", help="a model preset (research.presets)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--no-cache-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = add_debug_flag(parser).parse_args(argv)
    cfg = preset(args.config)
    rows = benchmark(cfg, args.batches, args.new_tokens, args.prompt_len, args.no_cache_steps, args.repeats)
    device = jax.devices()[0]
    print(f"decode, {args.config} ({cfg.n_layers} layers, d_model {cfg.d_model}), random init, greedy, "
          f"{args.prompt_len}-token prompts, {device.device_kind}")
    print(f"{'batch':>5} {'new':>5} {'KV cache tok/s':>15} {'no cache tok/s':>15} {'speedup':>8}")
    for r in rows:
        print(f"{r['batch']:>5} {r['new_tokens']:>5} {r['cache_tokens_per_s']:>15,.1f} "
              f"{r['no_cache_tokens_per_s']:>15,.1f} {r['speedup']:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
