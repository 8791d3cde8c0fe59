"""Parameter and FLOP accounting against the parameters `Transformer.init` really creates, and closed forms."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from research.config import AdaptConfig, ModelConfig
from research.model.flops import (
    adapter_matrix_entries,
    count_params,
    flops_6nd,
    mfu_flops_per_token,
    run_flops,
    train_flops_per_token,
)
from research.model.transformer import Transformer
from research.presets import PUBLISHED, PUBLISHED_PARAMS

from .harness import abstract_params, fast_jit, replace, tiny

TOKENS = jnp.zeros((1, 8), jnp.int32)

# Every axis that changes the count; d_model 24 so that head_dim = 6 differs from any explicit head_dim.
GRID = {
    "default": tiny(d_model=24),
    "layernorm-bias-gelu-learned-untied": tiny(d_model=24, norm="layernorm", use_bias=True, activation="gelu",
                                               positions="learned", tie_embeddings=False),
    "layernorm-nobias-relu": tiny(d_model=24, norm="layernorm", activation="relu"),
    "rmsnorm-bias-geglu": tiny(d_model=24, use_bias=True, activation="geglu"),
    "qkv-bias-only-mqa": tiny(d_model=24, qkv_bias=True, n_kv_heads=1),
    "qkv-bias-and-bias": tiny(d_model=24, qkv_bias=True, use_bias=True),
    "mha-untied": tiny(d_model=24, n_kv_heads=None, tie_embeddings=False),
    "gqa-head-dim-10": tiny(d_model=24, n_heads=4, n_kv_heads=2, head_dim=10),
    "post-norm-layernorm-bias": tiny(d_model=24, norm_placement="post", norm="layernorm", use_bias=True),
    "default-d-ff-glu": tiny(d_model=24, d_ff=None, activation="swiglu"),
    "default-d-ff-relu-learned": tiny(d_model=24, d_ff=None, activation="relu", positions="learned",
                                      max_seq_len=32),
    "three-layers-alibi-6-heads": tiny(d_model=24, n_layers=3, n_heads=6, n_kv_heads=3, positions="alibi"),
}
EMBEDDING_LEAVES = ("embedding", "pos_embedding", "lm_head")


def _size(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("case", list(GRID))
def test_count_params_equals_init(case):
    cfg = GRID[case]
    params = abstract_params(Transformer(cfg), TOKENS)  # the shapes `init` creates, traced without computing
    counted = count_params(cfg)
    assert counted.total == _size(params)
    embedding = sum(math.prod(params[name].shape) for name in EMBEDDING_LEAVES if name in params)
    assert counted.embedding == embedding
    assert counted.non_embedding == counted.total - embedding
    assert counted.per_layer * cfg.n_layers == _size(params["blocks"])
    assert ("pos_embedding" in params) == (cfg.positions == "learned")
    assert ("lm_head" in params) == (not cfg.tie_embeddings)


def test_real_init_creates_float32_params_of_the_counted_size():
    """One concrete init (the grid traces `init` abstractly, which yields the same tree): float32 parameters whatever
    compute_dtype, the counted size, and the abstract shapes. The rbg key only makes the compile cheaper."""
    cfg = replace(GRID["layernorm-bias-gelu-learned-untied"], compute_dtype="bfloat16", n_kv_heads=2, head_dim=10)
    real = nn.meta.unbox(fast_jit(Transformer(cfg).init)(jax.random.key(0, impl="rbg"), TOKENS))["params"]
    assert {leaf.dtype for leaf in jax.tree.leaves(real)} == {jnp.dtype(jnp.float32)}
    assert sum(leaf.size for leaf in jax.tree.leaves(real)) == count_params(cfg).total
    abstract = abstract_params(Transformer(cfg), TOKENS)
    assert jax.tree.map(lambda a: a.shape, real) == jax.tree.map(lambda a: a.shape, abstract)
    blocks = real["blocks"]  # init_std for inputs; GPT-2's init_std / sqrt(2 L) for the residual outputs
    resid = cfg.init_std / math.sqrt(2 * cfg.n_layers)
    for leaf, std in ((blocks["attn"]["wq"], cfg.init_std), (blocks["mlp"]["w_in"], cfg.init_std),
                      (blocks["attn"]["wo"], resid), (blocks["mlp"]["w_out"], resid)):
        assert float(jnp.std(leaf)) == pytest.approx(std, rel=0.15)
    assert not jnp.any(blocks["attn"]["bq"]) and jnp.all(blocks["attn_norm"]["scale"] == 1)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_presets_match_released_checkpoints(name):
    cfg = PUBLISHED[name]
    params = abstract_params(Transformer(cfg), TOKENS)  # eval_shape: a 405B model costs nothing
    total = _size(params)
    assert total == count_params(cfg).total
    assert abs(total - PUBLISHED_PARAMS[name]) <= 0.01 * PUBLISHED_PARAMS[name], (total, PUBLISHED_PARAMS[name])


def test_gpt2_small_is_exact():
    """GPT-2 small (tied, learned positions, biases everywhere) is our architecture exactly: 124,439,808."""
    assert count_params(PUBLISHED["gpt2-small"]).total == 124_439_808


FLOPS_CFG = ModelConfig(vocab_size=259, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                        activation="swiglu", tie_embeddings=False)  # head_dim 16


def test_train_flops_per_token_closed_form():
    # Per layer: wq 64*4*16 = 4096, wk = wv = 64*2*16 = 2048, wo 4096, SwiGLU 3*64*128 = 24576 -> 36864.
    # Two layers 73728, output head 64*259 = 16576: 90304 entries, x6 (fwd + bwd) = 541824.
    # Attention at T = 32: scores and weighted sum, 2 * 2 FLOPs each per (head, dim, key), x3: 12*2*4*16*32 = 49152.
    assert train_flops_per_token(FLOPS_CFG, 32) == 541824 + 49152
    # MFU: 6 * non-embedding (73728 matrices + 2 layers * 2 norms * 64 + final norm 64 = 74048) + attention.
    assert mfu_flops_per_token(FLOPS_CFG, 32) == 6 * 74048 + 49152


def test_flops_6nd_and_run_summary():
    n = _size(abstract_params(Transformer(FLOPS_CFG), TOKENS))
    assert n == 74048 + 2 * 16576
    tokens = 3_000_000
    assert flops_6nd(FLOPS_CFG, tokens) == 6 * n * tokens
    summary = run_flops(FLOPS_CFG, 32, tokens)
    assert summary["params"] == n and summary["params_non_embedding"] == 74048
    assert summary["flops"] == (541824 + 49152) * tokens
    assert summary["flops_6nd"] == 6 * n * tokens


@pytest.mark.parametrize("adapt,added", [
    # LoRA r=2: q 2*(64+64) = 256, v 2*(64+32) = 192, gate 2*(64+128) = 384 -> 832 per layer, two layers
    (AdaptConfig(method="lora", lora_rank=2, lora_targets="q,v,mlp_gate"), 1664),
    # adapters of width 8 after attention and MLP: 2 places * (W_down 64*8 + W_up 8*64) = 2048 per layer
    (AdaptConfig(method="adapter_serial", adapter_size=8), 4096),
])
def test_adapted_training_counts_frozen_weights_at_4_flops_and_added_ones_at_6(adapt, added):
    model = abstract_params(Transformer(FLOPS_CFG, adapt=adapt), TOKENS)
    matrices = [x for path, x in jax.tree_util.tree_leaves_with_path(model)
                if path[-1].key.startswith(("lora_", "w_down", "w_up"))]
    assert sum(x.size for x in matrices) == added == adapter_matrix_entries(FLOPS_CFG, adapt)  # the model agrees
    assert train_flops_per_token(FLOPS_CFG, 32, adapt) == 4 * 90304 + 6 * added + 49152
    assert train_flops_per_token(FLOPS_CFG, 32, AdaptConfig()) == 541824 + 49152  # full fine-tuning: all 6


def test_virtual_tokens_count_the_positions_they_add():
    """k = 8 virtual tokens at T = 32. A soft prompt runs the blocks (frozen: 4 per entry) on 40 positions and the
    head on 32: (40 * (4 * 73728 + 12*2*4*16*40) + 32 * 4 * 16576) / 32 per token. A prefix adds only keys:
    4 * 90304 + 12*2*4*16*40."""
    prompt = AdaptConfig(method="prompt_tuning", virtual_tokens=8)
    assert train_flops_per_token(FLOPS_CFG, 32, prompt) == (40 * (4 * 73728 + 61440) + 32 * 4 * 16576) // 32
    prefix = AdaptConfig(method="prefix_tuning", virtual_tokens=8)
    assert train_flops_per_token(FLOPS_CFG, 32, prefix) == 4 * 90304 + 61440
