"""GPT-2 <-> research.model: config fields and weight layout.

GPT-2's Conv1D weights are stored [in, out] (no transpose needed); c_attn packs q, k and v along its output axis.
GPT-2's "gelu_new" is our tanh GeLU; LayerNorms and every projection carry biases; positions are a learned table.
"""

from __future__ import annotations

import numpy as np

from research.config import ModelConfig
from research.interop.hf_config import Tensors, fail, transformers_module

ACTS = {"gelu_new": "gelu", "relu": "relu"}
TO_HF_ACT = {"gelu": "gelu_new", "relu": "relu"}
IGNORABLE = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older GPT-2 checkpoints


def config_from_hf(hf) -> ModelConfig:
    """ModelConfig of a GPT2Config; unrepresentable options raise by name."""
    if hf.activation_function not in ACTS:
        fail("activation_function", hf.activation_function, "research.model's GeLU is the tanh approximation "
             "(gelu_new); others differ in the logits", f"use a checkpoint with activation_function in {list(ACTS)}")
    for name, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("add_cross_attention", False)):
        if bool(getattr(hf, name, wanted)) != wanted:
            fail(name, getattr(hf, name), "research.model has no such attention variant",
                 f"use a checkpoint with {name}={wanted}")
    return ModelConfig(
        vocab_size=hf.vocab_size, d_model=hf.n_embd, n_layers=hf.n_layer, n_heads=hf.n_head,
        d_ff=hf.n_inner or 4 * hf.n_embd, max_seq_len=hf.n_positions, norm="layernorm", norm_placement="pre",
        norm_eps=float(hf.layer_norm_epsilon), activation=ACTS[hf.activation_function], use_bias=True,
        positions="learned", causal=True, tie_embeddings=bool(hf.tie_word_embeddings),
        init_std=float(getattr(hf, "initializer_range", 0.02)))


