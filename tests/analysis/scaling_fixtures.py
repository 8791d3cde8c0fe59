"""Hand-made sweep results in exactly the shape the training code writes (runs/<name>-<run_id>/...).

Losses follow a known Chinchilla law with log-normal noise; each run's training curve follows the same law at the
tokens seen so far, so Approaches 1, 2 and 3 all have a known answer: a = beta / (alpha + beta).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

# Hoffmann et al.'s published fit: the law the hand-made sweeps are drawn from.
LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# Besiroglu et al.'s refit of Chinchilla's data: the law of the recovery tests.
TRUE = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
VOCAB = 32000
SEQ = 1024
# (n_layers, d_model): total N = 12 L d^2 + V d, from about 2e7 to 1.5e9 parameters.
SHAPES = [(4, 256), (6, 384), (8, 512), (10, 640), (12, 768), (16, 1024), (20, 1280), (24, 1536), (28, 1792),
          (32, 2048)]


def law_loss(N, D, E, A, B, alpha, beta):
    return E + A / np.asarray(N, float) ** alpha + B / np.asarray(D, float) ** beta


def params(n_layers: int, d_model: int) -> tuple[int, int]:
    """(total, non-embedding) parameters of the hand-made model shapes (tied embeddings)."""
    non_embedding = 12 * n_layers * d_model ** 2
    return non_embedding + VOCAB * d_model, non_embedding


def isoflop_grid(budgets, sizes_per_budget: int = 7, span: float = 8.0, law=LAW):
    """(N, D, C) of an IsoFLOP design: per budget, sizes log-spaced over `span` around the law's optimum."""
    a = law["beta"] / (law["alpha"] + law["beta"])
    G = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (law["alpha"] + law["beta"]))
    rows = []
    for C in budgets:
        n_star = G * (C / 6) ** a
        for N in np.geomspace(n_star / np.sqrt(span), n_star * np.sqrt(span), sizes_per_budget):
            rows.append((N, C / (6 * N), C))
    return np.array(rows)


def _run_id(config: dict) -> tuple[str, str]:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return h[:12], h


