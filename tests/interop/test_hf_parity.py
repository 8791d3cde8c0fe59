"""Logit parity with transformers' own forward pass: HF -> ours (import) and ours -> HF (export), tiny f32 models.

Every weight, norm scale and bias is randomised first, so a mis-mapped tensor cannot hide behind an initial value.
"""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from research.config import ConfigError, ModelConfig
from research.data.tokenizer import ByteTokenizer
from research.interop import export_hf, import_hf
from research.model import Transformer

torch = pytest.importorskip("torch")
TOL = 1e-4
T = 12  # sequence length: longer than the sliding windows below


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("transformers")


def _ids(vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=(2, T))


def _hf_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.float().numpy()


def _our_logits(cfg: ModelConfig, params, ids: np.ndarray) -> np.ndarray:
    return np.asarray(jax.jit(Transformer(cfg).apply)({"params": params}, ids))


LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
IMPORT_CASES = {  # name: (config class, model class, config kwargs)
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", dict(LLAMA, num_key_value_heads=2, rope_theta=500.0)),
    "llama-mha-tied-bias": ("LlamaConfig", "LlamaForCausalLM",
                            dict(LLAMA, tie_word_embeddings=True, attention_bias=True, hidden_act="gelu_pytorch_tanh")),
    "qwen2-qkv-bias": ("Qwen2Config", "Qwen2ForCausalLM", dict(LLAMA, num_key_value_heads=2)),
    "mistral-window": ("MistralConfig", "MistralForCausalLM", dict(LLAMA, num_key_value_heads=1, sliding_window=4)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                                                   bos_token_id=0, eos_token_id=0)),
}


