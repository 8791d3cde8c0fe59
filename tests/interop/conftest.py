"""Shared by the interop tests: a small random LLaMA checkpoint directory with a LLaMA-style tokenizer."""

from __future__ import annotations

import json

import pytest


def _llama_style_tokenizer(words: list[str]):
    """A small byte-level BPE with LLaMA's special names (<unk>, <s>, </s>; no pad), as HF ships them."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
                                             show_progress=False)
    tok.train_from_iterator(words * 20, trainer)
    return tok


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, small_corpus):
    """(directory, the transformers model, the tokenizers tokenizer) of a 2-layer random LLaMA with GQA."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    from tests.conftest import WORDS

    root = tmp_path_factory.mktemp("hf")
    tok = _llama_style_tokenizer(list(WORDS))
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=48,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    model = tf.LlamaForCausalLM(config).eval()
    model.save_pretrained(root)
    return root, model, tok
