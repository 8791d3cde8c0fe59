"""Named model shapes: published architectures (for parameter/FLOP checks and planning) and a CPU-sized ladder.

`PUBLISHED_PARAMS` holds each published model's total parameter count (Hugging Face checkpoints); tests check our
exact count against it within 1% via `jax.eval_shape`, so nothing is allocated. Where our architecture differs from
the original in a way that moves the count (noted inline), the difference is far below that 1%.
"""

from __future__ import annotations

import dataclasses
import difflib

from research.config import ConfigError, DataConfig, ModelConfig, RunConfig

_GPT2 = dict(vocab_size=50257, max_seq_len=1024, norm="layernorm", activation="gelu", use_bias=True,
             positions="learned", tie_embeddings=True)
_LLAMA = dict(norm="rmsnorm", activation="swiglu", use_bias=False, positions="rope", tie_embeddings=False,
              scaled_residual_init=False)
_GEMMA2 = dict(vocab_size=256000, max_seq_len=8192, head_dim=256, norm="rmsnorm", activation="geglu",
               positions="rope", tie_embeddings=True)  # Gemma-2 adds post-sublayer norms: +2 d per layer (<0.01%)

PUBLISHED: dict[str, ModelConfig] = {
    "gpt2-small": ModelConfig(d_model=768, n_layers=12, n_heads=12, **_GPT2),
    "gpt2-medium": ModelConfig(d_model=1024, n_layers=24, n_heads=16, **_GPT2),
    "gpt2-large": ModelConfig(d_model=1280, n_layers=36, n_heads=20, **_GPT2),
    "gpt2-xl": ModelConfig(d_model=1600, n_layers=48, n_heads=25, **_GPT2),
    "gpt3-175b": ModelConfig(d_model=12288, n_layers=96, n_heads=96, **(_GPT2 | {"max_seq_len": 2048})),
    "llama2-7b": ModelConfig(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, d_ff=11008,
                             max_seq_len=4096, **_LLAMA),
    "llama2-13b": ModelConfig(vocab_size=32000, d_model=5120, n_layers=40, n_heads=40, d_ff=13824,
                              max_seq_len=4096, **_LLAMA),
    "llama2-70b": ModelConfig(vocab_size=32000, d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8, d_ff=28672,
                              max_seq_len=4096, **_LLAMA),
    "llama3-8b": ModelConfig(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, d_ff=14336,
                             max_seq_len=8192, rope_base=500000.0, **_LLAMA),
    "llama3-70b": ModelConfig(vocab_size=128256, d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8, d_ff=28672,
                              max_seq_len=8192, rope_base=500000.0, **_LLAMA),
    "llama3-405b": ModelConfig(vocab_size=128256, d_model=16384, n_layers=126, n_heads=128, n_kv_heads=8,
                               d_ff=53248, max_seq_len=8192, rope_base=500000.0, **_LLAMA),
    "mistral-7b": ModelConfig(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, d_ff=14336,
                              max_seq_len=32768, sliding_window=4096, **_LLAMA),
    "qwen2.5-0.5b": ModelConfig(vocab_size=151936, d_model=896, n_layers=24, n_heads=14, n_kv_heads=2, d_ff=4864,
                                max_seq_len=32768, rope_base=1000000.0, qkv_bias=True,
                                **(_LLAMA | {"tie_embeddings": True})),
    "qwen2.5-7b": ModelConfig(vocab_size=152064, d_model=3584, n_layers=28, n_heads=28, n_kv_heads=4, d_ff=18944,
                              max_seq_len=32768, rope_base=1000000.0, qkv_bias=True, **_LLAMA),
    "gemma2-2b": ModelConfig(d_model=2304, n_layers=26, n_heads=8, n_kv_heads=4, d_ff=9216, **_GEMMA2),
    "gemma2-9b": ModelConfig(d_model=3584, n_layers=42, n_heads=16, n_kv_heads=8, d_ff=14336, **_GEMMA2),
}

# Total parameters of the released checkpoints (safetensors element counts; GPT-3 from Brown et al. 2020).
PUBLISHED_PARAMS: dict[str, int] = {
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "gpt3-175b": 175_000_000_000,
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248,
    "llama3-70b": 70_553_706_496,
    "llama3-405b": 405_853_388_800,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-7b": 7_615_616_512,
    "gemma2-2b": 2_614_341_888,
    "gemma2-9b": 9_241_705_984,
}

# CPU ladder: byte vocabulary, pre-norm RMSNorm + SwiGLU + RoPE, head_dim 32 (width / depth grow together).
_LADDER_SHAPES = {  # name: (d_model, n_layers)
    "ladder-50k": (40, 2),
    "ladder-100k": (56, 2),
    "ladder-200k": (64, 3),
    "ladder-500k": (96, 4),
    "ladder-1m": (128, 5),
    "ladder-2m": (160, 6),
    "ladder-5m": (256, 6),
    "ladder-10m": (320, 8),
    "ladder-20m": (448, 8),
}
LADDER: dict[str, ModelConfig] = {
    name: ModelConfig(d_model=d, n_layers=layers, n_heads=max(d // 32, 1), max_seq_len=1024)
    for name, (d, layers) in _LADDER_SHAPES.items()
}

# The ~25M-parameter benchmark shape of the core-run issue (GPT-style, byte vocabulary).
BENCH = {
    "bench-25m": ModelConfig(d_model=512, n_layers=8, n_heads=8, d_ff=2048, max_seq_len=512, norm="layernorm",
                             activation="gelu", positions="learned"),
}

PRESETS: dict[str, ModelConfig] = PUBLISHED | LADDER | BENCH


def model(name: str) -> ModelConfig:
    """The named shape; an unknown name lists the known ones."""
    if name not in PRESETS:
        near = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(f"unknown preset {name!r}: {hint}known presets: {', '.join(PRESETS)}. Fix: use one of "
                          "them, or a config file")
    return PRESETS[name]


def run_config(name: str, **model_overrides) -> RunConfig:
    """A default RunConfig around a named shape (sequence length capped by the model's context)."""
    shape = dataclasses.replace(model(name), **model_overrides)
    data = DataConfig(seq_len=min(256, shape.max_seq_len))
    if shape.vocab_size < data.vocab_size:
        shape = dataclasses.replace(shape, vocab_size=data.vocab_size)
    return RunConfig(model=shape, data=data)
