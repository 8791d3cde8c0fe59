"""The base run of every ablation at each scale: one shared model, data, optimiser and token budget per scale.

tiny: byte-level Shakespeare, d_model 96 (4 heads of 24), 2 layers, 64-token windows, batch 16, 200 steps (205K
tokens, 0.8 tokens per parameter): a run takes about 20 s on an idle 2-core CPU. chinchilla: d_model 72 (4 heads of
18), 2 layers, 0.14M parameters trained on 20 tokens per parameter, about a minute per run. small: the same recipe
at ~10M parameters and 33M tokens, for a GPU or a Slurm partition. head_dim is a multiple of 3 and d_ff = 8/3
d_model is a whole number at every scale, so GLU and GQA/MQA variants can be matched to exact parameter counts (see
experiments.ablations.catalog).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from research.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from sweeps.estimate import Estimator


class ExperimentError(ConfigError):
    """Bad input to an experiment: the message names the argument, its value and the fix."""


@dataclass(frozen=True)
class Scale:
    """A named base config; `estimator` turns a run's steps and FLOPs into seconds for `list`."""

    name: str
    description: str
    base: RunConfig
    estimator: Estimator = Estimator()


# Measured on the project's 2-core CPU with the tiny base (1.66 GFLOP/step): ~76 ms/step idle; ~6 s per run of
# overhead on average (a compile per shape, shared by its seeds; data; evaluation; the final checkpoint).
_CPU = Estimator(latency_s=0.007, rate=2.4e10, overhead_s=6.0)


def _tiny() -> RunConfig:
    return RunConfig(
        model=ModelConfig(d_model=96, n_layers=2, n_heads=4, d_ff=256, max_seq_len=256),
        data=DataConfig(source="shakespeare", seq_len=64),
        optim=OptimConfig(lr=3e-3, schedule="cosine", warmup_steps=20, min_lr_ratio=0.1),
        train=TrainConfig(steps=200, batch_size=16, log_every=10, eval_every=50, eval_batches=16,
                          checkpoint_every=1_000_000, keep_checkpoints=1),
    )


def _chinchilla() -> RunConfig:
    """0.14M parameters trained on 20 tokens per parameter (Hoffmann et al.'s compute-optimal ratio): 2.9M tokens,
    batch 8 x 64 and lr 6e-3, both from the demo's pilot (sweeps/configs/demo.py): at these losses batch 16 already
    costs 0.14 nats at a fixed budget, and lr 0.005-0.01 lies in one flat optimum."""
    return RunConfig(
        model=ModelConfig(d_model=72, n_layers=2, n_heads=4, d_ff=192, max_seq_len=256),
        data=DataConfig(source="shakespeare", seq_len=64),
        optim=OptimConfig(lr=6e-3, schedule="cosine", warmup_steps=280, min_lr_ratio=0.1),
        train=TrainConfig(steps=5600, batch_size=8, log_every=50, eval_every=1000, eval_batches=32,
                          checkpoint_every=1000, keep_checkpoints=1),
    )


def _small() -> RunConfig:
    return RunConfig(
        model=ModelConfig(d_model=384, n_layers=6, n_heads=8, d_ff=1024, max_seq_len=1024),
        data=DataConfig(source="shakespeare", seq_len=256),
        optim=OptimConfig(lr=1e-3, schedule="cosine", warmup_steps=200, min_lr_ratio=0.1),
        train=TrainConfig(steps=4000, batch_size=32, log_every=20, eval_every=250, eval_batches=14,  # 1 pass
                          checkpoint_every=500, keep_checkpoints=1),
    )


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", "0.25M params, 205K tokens, Shakespeare bytes: minutes on a 2-core CPU", _tiny(), _CPU),
    "chinchilla": Scale("chinchilla", "0.14M params, 20 tokens/param (2.9M tokens), Shakespeare bytes: ~1 min per "
                        "run on a 2-core CPU", _chinchilla(), _CPU),
    "small": Scale("small", "~10M params, 33M tokens, Shakespeare bytes: a GPU or Slurm partition", _small(), _CPU),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise ExperimentError(f"--scale {name!r}: unknown scale{closest_hint(name, SCALES)}. Fix: use one of "
                              f"{', '.join(SCALES)}")
    return SCALES[name]


def closest_hint(name: str, known) -> str:
    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.4)
    return f" (did you mean {near[0]!r}?)" if near else ""
