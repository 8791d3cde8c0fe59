"""The `make demo` sweep: an IsoFLOP study on the embedded Shakespeare corpus, sized for 10 minutes of a 2-core CPU.

Grid. 4 compute budgets C = 3e10 .. 1e12 FLOPs (6ND, 1.5 decades), 5 model sizes each: the widths of the ladder
(head_dim 8, depth = width / 24, at least 2 layers, SwiGLU d_ff = 8/3 width; 3.8K .. 393K parameters) nearest to 5
sizes spread over one decade of N and centred on the expected optimum N*(C) = 6.5e4 (C / 1e12)^0.65, so every budget
brackets its minimum (at the smallest budget the window slides up to the ladder's smallest sizes). The guess comes
from pilots with these rules: at C = 1e12 eval loss 1.756 at N = 41K, 1.794 at 177K and 2.018 at 282K nats/byte; a
first version of this grid centred on 7e4 (C / 1e12)^0.5 found minima near 6.5K, 10K, 23K and 60K, but at 1e11 its
smallest size (10K) was the lowest, so the exponent was raised to put 3.8K in that budget.

Hyperparameters.
- Batch: 8 windows of 64 bytes at every budget. In the pilot at C = 1e12, the 177K model reached 1.794 with batch 8,
  1.798 with 4, 1.939 with 16 and 2.227 with 40 (DeepSeek LLM's C^0.33 batch rule): at these losses the critical
  batch is at most ~512 tokens, so the batch should not grow over this range, and it does not.
- Learning rate: lr = 0.3118 C^-0.125 (DeepSeek LLM 2024, eq. 1: one lr per budget for all sizes), 0.025 .. 0.010
  here. The optimum is flat around it: at C = 1e12 the 177K model gave 1.794 with lr 0.0099 and 1.796 with 0.005.
- Warmup: 5% of each run's steps (at least 5), then cosine to 0.1 x lr, as in Chinchilla's cosine-to-10%.

Evaluation: 128 held-out batches (64K bytes) per run; with 16, the final losses moved by up to 0.03 nats, as much as
neighbouring sizes differ near a minimum.

Data: D runs from 0.1M to 8.3M bytes, at most 1.7 epochs of the ~4.9M-byte training split (the report lists each
run's epochs). About 8.5 minutes on an idle 2-core CPU from cold caches, report included (README: make demo).
"""

from research.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from sweeps import LrComputePowerLaw, OptimumGuess, ShapeRule, Sweep, WarmupFraction, isoflop_around

BUDGETS = (3e10, 1e11, 3e11, 1e12)
WIDTHS = tuple(range(8, 89, 8))  # 3.8K .. 393K parameters
SHAPE = ShapeRule(aspect_ratio=24, head_dim=8, min_layers=2, ff_multiplier=8 / 3)
OPTIMUM = OptimumGuess(params=6.5e4, flops=1e12, exponent=0.65)


def sweep() -> Sweep:
    base = RunConfig(
        model=ModelConfig(max_seq_len=64),
        data=DataConfig(source="shakespeare", seq_len=64),
        optim=OptimConfig(lr=3e-3, schedule="cosine", min_lr_ratio=0.1),
        train=TrainConfig(steps=1, batch_size=8, log_every=50, eval_every=1_000_000, eval_batches=128,
                          checkpoint_every=1_000_000, keep_checkpoints=1),
    )
    return Sweep(
        name="demo",
        base=base,
        grid=isoflop_around(BUDGETS, WIDTHS, SHAPE, base.model, OPTIMUM, sizes_per_budget=5),
        rules=(LrComputePowerLaw(), WarmupFraction(0.05, min_steps=5)),
        description="IsoFLOP: 4 budgets (1.5 decades) x 5 sizes centred on the expected optimum, Shakespeare bytes",
    )