def params_from_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], where: str) -> dict:
    """Our parameter tree (float32 NumPy, layers stacked [L, ...]) from GPT-2 tensor names."""
    prefix = "transformer." if "transformer.wte.weight" in tensors else ""
    t = Tensors(tensors, prefix, where)
    cfg = cfg.resolved()
    d, h, hd, f, n = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_ff, cfg.n_layers

    def layers(name: str, shape: tuple, convert=lambda x: x) -> np.ndarray:
        return np.stack([convert(t.take(f"h.{i}.{name}", shape)) for i in range(n)])

    qkv_w = layers("attn.c_attn.weight", (d, 3 * d))  # [L, d, 3d]
    qkv_b = layers("attn.c_attn.bias", (3 * d,))  # [L, 3d]
    wq, wk, wv = (w.reshape(n, d, h, hd) for w in np.split(qkv_w, 3, axis=-1))
    bq, bk, bv = (b.reshape(n, h, hd) for b in np.split(qkv_b, 3, axis=-1))
    params = {
        "embedding": t.take("wte.weight", (cfg.vocab_size, d)),
        "pos_embedding": t.take("wpe.weight", (cfg.max_seq_len, d)),
        "blocks": {
            "attn": {"wq": wq, "wk": wk, "wv": wv, "bq": bq, "bk": bk, "bv": bv,
                     "wo": layers("attn.c_proj.weight", (d, d), lambda w: w.reshape(h, hd, d)),
                     "bo": layers("attn.c_proj.bias", (d,))},
            "mlp": {"w_in": layers("mlp.c_fc.weight", (d, f)), "b_in": layers("mlp.c_fc.bias", (f,)),
                    "w_out": layers("mlp.c_proj.weight", (f, d)), "b_out": layers("mlp.c_proj.bias", (d,))},
            "attn_norm": {"scale": layers("ln_1.weight", (d,)), "bias": layers("ln_1.bias", (d,))},
            "mlp_norm": {"scale": layers("ln_2.weight", (d,)), "bias": layers("ln_2.bias", (d,))},
        },
        "final_norm": {"scale": t.take("ln_f.weight", (d,)), "bias": t.take("ln_f.bias", (d,))},
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = t.take("lm_head.weight", (cfg.vocab_size, d), prefix=False).T
    t.check_all_used(IGNORABLE + (("lm_head.weight",) if cfg.tie_embeddings else ()))
    return params


def check_exportable(cfg: ModelConfig) -> None:
    """Raise naming the first option a GPT-2 checkpoint cannot represent."""
    arch, shape = "--arch gpt2", cfg.resolved()
    checks = (
        ("model.positions", cfg.positions, "learned", "GPT-2 has a learned position table",
         "train with model.positions=learned, or export RoPE models with --arch llama"),
        ("model.norm", cfg.norm, "layernorm", "GPT-2 uses LayerNorm", "train with model.norm=layernorm"),
        ("model.use_bias", cfg.use_bias, True, "GPT-2's LayerNorms and projections all have biases",
         "train with model.use_bias=true"),
        ("model.norm_placement", cfg.norm_placement, "pre", "GPT-2 is pre-norm", "train with norm_placement=pre"),
        ("model.n_kv_heads", shape.n_kv_heads, cfg.n_heads, "GPT-2 has multi-head attention only (no GQA/MQA)",
         "train with model.n_kv_heads=null, or export with --arch llama"),
        ("model.head_dim", shape.head_dim, cfg.d_model // cfg.n_heads, "GPT-2 derives head_dim = d_model / n_heads",
         "train with model.head_dim=null"),
        ("model.causal", cfg.causal, True, "GPT-2 is causal", "train with model.causal=true"),
        ("model.sliding_window", cfg.sliding_window, None, "GPT-2 attends to the whole context",
         "train with model.sliding_window=null"),
    )
    for field, value, wanted, problem, fix in checks:
        if value != wanted:
            fail(field, value, f"{arch}: {problem}", fix)
    if cfg.activation not in TO_HF_ACT:
        fail("model.activation", cfg.activation, f"{arch}: GPT-2's MLP is ungated (gelu or relu)",
             "train with model.activation=gelu, or export GLU models with --arch llama")


def config_to_hf(cfg: ModelConfig, specials: dict):
    """transformers GPT2Config for `cfg`; specials: bos/eos/pad_token_id."""
    check_exportable(cfg)
    return transformers_module().GPT2Config(
        vocab_size=cfg.vocab_size, n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads,
        n_inner=cfg.resolved().d_ff,
        n_positions=cfg.max_seq_len, activation_function=TO_HF_ACT[cfg.activation], layer_norm_epsilon=cfg.norm_eps,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=0.0, tie_word_embeddings=cfg.tie_embeddings,
        initializer_range=cfg.init_std, **specials)


def params_to_hf(cfg: ModelConfig, params: dict) -> dict[str, np.ndarray]:
    """GPT-2 tensor names -> float32 arrays (the inverse of params_from_hf)."""
    d = cfg.d_model
    blocks = params["blocks"]
    attn, mlp = blocks["attn"], blocks["mlp"]
    out = {"transformer.wte.weight": params["embedding"], "transformer.wpe.weight": params["pos_embedding"],
           "transformer.ln_f.weight": params["final_norm"]["scale"],
           "transformer.ln_f.bias": params["final_norm"]["bias"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = params["lm_head"].T
    for i in range(cfg.n_layers):
        p = f"transformer.h.{i}."
        out[p + "attn.c_attn.weight"] = np.concatenate([attn[k][i].reshape(d, d) for k in ("wq", "wk", "wv")], -1)
        out[p + "attn.c_attn.bias"] = np.concatenate([attn[k][i].reshape(d) for k in ("bq", "bk", "bv")])
        out[p + "attn.c_proj.weight"] = attn["wo"][i].reshape(d, d)
        out[p + "attn.c_proj.bias"] = attn["bo"][i]
        out[p + "mlp.c_fc.weight"], out[p + "mlp.c_fc.bias"] = mlp["w_in"][i], mlp["b_in"][i]
        out[p + "mlp.c_proj.weight"], out[p + "mlp.c_proj.bias"] = mlp["w_out"][i], mlp["b_out"][i]
        for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            out[p + f"{theirs}.weight"], out[p + f"{theirs}.bias"] = blocks[ours]["scale"][i], blocks[ours]["bias"][i]
    return out
