"""A plain eager PyTorch GPT of a RunConfig's shape: the paired reference of `python -m research.bench --against torch`.

The architecture follows the config (norm, activation, positions, GQA, tied embeddings, biases), written the way a
nanoGPT user would: fused QKV projection, `F.scaled_dot_product_attention(is_causal=True)`, cross-entropy, AdamW
with global-norm clipping. Only the timing is compared, never the numbers: initialisations differ.
"""

from __future__ import annotations

import math
import time

import numpy as np

from research.config import ConfigError, ModelConfig, RunConfig

INSTALL_HINT = "pip install -e '.[hf]' (the CPU build of torch)"


def import_torch():
    """torch, or a ConfigError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(f"--against torch needs PyTorch, which is not installed. Fix: {INSTALL_HINT}.") from None
    return torch


def _check_supported(cfg: ModelConfig) -> None:
    for name, ok in (("positions", cfg.positions in ("none", "learned", "sinusoidal", "rope")),
                     ("sliding_window", cfg.sliding_window is None), ("causal", cfg.causal),
                     ("norm_placement", cfg.norm_placement == "pre"), ("dropout", cfg.dropout == 0.0)):
        if not ok:
            raise ConfigError(f"model.{name}={getattr(cfg, name)!r} has no PyTorch reference. Fix: benchmark "
                              "--against torch with pre-norm, causal, dropout-free models with none/learned/"
                              "sinusoidal/RoPE positions and no sliding window.")


def build_gpt(cfg: ModelConfig):
    """torch.nn.Module: tokens [batch, T] int64 -> logits [batch, T, vocab]."""
    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional
    _check_supported(cfg)
    cfg = cfg.resolved()
    d, h, kv, hd, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff
    bias = cfg.use_bias

    def norm():
        if cfg.norm == "rmsnorm":
            return nn.RMSNorm(d, eps=cfg.norm_eps)
        return nn.LayerNorm(d, eps=cfg.norm_eps, bias=bias)

    act = {"relu": F.relu, "gelu": F.gelu, "geglu": F.gelu, "swiglu": F.silu}[cfg.activation]

    def rope(x, cos, sin):  # x: [batch, heads, T, head_dim], rotate-half layout
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm, self.mlp_norm = norm(), norm()
            self.qkv = nn.Linear(d, (h + 2 * kv) * hd, bias=bias or cfg.qkv_bias)
            self.proj = nn.Linear(h * hd, d, bias=bias)
            self.w_in = nn.Linear(d, 2 * f if cfg.is_glu else f, bias=bias)
            self.w_out = nn.Linear(f, d, bias=bias)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.attn_norm(x)).split([h * hd, kv * hd, kv * hd], dim=-1)
            q, k, v = (z.view(b, t, -1, hd).transpose(1, 2) for z in (q, k, v))  # [batch, heads, T, head_dim]
            if cos is not None:
                q, k = rope(q, cos, sin), rope(k, cos, sin)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv != h)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, h * hd))
            hidden = self.w_in(self.mlp_norm(x))
            if cfg.is_glu:
                value, gate = hidden.chunk(2, dim=-1)
                hidden = act(gate) * value
            else:
                hidden = act(hidden)
            return x + self.w_out(hidden)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(cfg.vocab_size, d)
            self.pos = nn.Embedding(cfg.max_seq_len, d) if cfg.positions == "learned" else None
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.final_norm = norm()
            self.head = nn.Linear(d, cfg.vocab_size, bias=False)
            if cfg.tie_embeddings:
                self.head.weight = self.embedding.weight
            for p in self.parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=cfg.init_std)

        def forward(self, tokens):
            t = tokens.shape[1]
            pos = torch.arange(t)
            x = self.embedding(tokens)
            cos = sin = None
            if self.pos is not None:
                x = x + self.pos(pos)
            elif cfg.positions == "sinusoidal":
                inv = 1.0 / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
                ang = pos[:, None].float() * inv
                x = x * math.sqrt(d) + torch.stack([ang.sin(), ang.cos()], dim=-1).reshape(t, -1)[:, :d]
            elif cfg.positions == "rope":
                inv = cfg.rope_base ** (-torch.arange(0, hd // 2, dtype=torch.float32) * 2.0 / hd)
                ang = pos[:, None].float() * inv  # [T, head_dim / 2]
                cos, sin = ang.cos(), ang.sin()
            for block in self.blocks:
                x = block(x, cos, sin)
            return self.head(self.final_norm(x))

    return GPT()


class TorchTrainer:
    """One AdamW training step of the reference GPT per `step()`, on fixed random token batches."""

    def __init__(self, config: RunConfig, threads: int, seed: int = 0):
        torch = import_torch()
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        self.torch, self.config = torch, config
        self.model = build_gpt(config.model)
        o = config.optim
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                     weight_decay=o.weight_decay)
        rng = np.random.default_rng(seed)
        shape = (config.batch_size, config.data.seq_len + 1)
        self.batches = [torch.from_numpy(rng.integers(0, min(config.model.vocab_size, 256), shape).astype(np.int64))
                        for _ in range(2)]
        self.count = 0

    def step(self) -> float:
        """Seconds for one forward, backward, clip and AdamW update."""
        torch, F = self.torch, self.torch.nn.functional
        tokens = self.batches[self.count % 2]
        self.count += 1
        start = time.perf_counter()
        logits = self.model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.opt.step()
        loss.item()
        return time.perf_counter() - start