def write_sweep(out, budgets=(1e18, 3e18, 1e19, 3e19, 1e20), shapes=SHAPES, law=LAW, noise: float = 0.005,
                seed: int = 0, n_log: int = 24, min_sizes: int = 5) -> Path:
    """Write an IsoFLOP sweep: for each budget, the shapes whose D = C / (6 N) gives 2 to 2000 tokens per parameter.

    Also writes one diverged run, one failed run (failure.json, no summary.json), one still running (point.json
    only) and results.jsonl, as the sweep runner does; every run's point.json tags its planned budget (C_target).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    summaries = []
    for b, C in enumerate(budgets):
        chosen = [s for s in shapes if 2 <= (C / (6 * params(*s)[0])) / params(*s)[0] <= 2000]
        assert len(chosen) >= min_sizes, f"budget {C:g} spans only {len(chosen)} shapes"
        for L, d in chosen:
            N, N_ne = params(L, d)
            D = int(C / (6 * N))
            summaries.append(_write_run(out, L, d, N, N_ne, D, law, noise, rng, n_log, f"iso{b}", "complete",
                                        tags={"C_target": C}))
    L, d = shapes[0]
    N, N_ne = params(L, d)
    summaries.append(_write_run(out, L, d, N, N_ne, 10 ** 7, law, noise, rng, n_log, "lr-too-high", "diverged",
                                lr=1.0))
    for name, status in (("out-of-memory", "failed"), ("still-running", "running")):
        config = _config(*shapes[-1], 10 ** 9, 3e-3, 1)
        run_id, _ = _run_id({**config, "name": name})
        run = out / "runs" / f"{name}-{run_id}"
        run.mkdir(parents=True)
        N, _ = params(*shapes[-1])
        point = {"name": name, "run_id": run_id, "dirname": run.name, "sweep": "handmade", "tags": {},
                 "params": int(N), "tokens": 10 ** 9, "flops": 6.0 * N * 1e9, "flops_6nd": 6.0 * N * 1e9,
                 "config": config}
        (run / "point.json").write_text(json.dumps(point))
        if status == "running":
            (run / "claim.json").write_text(json.dumps({"worker": "w0", "token": "t"}))  # a worker holds it
        if status == "failed":
            (run / "failure.json").write_text(json.dumps({"status": "failed", "error": "RESOURCE_EXHAUSTED"}))
            summaries.append({**{k: point[k] for k in ("run_id", "params", "tokens", "flops", "config")},
                              "name": name, "status": "failed", "error": "RESOURCE_EXHAUSTED"})
    (out / "results.jsonl").write_text("".join(json.dumps(s) + "\n" for s in summaries))
    return out


def _config(n_layers, d_model, tokens, lr, seed) -> dict:
    return {"model": {"vocab_size": VOCAB, "d_model": d_model, "n_layers": n_layers, "n_heads": max(1, d_model // 64),
                      "max_seq_len": SEQ},
            "data": {"source": "shakespeare", "tokenizer": "bpe", "seq_len": SEQ},
            "optim": {"lr": lr, "schedule": "cosine"}, "train": {"tokens": tokens, "batch_tokens": 2 ** 16},
            "parallel": {"data": -1}, "seed": seed}


def _write_run(out, n_layers, d_model, N, N_ne, D, law, noise, rng, n_log, name, status, lr=3e-3,
               tags=None) -> dict:
    config = _config(n_layers, d_model, D, lr, 0)
    run_id, full_hash = _run_id(config)
    run = out / "runs" / f"{name}-{run_id}"
    run.mkdir(parents=True)
    (run / "point.json").write_text(json.dumps({"name": name, "run_id": run_id, "dirname": run.name,
                                                "sweep": "handmade", "tags": tags or {}, "params": int(N),
                                                "tokens": int(D), "config": config}))
    flops_per_token = 6.0 * N + 6.0 * n_layers * SEQ * d_model  # Kaplan et al.'s count, attention included
    tokens = np.unique(np.geomspace(D / 50, D, n_log).astype(int))
    loss = law_loss(N, tokens, **law) * np.exp(rng.normal(0, noise, len(tokens)))
    if status == "diverged":
        loss = np.where(np.arange(len(tokens)) > len(tokens) // 2, np.nan, loss)
    steps = np.maximum(1, tokens // 2 ** 16)
    with open(run / "metrics.jsonl", "w") as f:
        for i, (step, seen, value) in enumerate(zip(steps, tokens, loss, strict=True)):
            row = {"step": int(step), "tokens": int(seen), "loss": None if np.isnan(value) else float(value),
                   "lr": lr, "grad_norm": 1.0, "tokens_per_s": 1e6, "mfu": 0.4}
            if (i % 6 == 5 or i == len(tokens) - 1) and not np.isnan(value):
                row["eval_loss"] = float(value * np.exp(rng.normal(0, noise)))
            f.write(json.dumps(row) + "\n")
    final = law_loss(N, D, **law) * np.exp(rng.normal(0, noise))
    summary = {
        "run_id": run_id, "config_hash": full_hash, "status": status, "params": int(N),
        "params_non_embedding": int(N_ne), "tokens": int(D), "flops_6nd": 6.0 * N * D,
        "flops": flops_per_token * D, "flops_per_token": flops_per_token,
        "flop_convention": "6*N*D with N total params; exact = 6N + 6 n_layers seq d_model per token",
        "final_train_loss": float(loss[-1]) if status == "complete" else None,
        "final_eval_loss": float(final) if status == "complete" else None, "steps": int(steps[-1]),
        "wall_time_s": 1.0, "tokens_per_s": 1e6, "mfu": 0.4, "seed": 0, "config": config}
    (run / "config.json").write_text(json.dumps(config, indent=1))
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    return {**summary, "name": name, "tags": tags or {}}  # results.jsonl adds name and tags to the summary
