"""Typed, frozen run configuration: validated at construction, JSON round-trip, stable hash as run id.

One `RunConfig` fully describes a run. Every check raises `ConfigError` naming the field, the value and the fix,
before any data is read or anything is compiled.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BYTE_VOCAB_SIZE = 259  # 256 bytes + BOS, EOS, PAD (research.data.tokenizer.ByteTokenizer)


EXECUTION_ONLY_TRAIN_FIELDS = ("steps_per_call",)  # how a run executes, not what it computes: outside the run id
# Fields added after run ids were fixed, with their defaults: hashed only when set otherwise, so old ids stay valid
ADDED_FIELDS = {"model": {"kernels": "tuned"}, "init": {"from_run": None, "step": None},
                "data": {"document_mask": False, "format": "text", "loss_on": "all_assistant"},
                "adapt": {"method": "full", "lora_rank": 8, "lora_alpha": 16.0, "lora_targets": "q,v",
                          "lora_dropout": 0.0, "adapter_size": 16, "adapter_places": "attn,mlp",
                          "adapter_scale": 1.0, "virtual_tokens": 16, "prompt_init": "vocab"},
                "distill": {"teacher": None, "teacher_step": None, "weight": 0.5, "temperature": 1.0,
                            "temper_student": False}}
# Renamed keys, old -> new: files written before a rename still load; a user who types an old key gets an error
RENAMED_KEYS = {"parallel.schedule": "parallel.pipeline_schedule"}


class ConfigError(ValueError):
    """An impossible configuration: the message names the field, its value and how to fix it."""


def _fail(field_name: str, value: Any, problem: str, fix: str) -> None:
    raise ConfigError(f"{field_name}={value!r}: {problem}. Fix: {fix}.")


def _check_choice(field_name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        _fail(field_name, value, f"must be one of {list(choices)}{hint}", f"set {field_name} to one of {list(choices)}")


def _check_positive(field_name: str, value: Any, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        _fail(field_name, value, "must be " + ("non-negative" if allow_zero else "positive"),
              f"set {field_name} to a value {'>= 0' if allow_zero else '> 0'}")


def _check_fields(obj: Any, prefix: str) -> None:
    """Check every Literal-typed field of a dataclass against its allowed values, and every number for being
    finite (inf and nan are never meant)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        choices = _literal_choices(hints[f.name])
        if choices is not None:
            _check_choice(f"{prefix}.{f.name}", value, choices)
        if isinstance(value, float) and not math.isfinite(value):
            _fail(f"{prefix}.{f.name}", value, "must be a finite number", f"give {prefix}.{f.name} a finite value")


def _literal_choices(tp: Any) -> tuple | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return None


# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """Shape and architecture of the decoder-only transformer (every ablation axis lives here)."""

    vocab_size: int = BYTE_VOCAB_SIZE
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: = n_heads (MHA); 1: MQA; in between: GQA
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int | None = None  # None: 4 * d_model (8/3 * d_model rounded to 64 for GLU variants)
    max_seq_len: int = 256  # longest context; sizes the learned position table
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    norm_placement: Literal["pre", "post"] = "pre"
    norm_eps: float = 1e-5
    activation: Literal["relu", "gelu", "geglu", "swiglu"] = "swiglu"
    use_bias: bool = False  # biases in attention and MLP projections and in LayerNorm
    qkv_bias: bool = False  # biases on the q, k, v projections only (Qwen2); implied by use_bias
    positions: Literal["none", "sinusoidal", "learned", "rope", "alibi"] = "rope"  # sinusoidal: embeddings x sqrt(d)
    rope_base: float = 10000.0
    causal: bool = True
    sliding_window: int | None = None  # attend to at most this many most recent positions (itself included)
    tie_embeddings: bool = True
    dropout: float = 0.0  # on attention output, MLP output and embeddings; training only
    init_std: float = 0.02
    scaled_residual_init: bool = True  # output projections init with std / sqrt(2 * n_layers) (GPT-2)
    compute_dtype: Literal["float32", "bfloat16"] = "float32"  # parameters, logits and loss are always float32
    remat: Literal["none", "block", "full"] = "none"  # block: save only block-boundary activations
    # tuned: hand-written derivatives and blocked attention (fast on CPU); reference: the plain jax.nn / autodiff math
    kernels: Literal["tuned", "reference"] = "tuned"

    def __post_init__(self) -> None:
        _check_fields(self, "model")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            _check_positive(f"model.{name}", getattr(self, name))
        for name in ("n_kv_heads", "head_dim", "d_ff", "sliding_window"):
            if getattr(self, name) is not None:
                _check_positive(f"model.{name}", getattr(self, name))
        if self.head_dim is None and self.d_model % self.n_heads:
            _fail("model.n_heads", self.n_heads, f"does not divide model.d_model={self.d_model}",
                  f"choose n_heads dividing {self.d_model} (e.g. {_nearest_divisor(self.d_model, self.n_heads)}) "
                  "or set model.head_dim explicitly")
        shape = self.resolved()
        if shape.n_kv_heads > self.n_heads or self.n_heads % shape.n_kv_heads:
            _fail("model.n_kv_heads", self.n_kv_heads, f"must divide model.n_heads={self.n_heads}",
                  f"use a divisor of {self.n_heads}: n_heads for MHA, 1 for MQA, in between for GQA")
        if self.positions == "rope" and shape.head_dim % 2:
            _fail("model.head_dim", shape.head_dim, "RoPE rotates pairs of features, so it must be even",
                  "use an even head_dim or another model.positions")
        if self.rope_base <= 1.0:
            _fail("model.rope_base", self.rope_base, "must be > 1", "use e.g. 10000.0")
        if not 0.0 <= self.dropout < 1.0:
            _fail("model.dropout", self.dropout, "must be in [0, 1)", "use e.g. 0.0 or 0.1")
        if self.init_std <= 0:
            _fail("model.init_std", self.init_std, "must be positive", "use e.g. 0.02")
        if self.norm_eps <= 0:
            _fail("model.norm_eps", self.norm_eps, "must be positive", "use e.g. 1e-5")
        if self.sliding_window is not None and not self.causal:
            _fail("model.sliding_window", self.sliding_window, "is only defined for causal attention",
                  "set model.causal=true or model.sliding_window=null")

    def resolved(self) -> ModelConfig:
        """This config with its derived sizes spelled out (n_kv_heads, head_dim and d_ff never None): what the model,
        the counts and the converters read, so each size has one name. The run id hashes the config as given."""
        if None not in (self.n_kv_heads, self.head_dim, self.d_ff):
            return self
        d_ff = self.d_ff
        if d_ff is None:  # GLU: matched parameters, 3 matrices of 8/3 d vs 2 of 4 d
            d_ff = _round_up(8 * self.d_model // 3, 64) if self.is_glu else 4 * self.d_model
        return dataclasses.replace(
            self, n_kv_heads=self.n_heads if self.n_kv_heads is None else self.n_kv_heads,
            head_dim=self.d_model // self.n_heads if self.head_dim is None else self.head_dim, d_ff=d_ff)

    @property
    def is_glu(self) -> bool:
        return self.activation in ("geglu", "swiglu")


@dataclass(frozen=True)
class DataConfig:
    """Where text comes from, how it is tokenised and cut into training windows."""

    source: str = "shakespeare"  # "shakespeare" (embedded corpus), a .txt file, a directory, .jsonl or .parquet
    text_field: str = "text"  # for JSONL and Parquet sources
    tokenizer: Literal["byte", "bpe"] = "byte"
    bpe_vocab_size: int = 4096  # specials included; only for tokenizer="bpe"
    seq_len: int = 256  # tokens per training window (each window holds seq_len + 1 tokens)
    val_fraction: float = 0.05  # share of documents held out for validation, chosen by a fixed hash of the doc
    split_seed: int = 0  # which documents are held out; independent of the run seed
    # packed windows keep documents apart: attention stays within each document, positions restart with each, and
    # the prediction across a boundary (a document's EOS -> the next one's first token) is not trained on
    document_mask: bool = False
    # "chat": a JSONL source of conversations ({"messages": [{"role", "content"}, ...]} or {"prompt", "response"}),
    # rendered by the chat template, whole examples packed per window, and only assistant tokens trained on
    format: Literal["text", "chat"] = "text"
    loss_on: Literal["all_assistant", "last_assistant"] = "all_assistant"  # chat: which assistant turns train

    def __post_init__(self) -> None:
        _check_fields(self, "data")
        if not self.source:
            _fail("data.source", self.source, "is empty", "use 'shakespeare' or a path to .txt/.jsonl/.parquet/dir")
        _check_positive("data.seq_len", self.seq_len)
        if self.tokenizer == "bpe" and not 260 <= self.bpe_vocab_size <= 1 << 20:
            _fail("data.bpe_vocab_size", self.bpe_vocab_size, "a byte-level BPE needs at least 259 + 1 entries",
                  "use a value between 260 and 1048576, e.g. 4096")
        if not 0.0 < self.val_fraction < 0.5:
            _fail("data.val_fraction", self.val_fraction, "must be in (0, 0.5)", "use e.g. 0.05")
        if self.format == "chat" and not self.source.endswith(".jsonl"):
            _fail("data.format", self.format, f"chat data is read from a .jsonl file of conversations, and "
                  f"data.source={self.source!r} is not one",
                  "point data.source at a .jsonl file, or use data.format=text")

    @property
    def vocab_size(self) -> int:
        return BYTE_VOCAB_SIZE if self.tokenizer == "byte" else self.bpe_vocab_size


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warmup and a decay schedule."""

    lr: float = 3e-3
    schedule: Literal["constant", "cosine", "linear", "wsd"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr = lr * min_lr_ratio (cosine, linear, wsd)
    decay_fraction: float = 0.2  # WSD: share of the steps spent decaying at the end
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear"  # WSD's cooldown shape
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_norms_and_biases: bool = False
    decay_embeddings: bool = False
    grad_clip: float = 1.0  # global-norm clip; 0 disables

    def __post_init__(self) -> None:
        _check_fields(self, "optim")
        _check_positive("optim.lr", self.lr)
        _check_positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        _check_positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("optim.grad_clip", self.grad_clip, allow_zero=True)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            _fail("optim.min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]", "use e.g. 0.1")
        if not 0.0 < self.decay_fraction <= 1.0:
            _fail("optim.decay_fraction", self.decay_fraction, "must be in (0, 1]", "use e.g. 0.2")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                _fail(f"optim.{name}", getattr(self, name), "must be in [0, 1)", "use e.g. 0.9 / 0.95")


@dataclass(frozen=True)
class TrainConfig:
    """How long, how big a batch, how often to log, evaluate and checkpoint."""

    steps: int | None = None  # give exactly one of steps and tokens
    tokens: int | None = None  # D: training tokens; steps = ceil(tokens / batch tokens)
    batch_size: int | None = None  # global batch in sequences; or give batch_tokens; default 32 sequences
    batch_tokens: int | None = None
    accum_steps: int = 1  # gradient accumulation: microbatches per step, scanned
    z_loss: float = 0.0  # coefficient of log(Z)^2 (PaLM); 0 disables
    log_every: int = 10
    eval_every: int = 100  # also evaluates at the end
    eval_batches: int = 4
    checkpoint_every: int = 100  # also saves at the end and on SIGTERM / SIGINT
    keep_checkpoints: int = 2
    # optimizer steps per compiled call (a loop on the device); None: enough that small models are not dispatch-bound.
    # Every value gives bitwise the same run, so, like the parallel layout, it is not part of the run id.
    steps_per_call: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self, "train")
        if (self.steps is None) == (self.tokens is None):
            _fail("train.steps", self.steps, f"give exactly one of train.steps and train.tokens (tokens={self.tokens})",
                  "set train.steps=N or train.tokens=D, and the other to null")
        if self.batch_size is not None and self.batch_tokens is not None:
            _fail("train.batch_size", self.batch_size, f"conflicts with train.batch_tokens={self.batch_tokens}",
                  "give the global batch either in sequences or in tokens, not both")
        for name in ("steps", "tokens", "batch_size", "batch_tokens"):
            if getattr(self, name) is not None:
                _check_positive(f"train.{name}", getattr(self, name))
        for name in ("accum_steps", "log_every", "eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints"):
            _check_positive(f"train.{name}", getattr(self, name))
        if self.steps_per_call is not None:
            _check_positive("train.steps_per_call", self.steps_per_call)
        _check_positive("train.z_loss", self.z_loss, allow_zero=True)


@dataclass(frozen=True)
class ParallelConfig:
    """Mesh axis sizes. data=-1 takes every device the other axes leave over."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    pipeline: int = 1
    microbatches: int = 1  # pipeline microbatches
    pipeline_schedule: Literal["gpipe", "circular"] = "gpipe"
    pipeline_repeats: int = 1

    def __post_init__(self) -> None:
        _check_fields(self, "parallel")
        if self.data != -1:
            _check_positive("parallel.data", self.data)
        for name in ("fsdp", "tensor", "pipeline", "microbatches", "pipeline_repeats"):
            _check_positive(f"parallel.{name}", getattr(self, name))

    def mesh_shape(self, device_count: int) -> dict[str, int]:
        """Axis sizes for `device_count` devices; an error says how to fix a mismatch."""
        others = self.fsdp * self.tensor * self.pipeline
        data = self.data
        if data == -1:
            if device_count % others:
                _fail("parallel", f"fsdp={self.fsdp} x tensor={self.tensor} x pipeline={self.pipeline}",
                      f"the product {others} does not divide the {device_count} devices",
                      "choose axis sizes whose product divides the device count")
            data = device_count // others
        if data * others != device_count:
            _fail("parallel.data", self.data,
                  f"data x fsdp x tensor x pipeline = {data * others} but there are {device_count} devices",
                  "set parallel.data=-1 to use the remaining devices, or change the axis sizes")
        return {"data": data, "fsdp": self.fsdp, "tensor": self.tensor, "pipeline": self.pipeline}


@dataclass(frozen=True)
class InitConfig:
    """Where the weights start (ADAPT-1): fresh from `seed`, or from a trained run's checkpoint (a scalelab run
    directory, or one `python -m research.interop import` wrote from a Hugging Face model). The optimiser state and
    the schedule are always this run's own."""

    from_run: str | None = None  # the base run's directory
    step: int | None = None  # its checkpoint step; None: the newest verified one

    def __post_init__(self) -> None:
        _check_fields(self, "init")
        if self.from_run is not None and not self.from_run:
            _fail("init.from_run", self.from_run, "is empty", "give a run directory, or null to start fresh")
        if self.step is not None:
            _check_positive("init.step", self.step, allow_zero=True)
            if self.from_run is None:
                _fail("init.step", self.step, "needs init.from_run", "set init.from_run=DIR, or init.step=null")


LORA_TARGETS = ("q", "k", "v", "o", "mlp_in", "mlp_gate", "mlp_out")  # the projections LoRA can adapt
ADAPTER_PLACES = ("attn", "mlp")  # the sublayers an adapter can follow (serial) or run beside (parallel)


@dataclass(frozen=True)
class AdaptConfig:
    """Which weights train (ADAPT-*). full: every weight. Otherwise the base weights are frozen and only what the
    method adds trains, initialised so that the adapted model starts equal to its base:
    - lora (Hu et al. 2022, ADAPT-5): each target projection W gains W' = W + (alpha / rank) A B, A random, B zero;
    - adapter_serial (Houlsby et al. 2019, ADAPT-4): each placed sublayer F becomes Adapter(F(h)) with
      Adapter(y) = y + gelu(y W_down + b_down) W_up + b_up, W_up and b_up zero;
    - adapter_parallel (He et al. 2022, ADAPT-4): F(h) + scale (gelu(h W_down + b_down) W_up + b_up), beside F;
    - prompt_tuning (Lester et al. 2021, ADAPT-7): virtual_tokens trainable vectors prepended to the input
      embeddings, initialised from the embeddings of random vocabulary entries (prompt_init=vocab) or N(0, 0.02);
    - prefix_tuning (Li & Liang 2021, ADAPT-6): virtual_tokens trainable keys and values prepended to every layer's
      attention, N(0, 0.02). Both place the tokens after the virtual ones (positions k, k+1, ...)."""

    method: Literal["full", "lora", "adapter_serial", "adapter_parallel", "prompt_tuning", "prefix_tuning"] = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = "q,v"  # comma-separated, from LORA_TARGETS
    lora_dropout: float = 0.0  # on the input of the low-rank path, training only
    adapter_size: int = 16  # the bottleneck width r: W_down [d_model, r], W_up [r, d_model]
    adapter_places: str = "attn,mlp"  # comma-separated, from ADAPTER_PLACES: after (serial) or beside (parallel)
    adapter_scale: float = 1.0  # s of the parallel form
    virtual_tokens: int = 16  # k soft prompt vectors or prefix keys/values: every sequence is k positions longer
    prompt_init: Literal["vocab", "random"] = "vocab"

    def __post_init__(self) -> None:
        _check_fields(self, "adapt")
        _check_positive("adapt.lora_rank", self.lora_rank)
        _check_positive("adapt.lora_alpha", self.lora_alpha)
        _check_positive("adapt.adapter_size", self.adapter_size)
        _check_positive("adapt.adapter_scale", self.adapter_scale)
        _check_positive("adapt.virtual_tokens", self.virtual_tokens)
        if not 0.0 <= self.lora_dropout < 1.0:
            _fail("adapt.lora_dropout", self.lora_dropout, "must be in [0, 1)", "use e.g. 0.0 or 0.05")
        unknown = [t for t in _names(self.lora_targets) if t not in LORA_TARGETS]
        if unknown or not _names(self.lora_targets):
            _fail("adapt.lora_targets", self.lora_targets, f"names no projection ({unknown or 'empty'})",
                  f"use a comma-separated subset of {','.join(LORA_TARGETS)}, e.g. q,v")
        unknown = [p for p in _names(self.adapter_places) if p not in ADAPTER_PLACES]
        if unknown or not _names(self.adapter_places):
            _fail("adapt.adapter_places", self.adapter_places, f"names no sublayer ({unknown or 'empty'})",
                  f"use a comma-separated subset of {','.join(ADAPTER_PLACES)}, e.g. attn,mlp")

    @property
    def targets(self) -> tuple[str, ...]:
        """LoRA's target projections; empty unless method is lora."""
        return _names(self.lora_targets) if self.method == "lora" else ()

    @property
    def places(self) -> tuple[str, ...]:
        """The sublayers that get an adapter; empty unless method is an adapter."""
        return _names(self.adapter_places) if self.method.startswith("adapter_") else ()

    @property
    def virtual(self) -> int:
        """Positions the soft prompt or the prefix takes before every sequence: 0 for the other methods."""
        return self.virtual_tokens if self.method in ("prompt_tuning", "prefix_tuning") else 0


@dataclass(frozen=True)
class DistillConfig:
    """Word-level knowledge distillation (ADAPT-9): train on (1 - weight) x the label cross-entropy + weight x
    KL(teacher || student) per token, the teacher's logits computed on the fly from a trained run. The temperature
    softens (> 1) or sharpens (< 1) the teacher's distribution: at 0 the KD term is the cross-entropy on the
    teacher's argmax. temper_student: Hinton et al. (2015) instead, both distributions tempered and KL x T^2."""

    teacher: str | None = None  # a run directory (a Hugging Face model: `python -m research.interop import` first)
    teacher_step: int | None = None  # its checkpoint step; None: the newest verified one
    weight: float = 0.5
    temperature: float = 1.0
    temper_student: bool = False

    def __post_init__(self) -> None:
        _check_fields(self, "distill")
        if self.teacher is not None and not self.teacher:
            _fail("distill.teacher", self.teacher, "is empty", "give a trained run's directory, or null")
        if not 0.0 <= self.weight <= 1.0:
            _fail("distill.weight", self.weight, "must be in [0, 1]", "use e.g. 0.5 (1: the KD term alone)")
        _check_positive("distill.temperature", self.temperature)
        if self.teacher_step is not None:
            _check_positive("distill.teacher_step", self.teacher_step, allow_zero=True)
            if self.teacher is None:
                _fail("distill.teacher_step", self.teacher_step, "needs distill.teacher",
                      "set distill.teacher=DIR, or distill.teacher_step=null")


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Its JSON is config.json; its hash is the run id."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100))
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0  # initialisation, dropout and data order

    def __post_init__(self) -> None:
        m, d, t, p = self.model, self.data, self.train, self.parallel
        if m.vocab_size < d.vocab_size:
            _fail("model.vocab_size", m.vocab_size, f"is smaller than the tokenizer's {d.vocab_size} tokens",
                  f"set model.vocab_size >= {d.vocab_size}")
        if d.seq_len > m.max_seq_len:
            _fail("data.seq_len", d.seq_len, f"exceeds model.max_seq_len={m.max_seq_len}",
                  f"set model.max_seq_len >= {d.seq_len} or shorten data.seq_len")
        k = self.adapt.virtual
        if k and d.seq_len + k > m.max_seq_len:
            _fail("adapt.virtual_tokens", k, f"plus data.seq_len={d.seq_len} exceeds the model's context "
                  f"model.max_seq_len={m.max_seq_len}", f"use adapt.virtual_tokens <= {m.max_seq_len - d.seq_len}, "
                  "or shorten data.seq_len")
        if k and d.document_mask:
            _fail("adapt.method", self.adapt.method, "prepends one set of virtual tokens to each window, which "
                  "document masking would hide from every document but the first", "set data.document_mask=false")
        if self.adapt.method == "prefix_tuning" and m.sliding_window is not None:
            _fail("adapt.method", self.adapt.method, f"the prefix must stay visible to every token, and "
                  f"model.sliding_window={m.sliding_window} would hide it from all but the first",
                  "prefix-tune a model without a sliding window, or use adapt.method=prompt_tuning")
        if t.batch_tokens is not None and t.batch_tokens % d.seq_len:
            _fail("train.batch_tokens", t.batch_tokens, f"is not a multiple of data.seq_len={d.seq_len}",
                  f"use a multiple of {d.seq_len}, e.g. {_round_up(t.batch_tokens, d.seq_len)}")
        if self.batch_size % t.accum_steps:
            _fail("train.accum_steps", t.accum_steps, f"does not divide the global batch of {self.batch_size}",
                  f"choose accum_steps dividing {self.batch_size}")
        if p.microbatches > 1 and (self.batch_size // t.accum_steps) % p.microbatches:
            _fail("parallel.microbatches", p.microbatches,
                  f"does not divide the per-step microbatch of {self.batch_size // t.accum_steps} sequences",
                  "choose pipeline microbatches dividing batch_size / accum_steps")
        if m.n_layers % (p.pipeline * p.pipeline_repeats):
            _fail("parallel.pipeline", p.pipeline,
                  f"x pipeline_repeats={p.pipeline_repeats} does not divide model.n_layers={m.n_layers}",
                  "choose pipeline stages (times repeats) dividing the number of layers")
        shape = m.resolved()
        for name, size in (("n_heads", m.n_heads), ("n_kv_heads", shape.n_kv_heads), ("d_ff", shape.d_ff)):
            if size % p.tensor:
                _fail("parallel.tensor", p.tensor, f"does not divide model.{name}={size}",
                      f"choose a tensor size dividing {name}")
        if self.num_steps < 1:
            _fail("train.tokens", t.tokens, "gives zero steps", "raise train.tokens above one batch")

    # ---- derived quantities ---------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Global batch in sequences."""
        if self.train.batch_tokens is not None:
            return self.train.batch_tokens // self.data.seq_len
        return 32 if self.train.batch_size is None else self.train.batch_size

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.data.seq_len

    @property
    def num_steps(self) -> int:
        if self.train.steps is not None:
            return self.train.steps
        return -(-self.train.tokens // self.tokens_per_step)

    @property
    def num_tokens(self) -> int:
        """D: tokens actually trained on (whole steps)."""
        return self.num_steps * self.tokens_per_step

    # ---- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return _from_dict(cls, d, "")

    @classmethod
    def from_json(cls, s: str) -> RunConfig:
        return cls.from_dict(json.loads(s))

    def run_id(self) -> str:
        """Stable 12-hex-digit hash of the canonical JSON, execution choices excluded: every parallel layout and every
        train.steps_per_call computes the same numbers and checkpoints restore onto any mesh, so a run moved to other
        hardware keeps its id. Fields in ADDED_FIELDS count only away from their defaults."""
        semantic = {k: v for k, v in self.to_dict().items() if k != "parallel"}
        semantic["train"] = {k: v for k, v in semantic["train"].items() if k not in EXECUTION_ONLY_TRAIN_FIELDS}
        for section, defaults in ADDED_FIELDS.items():
            semantic[section] = {k: v for k, v in semantic[section].items() if k not in defaults or v != defaults[k]}
            if not semantic[section] and set(defaults) == set(self.to_dict()[section]):
                del semantic[section]  # a section added whole: absent when left at its defaults
        canonical = json.dumps(semantic, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @classmethod
    def read(cls, path) -> RunConfig:
        """A stored config.json; a damaged file is a ConfigError that names it."""
        try:
            return cls.from_json(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}). Fix: restore the file from the "
                              "run's summary.json ('config'), or start in a fresh --workdir.") from None

    def override(self, *assignments: str) -> RunConfig:
        """Apply dotted overrides such as 'model.d_model=256' or 'optim.lr=3e-3'."""
        return apply_overrides(self, list(assignments))


# --------------------------------------------------------------------------------------------------------------------
def _from_dict(cls: type, d: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        key = RENAMED_KEYS.get(prefix + key, prefix + key)[len(prefix):]
        if key not in names:
            _unknown_key(prefix + key, sorted(_all_keys(cls, prefix)))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _from_dict(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, tp, value)
    return cls(**kwargs)


def _all_keys(cls: type, prefix: str = "", sections: bool = False) -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += ([prefix + f.name] if sections else []) + _all_keys(tp, f"{prefix}{f.name}.", sections)
        else:
            keys.append(prefix + f.name)
    return keys


def config_keys(sections: bool = True) -> list[str]:
    """Every dotted key of a RunConfig ('model.d_model', ...), with the sections themselves ('model') if asked."""
    return _all_keys(RunConfig, "", sections)


def check_key(key: str) -> None:
    """ConfigError for a key that is no config field (nor a section), naming the closest valid key."""
    if key not in config_keys():
        _unknown_key(key, sorted(_all_keys(RunConfig)))


def _unknown_key(key: str, valid: list[str]) -> None:
    if key in RENAMED_KEYS:
        raise ConfigError(f"config key {key!r} was renamed to {RENAMED_KEYS[key]!r}. Fix: set {RENAMED_KEYS[key]} "
                          "instead (files written before the rename still load).")
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
    raise ConfigError(f"unknown config key {key!r}: {hint}")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a JSON or command-line value to the field's type; None is allowed for Optional fields."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(name, args[0], value)
    if origin is Literal:
        return value
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, str):
                f = float(value)  # accepts 1e6
                if f != int(f):
                    raise ValueError(value)
                return int(f)
            if isinstance(value, float) and value != int(value):
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: not a valid {tp.__name__}. Fix: give a {tp.__name__} value.") from None
    return value


def set_fields(config: RunConfig, pairs) -> RunConfig:
    """A new, validated config with (dotted key, value) pairs set: the one implementation of dotted overrides (the
    CLI's --set and sweep axes both come here). A section's value may be a dataclass or a partial dict."""
    d = config.to_dict()
    for key, value in pairs:
        check_key(key)
        *path, leaf = key.split(".")
        node = d
        for part in path:
            node = node[part]
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            value = {**node[leaf], **value}
        node[leaf] = value
    return RunConfig.from_dict(d)


def apply_overrides(config: RunConfig, assignments: list[str]) -> RunConfig:
    """Return a new config with 'section.field=value' assignments applied (and validated)."""
    pairs = []
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"override {assignment!r}: expected KEY=VALUE, e.g. model.d_model=256")
        key, value = assignment.split("=", 1)
        pairs.append((key.strip(), value))
    for key, _ in pairs:  # a section cannot be set from a string
        if key not in _all_keys(RunConfig):
            _unknown_key(key, sorted(_all_keys(RunConfig)))
    return set_fields(config, pairs)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def _nearest_divisor(n: int, target: int) -> int:
    return min((k for k in range(1, n + 1) if n % k == 0), key=lambda k: (abs(k - target), -k))
