"""LLaMA family (LLaMA 2/3, Mistral, Qwen2) <-> research.model: config fields and weight layout.

HF's Linear weights are [out, in]; its q/k projections are already permuted for the rotate-half RoPE that
research.model.positions.apply_rope implements, so each weight needs only a transpose and a reshape.
Our MLP computes act(W_gate x) * W_in x: HF's gate_proj is W_gate and up_proj is W_in.
"""

from __future__ import annotations

import numpy as np

from research.config import ModelConfig
from research.interop.hf_config import Tensors, fail, rope_base, transformers_module

GLU = {"silu": "swiglu", "swish": "swiglu", "gelu_new": "geglu", "gelu_pytorch_tanh": "geglu"}
TO_HF_ACT = {"swiglu": "silu", "geglu": "gelu_new"}  # gelu_new is our tanh GeLU, formula for formula
IGNORABLE = ("rotary_emb.inv_freq",)


def config_from_hf(hf) -> ModelConfig:
    """ModelConfig of a LlamaConfig / MistralConfig / Qwen2Config; unrepresentable options raise by name."""
    act = hf.hidden_act
    if act not in GLU:
        fail("hidden_act", act, "research.model's gated MLPs are SwiGLU (silu) and GeGLU (tanh GeLU)",
             f"use a checkpoint with hidden_act in {sorted(GLU)}")
    heads = hf.num_attention_heads
    kv = getattr(hf, "num_key_value_heads", None) or heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    default_head_dim = hf.hidden_size // heads if hf.hidden_size % heads == 0 else None
    attention_bias, mlp_bias = bool(getattr(hf, "attention_bias", False)), bool(getattr(hf, "mlp_bias", False))
    return ModelConfig(
        vocab_size=hf.vocab_size, d_model=hf.hidden_size, n_layers=hf.num_hidden_layers, n_heads=heads,
        n_kv_heads=None if kv == heads else kv, head_dim=None if head_dim == default_head_dim else head_dim,
        d_ff=hf.intermediate_size, max_seq_len=hf.max_position_embeddings, norm="rmsnorm", norm_placement="pre",
        norm_eps=float(hf.rms_norm_eps), activation=GLU[act],
        use_bias=attention_bias or mlp_bias,  # a missing half is imported as zeros: exact, and trainable later
        qkv_bias=hf.model_type == "qwen2", positions="rope", rope_base=rope_base(hf), causal=True,
        sliding_window=_sliding_window(hf), tie_embeddings=bool(hf.tie_word_embeddings),
        init_std=float(getattr(hf, "initializer_range", 0.02)))


def _sliding_window(hf) -> int | None:
    """Mistral applies config.sliding_window to every layer; Qwen2 only to its "sliding_attention" layer types.

    HF's window w lets a query at i see keys j with i - w < j <= i: w positions including itself, as ours does.
    """
    window = getattr(hf, "sliding_window", None)
    if hf.model_type == "llama" or window is None:
        return None
    kinds = set(getattr(hf, "layer_types", None) or []) if hf.model_type == "qwen2" else {"sliding_attention"}
    if kinds == {"full_attention"}:
        return None
    if kinds != {"sliding_attention"}:
        fail("layer_types", getattr(hf, "layer_types", None), "mixes full and sliding-window layers, but "
             "research.model uses one window for every layer", "use a checkpoint whose layers all agree")
    return int(window)


