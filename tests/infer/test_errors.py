"""Bad input fails before any compile with a message naming the argument, its value and the fix."""

from __future__ import annotations

import pytest

from research.config import ConfigError
from research.infer import Sampling, beam_generate, generate, token_logprobs
from tests.infer.common import served
from tests.model.harness import tiny

CFG = tiny()  # max_seq_len 16


@pytest.mark.parametrize("prompts,max_new,match", [
    ([[1, 2], []], 4, r"prompt\[1\]='': an empty prompt"),
    ([], 4, r"prompts=\[\]"),
    ([list(range(16))], 4, r"prompt\[0\] length=16 tokens: fills the model's whole context"),
    ([[1] * 20], 4, r"length=20"),
    ([[1] * 10], 7, r"max_new_tokens=7: a 10-token prompt plus 7 new tokens exceeds .* Fix: use max_new_tokens <= 6"),
    ([[1, 99]], 4, r"outside the model's vocabulary \[0, 37\)"),
    ([[1, 2]], 0, r"max_new_tokens=0"),
])
def test_bad_prompts_are_clear_errors(prompts, max_new, match):
    model, _, _ = served(CFG)
    with pytest.raises(ConfigError, match=match):
        generate(model, prompts, max_new)
    with pytest.raises(ConfigError, match=match):
        beam_generate(model, prompts, max_new, width=2)


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -1.0}, "temperature=-1.0"), ({"top_k": -2}, "top_k=-2"), ({"top_p": 0.0}, "top_p=0.0"),
    ({"top_p": 1.5}, "top_p=1.5"),
])
def test_bad_sampling_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Sampling(**kwargs)


def test_bad_beam_width_and_scoring_input():
    model, _, _ = served(CFG)
    with pytest.raises(ConfigError, match="beams=0"):
        beam_generate(model, [[1, 2]], 2, width=0)
    with pytest.raises(ConfigError, match=r"texts\[0\]=''"):
        token_logprobs(model, [[]], context_id=0)
    with pytest.raises(ConfigError, match="window=17"):
        token_logprobs(model, [[1]], context_id=0, window=17)


def test_a_bidirectional_model_cannot_generate():
    with pytest.raises(ConfigError, match="model.causal=False"):
        served(tiny(causal=False))
