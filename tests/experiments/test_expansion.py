"""Each named ablation expands to the right runs: variants x extra axes x seeds on one base, matched sizes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from experiments.ablations import NAMES, ExperimentError, build
from experiments.table import kv_bytes_per_token
from research.config import RunConfig
from research.model import Transformer
from sweeps.expansion import expand

EXPECTED = {  # name: (variants, extra-axis cells)
    "norm_placement": (["pre", "post"], 4),
    "norm_type": (["rmsnorm", "layernorm"], 1),
    "ffn_activation": (["relu", "gelu", "geglu", "swiglu"], 1),
    "biases": (["off", "on"], 1),
    "positions": (["rope", "sinusoidal", "learned", "alibi", "none"], 1),
    "attention": (["mha", "gqa", "mqa"], 1),
    "lr_schedule": (["cosine", "wsd", "constant"], 1),
}


def _runs(name: str, seeds: int = 3):
    ablation, base = build(name, "tiny")
    return ablation, base, expand(ablation.sweep(base, seeds, "tiny")).runs


def _init_params(config: RunConfig) -> int:
    """Parameters the model really creates (shapes only), independent of research.model.flops."""
    tokens = jax.ShapeDtypeStruct((1, config.data.seq_len), np.int32)
    shapes = jax.eval_shape(lambda t: Transformer(config.model).init(jax.random.key(0), t), tokens)
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def test_every_experiment_is_listed():
    assert set(NAMES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_variants_times_cells_times_seeds_on_one_budget(name):
    variants, cells = EXPECTED[name]
    ablation, base, runs = _runs(name)
    assert [v.name for v in ablation.variants] == variants and ablation.baseline == variants[0]
    assert len(runs) == len(variants) * cells * 3
    for v in variants:  # every variant in every cell with the same seeds 0, 1, 2
        mine = [r for r in runs if r.tags["variant"] == v]
        assert sorted(r.config.seed for r in mine) == sorted([0, 1, 2] * cells)
    assert {r.config.num_tokens for r in runs} == {base.num_tokens}  # same token budget
    assert {r.config.data for r in runs} == {base.data}  # same data and windows
    assert len({r.run_id for r in runs}) == len(runs)


def test_variant_overrides_reach_the_configs():
    _, base, runs = _runs("norm_placement")
    cells = {(r.tags["variant"], r.config.model.norm_placement, r.config.model.n_layers, r.config.optim.lr)
             for r in runs}
    depth, lr = base.model.n_layers, base.optim.lr
    assert cells == {(v, v, d, x) for v in ("pre", "post") for d in (depth, 2 * depth) for x in (lr, 4 * lr)}
    _, _, runs = _runs("positions")
    assert {r.tags["variant"]: r.config.model.positions for r in runs} == \
        {p: p for p in ("rope", "sinusoidal", "learned", "alibi", "none")}
    assert {r.config.model.max_seq_len for r in runs} == {4 * base.data.seq_len}  # learned table covers 4x
    _, _, runs = _runs("lr_schedule")
    assert {r.tags["variant"]: r.config.optim.schedule for r in runs} == {s: s for s in ("cosine", "wsd", "constant")}


def test_glu_variants_match_parameters_with_two_thirds_d_ff():
    _, base, runs = _runs("ffn_activation", seeds=1)
    d = base.model.d_model
    by_variant = {r.tags["variant"]: r.config for r in runs}
    assert {v: c.model.d_ff for v, c in by_variant.items()} == \
        {"relu": 4 * d, "gelu": 4 * d, "geglu": 8 * d // 3, "swiglu": 8 * d // 3}
    counts = {v: _init_params(c) for v, c in by_variant.items()}
    assert len(set(counts.values())) == 1, counts  # 2 x d x 4d == 3 x d x (8/3) d exactly


def test_attention_variants_match_parameters_and_shrink_the_kv_cache():
    _, base, runs = _runs("attention", seeds=1)
    by_variant = {r.tags["variant"]: r.config for r in runs}
    heads = base.model.n_heads
    kv_heads = {v: c.model.resolved().n_kv_heads for v, c in by_variant.items()}
    assert kv_heads == {"mha": heads, "gqa": heads // 2, "mqa": 1}
    counts = {v: _init_params(c) for v, c in by_variant.items()}
    assert len(set(counts.values())) == 1, counts
    kv = {v: kv_bytes_per_token(c.to_dict()["model"]) for v, c in by_variant.items()}
    # K and V x 2 layers x kv heads x head_dim 24 x 4 bytes (float32)
    assert kv == {"mha": 2 * 2 * 4 * 24 * 4, "gqa": 2 * 2 * 2 * 24 * 4, "mqa": 2 * 2 * 1 * 24 * 4}


def test_positions_and_biases_differ_only_by_what_they_add():
    _, base, runs = _runs("positions", seeds=1)
    counts = {r.tags["variant"]: _init_params(r.config) for r in runs}
    assert counts["learned"] - counts["rope"] == base.model.max_seq_len * base.model.d_model
    assert {counts[v] for v in ("rope", "sinusoidal", "alibi", "none")} == {counts["rope"]}


def test_bad_input_fails_early_with_a_suggestion():
    with pytest.raises(ExperimentError, match="did you mean 'norm_type'"):
        build("norm_typ")
    with pytest.raises(ExperimentError, match="did you mean 'tiny'"):
        build("biases", "tiyn")
    ablation, base = build("biases")
    with pytest.raises(ExperimentError, match="--seeds 0"):
        ablation.sweep(base, 0, "tiny")