def params_from_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], where: str) -> dict:
    """Our parameter tree (float32 NumPy, layers stacked [L, ...]) from HF tensor names."""
    prefix = "model." if "model.embed_tokens.weight" in tensors else ""
    t = Tensors(tensors, prefix, where)
    cfg = cfg.resolved()
    d, h, kv, hd, f, n = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff, cfg.n_layers

    def layers(name: str, shape: tuple, convert, optional: bool = False) -> np.ndarray:
        out = []
        for i in range(n):
            key = f"layers.{i}.{name}"
            out.append(convert(t.take(key, shape)) if not optional or t.has(key) else None)
        if any(x is None for x in out):  # absent bias (attention_bias xor mlp_bias): an exact zero
            return np.zeros((n, *convert(np.zeros(shape, np.float32)).shape), np.float32)
        return np.stack(out)

    attn = {"wq": layers("self_attn.q_proj.weight", (h * hd, d), lambda w: w.T.reshape(d, h, hd)),
            "wk": layers("self_attn.k_proj.weight", (kv * hd, d), lambda w: w.T.reshape(d, kv, hd)),
            "wv": layers("self_attn.v_proj.weight", (kv * hd, d), lambda w: w.T.reshape(d, kv, hd)),
            "wo": layers("self_attn.o_proj.weight", (d, h * hd), lambda w: w.T.reshape(h, hd, d))}
    mlp = {"w_in": layers("mlp.up_proj.weight", (f, d), np.transpose),
           "w_gate": layers("mlp.gate_proj.weight", (f, d), np.transpose),
           "w_out": layers("mlp.down_proj.weight", (d, f), np.transpose)}
    if cfg.use_bias or cfg.qkv_bias:
        for ours, theirs, heads in (("bq", "q_proj", h), ("bk", "k_proj", kv), ("bv", "v_proj", kv)):
            attn[ours] = layers(f"self_attn.{theirs}.bias", (heads * hd,), lambda b, k=heads: b.reshape(k, hd),
                                optional=cfg.use_bias)
    if cfg.use_bias:
        attn["bo"] = layers("self_attn.o_proj.bias", (d,), lambda b: b, optional=True)
        for ours, theirs in (("b_in", "up_proj"), ("b_gate", "gate_proj"), ("b_out", "down_proj")):
            mlp[ours] = layers(f"mlp.{theirs}.bias", (d,) if ours == "b_out" else (f,), lambda b: b, optional=True)
    params = {
        "embedding": t.take("embed_tokens.weight", (cfg.vocab_size, d)),
        "blocks": {"attn": attn, "mlp": mlp,
                   "attn_norm": {"scale": layers("input_layernorm.weight", (d,), lambda w: w)},
                   "mlp_norm": {"scale": layers("post_attention_layernorm.weight", (d,), lambda w: w)}},
        "final_norm": {"scale": t.take("norm.weight", (d,))},
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = t.take("lm_head.weight", (cfg.vocab_size, d), prefix=False).T
    # a tied checkpoint may store the shared matrix twice, as lm_head.weight too
    t.check_all_used(IGNORABLE + (("lm_head.weight",) if cfg.tie_embeddings else ()))
    return params


def check_exportable(cfg: ModelConfig) -> str:
    """The HF model type for `cfg` (llama, mistral for a sliding window, qwen2 for q/k/v-only biases), or an error
    naming the first option a LLaMA-family checkpoint cannot represent."""
    arch = "--arch llama"
    if cfg.positions != "rope":
        fail("model.positions", cfg.positions, f"{arch}: LLaMA-family models use RoPE only",
             "train with model.positions=rope, or export learned positions with --arch gpt2")
    if cfg.norm != "rmsnorm":
        fail("model.norm", cfg.norm, f"{arch}: LLaMA-family models use RMSNorm", "train with model.norm=rmsnorm")
    if cfg.norm_placement != "pre":
        fail("model.norm_placement", cfg.norm_placement, f"{arch}: LLaMA-family models are pre-norm",
             "train with model.norm_placement=pre")
    if cfg.activation not in TO_HF_ACT:
        fail("model.activation", cfg.activation, f"{arch}: LLaMA-family MLPs are gated (SwiGLU / GeGLU)",
             "train with model.activation=swiglu or geglu, or export relu/gelu models with --arch gpt2")
    if not cfg.causal:
        fail("model.causal", cfg.causal, f"{arch}: causal LMs only", "train with model.causal=true")
    if cfg.sliding_window is not None and cfg.use_bias:
        fail("model.sliding_window", cfg.sliding_window, f"{arch}: Mistral (the sliding-window member) has no "
             "biases and Qwen2 only q/k/v biases", "train with model.use_bias=false (model.qkv_bias=true is fine)")
    if cfg.qkv_bias and not cfg.use_bias:
        return "qwen2"
    return "mistral" if cfg.sliding_window is not None else "llama"


def config_to_hf(cfg: ModelConfig, specials: dict):
    """transformers config object for `cfg` (check_exportable first); specials: bos/eos/pad_token_id."""
    model_type, cfg = check_exportable(cfg), cfg.resolved()
    tf = transformers_module()
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                  num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                  num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                  hidden_act=TO_HF_ACT[cfg.activation], max_position_embeddings=cfg.max_seq_len,
                  rms_norm_eps=cfg.norm_eps, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base},
                  tie_word_embeddings=cfg.tie_embeddings, initializer_range=cfg.init_std, **specials)
    if model_type == "qwen2":
        window = cfg.sliding_window
        return tf.Qwen2Config(**common, use_sliding_window=window is not None, sliding_window=window,
                              max_window_layers=0, layer_types=["sliding_attention" if window else "full_attention"]
                              * cfg.n_layers)
    if model_type == "mistral":
        return tf.MistralConfig(**common, sliding_window=cfg.sliding_window)
    return tf.LlamaConfig(**common, attention_bias=cfg.use_bias, mlp_bias=cfg.use_bias)


def params_to_hf(cfg: ModelConfig, params: dict) -> dict[str, np.ndarray]:
    """HF tensor names -> float32 arrays (the inverse of params_from_hf)."""
    d, n = cfg.d_model, cfg.n_layers
    blocks = params["blocks"]
    attn, mlp = blocks["attn"], blocks["mlp"]
    out = {"model.embed_tokens.weight": params["embedding"], "model.norm.weight": params["final_norm"]["scale"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = params["lm_head"].T
    for i in range(n):
        p = f"model.layers.{i}."
        out[p + "self_attn.q_proj.weight"] = attn["wq"][i].reshape(d, -1).T
        out[p + "self_attn.k_proj.weight"] = attn["wk"][i].reshape(d, -1).T
        out[p + "self_attn.v_proj.weight"] = attn["wv"][i].reshape(d, -1).T
        out[p + "self_attn.o_proj.weight"] = attn["wo"][i].reshape(-1, d).T
        out[p + "mlp.up_proj.weight"] = mlp["w_in"][i].T
        out[p + "mlp.gate_proj.weight"] = mlp["w_gate"][i].T
        out[p + "mlp.down_proj.weight"] = mlp["w_out"][i].T
        out[p + "input_layernorm.weight"] = blocks["attn_norm"]["scale"][i]
        out[p + "post_attention_layernorm.weight"] = blocks["mlp_norm"]["scale"][i]
        if cfg.use_bias or cfg.qkv_bias:
            for ours, theirs in (("bq", "q_proj"), ("bk", "k_proj"), ("bv", "v_proj")):
                out[p + f"self_attn.{theirs}.bias"] = attn[ours][i].reshape(-1)
        if cfg.use_bias:
            out[p + "self_attn.o_proj.bias"] = attn["bo"][i]
            for ours, theirs in (("b_in", "up_proj"), ("b_gate", "gate_proj"), ("b_out", "down_proj")):
                out[p + f"mlp.{theirs}.bias"] = mlp[ours][i]
    return out
