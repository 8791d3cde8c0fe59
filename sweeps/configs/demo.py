"""The `make demo` sweep: an IsoFLOP grid on the embedded Shakespeare corpus, sized for a 2-core CPU.

3 compute budgets x 4 model sizes (width rule: head_dim 16, depth = width / 24, at least 2 layers), byte-level,
64-token windows, batch 8. D = C / 6N rounded to whole steps, so each budget's runs share one C in the analysis'
default convention (C = 6ND). The learning rate falls as N_non_embedding^-1/4 (gently: the larger models get few
steps at these budgets) and warmup is 5% of each run. The budgets are large enough that two of the three have an
interior IsoFLOP minimum (Approach 2 needs two) and that compiling the 4 shapes is about 12% of the wall time.
About 6 minutes on an idle 2-core CPU (README: make demo).
"""

from research.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from sweeps import LrPowerLaw, ShapeRule, Sweep, WarmupFraction, isoflop, width_ladder


def sweep() -> Sweep:
    base = RunConfig(
        model=ModelConfig(max_seq_len=64),
        data=DataConfig(source="shakespeare", seq_len=64),
        optim=OptimConfig(lr=3e-3, schedule="cosine", min_lr_ratio=0.1),
        train=TrainConfig(steps=1, batch_size=8, log_every=25, eval_every=1_000_000, eval_batches=8,
                          checkpoint_every=1_000_000, keep_checkpoints=1),
    )
    models = width_ladder([16, 32, 64, 128], ShapeRule(aspect_ratio=24, head_dim=16, min_layers=2))
    return Sweep(
        name="demo",
        base=base,
        grid=isoflop([2e11, 4e11, 8e11], models, flops="6n", tolerance=0.05),
        rules=(LrPowerLaw(base_lr=5e-3, base_params=1e5, exponent=-0.25), WarmupFraction(0.05, min_steps=5)),
        description="IsoFLOP: 3 budgets x 4 widths on Shakespeare bytes",
    )
