"""The seven architecture ablations, each built from a scale's base config so matched sizes follow the scale.

Every builder takes the base RunConfig (pre-norm RMSNorm, SwiGLU with d_ff = 8/3 d, no biases, RoPE, MHA, cosine)
and returns an `Ablation`. Matching is exact where the issue asks for it: GLU variants use 2/3 of the non-GLU d_ff
(3 matrices of 8/3 d vs 2 of 4 d), and GQA/MQA give the key/value parameters they drop back to the SwiGLU d_ff.
"""

from __future__ import annotations

from experiments.ablations.scales import ExperimentError
from experiments.ablations.spec import Ablation, ExtraAxis, Variant
from research.config import RunConfig


def _exact(numerator: int, denominator: int, what: str) -> int:
    if numerator % denominator:
        raise ExperimentError(f"{what}: {numerator}/{denominator} is not a whole number, so the variants cannot be "
                              "matched exactly. Fix: choose d_model / head_dim divisible by 3 in the scale's base")
    return numerator // denominator


def norm_placement(base: RunConfig) -> Ablation:
    depth, lr = base.model.n_layers, base.optim.lr
    return Ablation(
        name="norm_placement", baseline="pre",
        description="pre-norm vs post-norm, across depth (L, 2L) and learning rate (lr, 4 lr)",
        matched="parameters (post-norm has no final norm: d_model fewer) and FLOPs",
        variants=(Variant("pre", (("model.norm_placement", "pre"),)),
                  Variant("post", (("model.norm_placement", "post"),))),
        axes=(ExtraAxis("model.n_layers", (depth, 2 * depth), "depth"), ExtraAxis("optim.lr", (lr, 4 * lr), "lr")),
        literature="Post-norm (Vaswani et al. 2017) trains worse or diverges without long warmup as depth and "
                   "learning rate grow; pre-norm is stable (Xiong et al. 2020, Liu et al. 2020).")


def norm_type(base: RunConfig) -> Ablation:
    return Ablation(
        name="norm_type", baseline="rmsnorm", description="LayerNorm vs RMSNorm (pre-norm, no biases)",
        matched="parameters and FLOPs (one gain vector per norm either way; no LayerNorm bias with biases off)",
        variants=(Variant("rmsnorm", (("model.norm", "rmsnorm"),)),
                  Variant("layernorm", (("model.norm", "layernorm"),))),
        literature="RMSNorm matches LayerNorm's quality at lower cost (Zhang & Sennrich 2019; Narang et al. 2021 "
                   "find no significant quality difference).")


def ffn_activation(base: RunConfig) -> Ablation:
    d = base.model.d_model
    dense = 4 * d
    glu = _exact(2 * dense, 3, "GLU d_ff = 2/3 x 4 d_model")
    return Ablation(
        name="ffn_activation", baseline="relu", description="ReLU vs GeLU vs GeGLU vs SwiGLU feed-forward",
        matched=f"parameters and FLOPs: ReLU/GeLU d_ff = 4d = {dense} (2 matrices), GeGLU/SwiGLU d_ff = 2/3 x 4d = "
                f"{glu} (3 matrices)",
        variants=tuple(Variant(a, (("model.activation", a), ("model.d_ff", dense if a in ("relu", "gelu") else glu)),
                               f"d_ff={dense if a in ('relu', 'gelu') else glu}")
                       for a in ("relu", "gelu", "geglu", "swiglu")),
        literature="GLU variants (GeGLU, SwiGLU) beat ReLU and GeLU at matched parameters; GeLU is close to ReLU "
                   "(Shazeer 2020; Narang et al. 2021).")


def biases(base: RunConfig) -> Ablation:
    return Ablation(
        name="biases", baseline="off", description="biases in every attention and MLP projection: off vs on",
        matched="FLOPs (the weight matrices are identical); 'on' adds the bias vectors (see params)",
        variants=(Variant("off", (("model.use_bias", False),)), Variant("on", (("model.use_bias", True),))),
        literature="Removing biases costs little or no quality and helps stability at scale (PaLM, Chowdhery et al. "
                   "2022; LLaMA); at small scale differences are within noise.")


def positions(base: RunConfig) -> Ablation:
    return Ablation(
        name="positions", baseline="rope",
        description="sinusoidal vs learned vs RoPE vs ALiBi vs none; also evaluated at 2x and 4x the training length",
        matched=f"non-embedding parameters and FLOPs; 'learned' adds a {base.model.max_seq_len} x d_model position "
                "table (trained only up to the training length)",
        variants=tuple(Variant(p, (("model.positions", p),))
                       for p in ("rope", "sinusoidal", "learned", "alibi", "none")),
        eval_lengths=(1, 2, 4),
        literature="At the training length RoPE and ALiBi match or beat learned and sinusoidal positions, and causal "
                   "models without positions (NoPE) come close (Haviv et al. 2022). Beyond it ALiBi extrapolates best; "
                   "sinusoidal, learned and RoPE degrade (Press et al. 2022); NoPE extrapolates partly "
                   "(Kazemnejad et al. 2023).")


def attention(base: RunConfig) -> Ablation:
    m = base.model
    heads, head_dim, d_ff = m.n_heads, m.resolved().head_dim, base.model.resolved().d_ff
    if not base.model.is_glu:
        raise ExperimentError(f"attention ablation: the base model's activation {m.activation!r} is not a GLU. Fix: "
                              "use swiglu or geglu in the scale's base (its d_ff absorbs the dropped K/V parameters)")
    gqa = heads // 2

    def matched_ff(kv: int) -> int:  # K and V lose 2 d (heads - kv) head_dim entries; 3 d x extra d_ff returns them
        return d_ff + _exact(2 * (heads - kv) * head_dim, 3, f"d_ff for n_kv_heads={kv}")

    return Ablation(
        name="attention", baseline="mha", description=f"MHA ({heads} KV heads) vs GQA ({gqa}) vs MQA (1): "
                                                      "quality and KV-cache size",
        matched="parameters and FLOPs: GQA/MQA's dropped K/V projection entries go into the SwiGLU d_ff",
        variants=tuple(Variant(name, (("model.n_kv_heads", kv), ("model.d_ff", matched_ff(kv))),
                               f"n_kv_heads={kv}, d_ff={matched_ff(kv)}")
                       for name, kv in (("mha", heads), ("gqa", gqa), ("mqa", 1))),
        kv_cache=True,
        literature="GQA is close to MHA in quality and MQA slightly worse, for a KV cache n_heads/n_kv_heads times "
                   "smaller (Shazeer 2019; Ainslie et al. 2023).")


def lr_schedule(base: RunConfig) -> Ablation:
    return Ablation(
        name="lr_schedule", baseline="cosine",
        description="cosine vs warmup-stable-decay (20% linear cooldown) vs constant, same peak lr and warmup",
        matched="everything but the schedule (same model, parameters, FLOPs, peak lr, warmup)",
        variants=tuple(Variant(s, (("optim.schedule", s),)) for s in ("cosine", "wsd", "constant")),
        literature="WSD matches cosine at the end of training (Hu et al. 2024, MiniCPM; Hägele et al. 2024); a "
                   "constant lr without a final decay ends at a clearly higher loss.")


BUILDERS = {f.__name__: f for f in (norm_placement, norm_type, ffn_activation, biases, positions, attention,
                                    lr_schedule)}
