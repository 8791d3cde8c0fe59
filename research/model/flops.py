"""Exact parameter and FLOP counts from a `ModelConfig` alone, with nothing materialised.

Conventions (recorded in every run summary as `flop_convention`):
- N (`params`) counts every parameter; N_non-embedding leaves out the token embedding, the learned position table
  and an untied output head (Kaplan et al.'s convention).
- Training FLOPs per token (`train_flops_per_token`, the exact count used for C): 6 x (every weight-matrix entry a
  token multiplies, the output head included) + 12 x L x heads x head_dim x T for the attention scores and the
  weighted sum, dense (no causal discount: that is what a dense kernel computes). Elementwise work is not counted.
- MFU FLOPs per token (`mfu_flops_per_token`): 6 N_non-embedding + 12 L (heads x head_dim) T (PaLM appendix B).
- 6ND: 6 x N (total) x D, the Chinchilla shorthand.
- An adapted run (adapt.method other than full) trains only what the method adds: its weight entries count 6, the
  frozen base's 4 (the forward pass and the gradient that flows back through it; no weight gradient is computed).
"""

from __future__ import annotations

from dataclasses import dataclass

from research.config import AdaptConfig, ModelConfig

FLOP_CONVENTION = (
    "C = D x train_flops_per_token, train_flops_per_token = 6 x (weight-matrix entries used per token, output head "
    "included; 4 for frozen base weights, 6 for LoRA and adapter weights) + 12 x L x n_heads x head_dim x T (dense "
    "attention); MFU uses 6 x N_non_embedding + "
    "12 x L x n_heads x head_dim x T; N excludes nothing, N_non_embedding excludes token/position embeddings and an "
    "untied output head"
)


@dataclass(frozen=True)
class ParamCount:
    total: int
    non_embedding: int
    embedding: int  # token embedding + learned positions + untied head
    per_layer: int


def _block_params(cfg: ModelConfig) -> tuple[int, int]:
    """(all parameters, weight-matrix entries) of one block."""
    cfg = cfg.resolved()
    d, h, kv, hd, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff
    attn_matrices = d * h * hd + 2 * d * kv * hd + h * hd * d
    mlp_matrices = (3 if cfg.is_glu else 2) * d * f
    biases = 0
    if cfg.use_bias or cfg.qkv_bias:
        biases += h * hd + 2 * kv * hd  # q, k, v
    if cfg.use_bias:
        biases += d + (2 if cfg.is_glu else 1) * f + d  # o; MLP in (and gate), out
    norms = 2 * _norm_params(cfg)
    matrices = attn_matrices + mlp_matrices
    return matrices + biases + norms, matrices


def _norm_params(cfg: ModelConfig) -> int:
    return cfg.d_model * (2 if cfg.norm == "layernorm" and cfg.use_bias else 1)


def count_params(cfg: ModelConfig) -> ParamCount:
    """Exactly the number of scalars `Transformer(cfg).init` creates."""
    per_layer, _ = _block_params(cfg)
    embedding = cfg.vocab_size * cfg.d_model
    if cfg.positions == "learned":
        embedding += cfg.max_seq_len * cfg.d_model
    if not cfg.tie_embeddings:
        embedding += cfg.d_model * cfg.vocab_size
    final_norm = _norm_params(cfg) if cfg.norm_placement == "pre" else 0
    non_embedding = cfg.n_layers * per_layer + final_norm
    return ParamCount(non_embedding + embedding, non_embedding, embedding, per_layer)


def attention_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Forward + backward of q k^T and the weighted sum over values: 3 x 2 x 2 x L x heads x head_dim x T."""
    return 12 * cfg.n_layers * cfg.n_heads * cfg.resolved().head_dim * seq_len


def adapter_matrix_entries(cfg: ModelConfig, adapt: AdaptConfig | None) -> int:
    """Weight-matrix entries an adaptation method adds to every token's path (LoRA's A and B, adapters' W_down and
    W_up), over all layers; 0 for full fine-tuning."""
    if adapt is None or adapt.method == "full":
        return 0
    cfg = cfg.resolved()
    d, q, kv, f = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.d_ff
    if adapt.method == "lora":
        shapes = {"q": (d, q), "k": (d, kv), "v": (d, kv), "o": (q, d), "mlp_in": (d, f), "mlp_out": (f, d),
                  "mlp_gate": (d, f) if cfg.is_glu else (0, 0)}  # no gate matrix to adapt without a GLU
        per_layer = sum(adapt.lora_rank * (n_in + n_out) for n_in, n_out in (shapes[t] for t in adapt.targets))
    else:
        per_layer = len(adapt.places) * 2 * d * adapt.adapter_size
    return cfg.n_layers * per_layer


def train_flops_per_token(cfg: ModelConfig, seq_len: int, adapt: AdaptConfig | None = None) -> int:
    """Exact dense matmul FLOPs of one training token (forward + backward = 3 x forward = 6 per weight; a frozen
    base weight under `adapt` costs 4: forward and the gradient through it, no weight gradient). A soft prompt of k
    vectors runs the blocks on seq_len + k positions (the output head on the seq_len tokens); a prefix of k keys
    and values lengthens only what attention attends over. Their cost is spread over the tokens (rounded down)."""
    _, matrices = _block_params(cfg)
    blocks, head = cfg.n_layers * matrices, cfg.d_model * cfg.vocab_size
    per_base_entry = 6 if adapt is None or adapt.method == "full" else 4
    k = 0 if adapt is None else adapt.virtual
    span = seq_len + k if k and adapt.method == "prompt_tuning" else seq_len  # positions the blocks run on
    per_sequence = span * (per_base_entry * blocks + 6 * adapter_matrix_entries(cfg, adapt) +
                           attention_flops_per_token(cfg, seq_len + k)) + seq_len * per_base_entry * head
    return per_sequence // seq_len


def forward_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Exact dense matmul FLOPs of one token's forward pass alone (a distillation teacher's share of a step)."""
    _, matrices = _block_params(cfg)
    return 2 * (cfg.n_layers * matrices + cfg.d_model * cfg.vocab_size) + attention_flops_per_token(cfg, seq_len) // 3


def mfu_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """The MFU convention: 6 N_non-embedding + 12 L (heads x head_dim) T."""
    return 6 * count_params(cfg).non_embedding + attention_flops_per_token(cfg, seq_len)


def flops_6nd(cfg: ModelConfig, tokens: int) -> float:
    return 6.0 * count_params(cfg).total * tokens


def run_flops(cfg: ModelConfig, seq_len: int, tokens: int, adapt: AdaptConfig | None = None,
              teacher: ModelConfig | None = None) -> dict:
    """The FLOP and parameter fields every run summary records (`params`: the model's own, adapters excluded;
    `flops`: what the run spent, a distillation teacher's forward passes included)."""
    params = count_params(cfg)
    per_token = train_flops_per_token(cfg, seq_len, adapt)
    if teacher is not None:
        per_token += forward_flops_per_token(teacher, seq_len)
    return {
        "params": params.total,
        "params_non_embedding": params.non_embedding,
        "tokens": tokens,
        "flops_per_token": per_token,
        "flops": float(per_token) * tokens,
        "flops_6nd": flops_6nd(cfg, tokens),
        "flop_convention": FLOP_CONVENTION,
    }
