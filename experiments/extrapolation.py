"""Length extrapolation: a trained run's held-out loss on windows of 1x, 2x, 4x ... its training length.

Every length sees the same stretch of validation text (what the training run evaluated on, cut into windows of that
length), so the numbers differ only by the context the model gets. Results go to <run>/extrapolation.json once
(resumable).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from experiments.ablations.scales import ExperimentError

EXTRAPOLATION = "extrapolation.json"
_JITTED: dict = {}


def length_losses(workdir: str | Path, factors: tuple[int, ...]) -> dict:
    """{factor: mean nats per token} of the run's latest checkpoint on validation windows of factor x seq_len.

    Each length covers the text of the training run's own evaluation (eval_batches x rows x seq_len tokens), so
    the 1x number reproduces its final eval loss."""
    # JAX and the model load here only: `experiments report` imports this module for its table and reads files
    import jax

    from research.data import load_data
    from research.model import Transformer
    from research.parallel import activate, make_mesh
    from research.train.setup import restore_state
    from research.train.step import make_eval_step

    state, _, config = restore_state(workdir)
    longest = max(factors) * config.data.seq_len
    if config.model.positions == "learned" and longest > config.model.max_seq_len:
        raise ExperimentError(f"{workdir}: learned positions cover model.max_seq_len={config.model.max_seq_len} "
                              f"tokens, fewer than {longest} (the longest evaluation). Fix: train with "
                              f"model.max_seq_len >= {longest}")
    mesh = make_mesh(config.parallel, jax.devices()[:1])
    rows = config.batch_size // config.train.accum_steps  # the training eval's batch
    tokens = config.train.eval_batches * rows * config.data.seq_len
    out = {}
    for factor in factors:
        length = factor * config.data.seq_len
        data = load_data(dataclasses.replace(config.data, seq_len=length), workdir)
        key = (config.model, data.tokenizer.pad_id)
        if key not in _JITTED:
            _JITTED[key] = jax.jit(make_eval_step(Transformer(config.model), data.tokenizer.pad_id))
        windows = max(tokens // length, 1)
        nll = count = 0.0
        with activate(mesh):
            for k in range(-(-windows // rows)):
                batch = data.val_batch(k, rows)
                take = min(rows, windows - k * rows)
                n, c = _JITTED[key](state.params, {name: v[:take] for name, v in batch.items()})
                nll, count = nll + float(n), count + float(c)
        out[factor] = nll / max(count, 1.0)
    return out


def ensure_extrapolation(run_dir: Path, factors: tuple[int, ...]) -> dict | None:
    """The run's stored results, computed now if missing; None if the run did not complete."""
    path = Path(run_dir) / EXTRAPOLATION
    if path.exists():
        stored = json.loads(path.read_text())
        if sorted(stored["factors"]) == sorted(factors):
            return stored
    summary_path = Path(run_dir) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if summary.get("status") != "complete":
        return None
    losses = length_losses(run_dir, factors)
    seq_len = summary["config"]["data"]["seq_len"]
    record = {"factors": list(factors), "lengths": [f * seq_len for f in factors],
              "eval_loss": {str(f): v for f, v in losses.items()}}
    tmp = path.with_name(f".{EXTRAPOLATION}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return record