@pytest.mark.parametrize("name", list(IMPORT_CASES))
def test_import_matches_transformers_logits(tf, tmp_path, name):
    config_cls, model_cls, kwargs = IMPORT_CASES[name]
    torch.manual_seed(0)
    model = getattr(tf, model_cls)(getattr(tf, config_cls)(**kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(tmp_path)
    cfg, params = import_hf(tmp_path)
    ids = _ids(cfg.vocab_size)
    reference = _hf_logits(model, ids)
    ours = _our_logits(cfg, params, ids)
    assert np.abs(ours - reference).max() <= TOL
    if name == "mistral-window":  # the window must matter here, or this case would test nothing
        assert cfg.sliding_window == 4
        full = _our_logits(dataclasses.replace(cfg, sliding_window=None), params, ids)
        assert np.abs(full - reference).max() > 100 * TOL


def _random_params(cfg: ModelConfig, seed: int) -> dict:
    """Random values in the tree and shapes of Transformer(cfg).init (shapes only: nothing is compiled)."""
    shapes = jax.eval_shape(lambda k: Transformer(cfg).init(k, np.zeros((1, 4), np.int32)), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(np.float32), nn.meta.unbox(shapes["params"]))


def _explicit(cfg: ModelConfig) -> ModelConfig:
    """Defaults spelled out (d_ff=None and d_ff=128 are the same model)."""
    return cfg.resolved()


SMALL = dict(vocab_size=48, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
EXPORT_CASES = {  # name: (our config, HF model class it must load as)
    "llama-gqa-untied": (ModelConfig(**SMALL, n_kv_heads=2, d_ff=40, tie_embeddings=False, rope_base=300.0),
                         "LlamaForCausalLM"),
    "llama-geglu-bias": (ModelConfig(**SMALL, activation="geglu", use_bias=True, d_ff=40), "LlamaForCausalLM"),
    "qwen2-window": (ModelConfig(**SMALL, n_kv_heads=2, d_ff=40, qkv_bias=True, sliding_window=5),
                     "Qwen2ForCausalLM"),
    "mistral-window": (ModelConfig(**SMALL, n_kv_heads=1, d_ff=40, sliding_window=3), "MistralForCausalLM"),
    "gpt2-byte-vocab": (ModelConfig(**dict(SMALL, vocab_size=259), norm="layernorm", activation="gelu",
                                    use_bias=True, positions="learned"), "GPT2LMHeadModel"),
    "gpt2-relu-untied": (ModelConfig(**SMALL, norm="layernorm", activation="relu", use_bias=True,
                                     positions="learned", tie_embeddings=False, norm_eps=1e-6), "GPT2LMHeadModel"),
}


@pytest.mark.parametrize("name", list(EXPORT_CASES))
def test_export_loads_in_transformers_with_same_logits(tf, tmp_path, name):
    cfg, model_cls = EXPORT_CASES[name]
    params = _random_params(cfg, seed=len(name))
    export_hf(cfg, params, tmp_path)
    model = tf.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(model).__name__ == model_cls
    assert model.config.vocab_size == cfg.vocab_size
    ids = _ids(cfg.vocab_size, seed=1)
    assert np.abs(_our_logits(cfg, params, ids) - _hf_logits(model, ids)).max() <= TOL
    cfg_back, params_back = import_hf(tmp_path)  # and back: the same config and bit-identical weights
    assert _explicit(cfg_back) == _explicit(cfg)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_exported_byte_tokenizer_encodes_like_ours(tf, tmp_path):
    from research.interop.hf_tokenizer import write_hf_tokenizer

    write_hf_tokenizer(ByteTokenizer(), tmp_path)
    hf_tok = tf.AutoTokenizer.from_pretrained(tmp_path)
    text = "Wherefore art thou, Roméo? 🌹\n"
    assert hf_tok.encode(text) == ByteTokenizer().encode(text) == list(text.encode("utf-8"))
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (256, 257, 258)
    assert hf_tok.decode(list(text.encode("utf-8"))) == text


LLAMA_OK = dict(SMALL, d_ff=40)
GPT2_OK = dict(SMALL, norm="layernorm", activation="gelu", use_bias=True, positions="learned")
UNSUPPORTED_EXPORT = [  # (our config, arch, option the error must name)
    (dict(LLAMA_OK, positions="alibi"), "llama", "model.positions='alibi'"),
    (dict(LLAMA_OK, positions="sinusoidal"), "llama", "model.positions='sinusoidal'"),
    (dict(LLAMA_OK, norm_placement="post"), "llama", "model.norm_placement='post'"),
    (dict(LLAMA_OK, norm="layernorm"), "llama", "model.norm='layernorm'"),
    (dict(LLAMA_OK, activation="relu"), "llama", "model.activation='relu'"),
    (dict(LLAMA_OK, sliding_window=4, use_bias=True), "llama", "model.sliding_window=4"),
    (dict(LLAMA_OK, causal=False), "llama", "model.causal=False"),
    (dict(GPT2_OK, use_bias=False), "gpt2", "model.use_bias=False"),
    (dict(GPT2_OK, positions="sinusoidal"), "gpt2", "model.positions='sinusoidal'"),
    (dict(GPT2_OK, n_kv_heads=2), "gpt2", "model.n_kv_heads=2"),
    (dict(GPT2_OK, activation="swiglu"), "gpt2", "model.activation='swiglu'"),
    (dict(GPT2_OK, norm="rmsnorm"), "gpt2", "model.norm='rmsnorm'"),
    (dict(LLAMA_OK), "t5", "--arch='t5'"),
]


@pytest.mark.parametrize("kwargs,arch,option", UNSUPPORTED_EXPORT, ids=[c[2] for c in UNSUPPORTED_EXPORT])
def test_unrepresentable_export_names_the_option(tmp_path, kwargs, arch, option):
    with pytest.raises(ConfigError, match="Fix:") as err:
        export_hf(ModelConfig(**kwargs), {}, tmp_path / "out", arch=arch)
    assert option in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written


UNSUPPORTED_IMPORT = [  # (config.json, option the error must name)
    (dict(model_type="llama", **LLAMA, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
          rope_theta=500000.0), "rope_scaling="),
    (dict(model_type="llama", **LLAMA, rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling="),
    (dict(model_type="llama", **LLAMA, hidden_act="relu"), "hidden_act='relu'"),
    (dict(model_type="gpt2", vocab_size=64, n_embd=32, n_layer=2, n_head=4, activation_function="gelu"),
     "activation_function='gelu'"),
    (dict(model_type="gpt2", vocab_size=64, n_embd=32, n_layer=2, n_head=4, scale_attn_by_inverse_layer_idx=True),
     "scale_attn_by_inverse_layer_idx=True"),
    (dict(model_type="phi3", **LLAMA), "model_type='phi3'"),
]


@pytest.mark.parametrize("config,option", UNSUPPORTED_IMPORT, ids=[c[1] for c in UNSUPPORTED_IMPORT])
def test_unrepresentable_import_names_the_option(tf, tmp_path, config, option):
    (tmp_path / "config.json").write_text(json.dumps(config))  # no weights: the config is refused first
    with pytest.raises(ConfigError, match="Fix:") as err:
        import_hf(tmp_path)
    assert option in str(err.value)
