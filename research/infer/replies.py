"""Replies to conversations with a run's chat template: chat generation, and the teacher outputs that
sequence-level distillation trains on (ADAPT-9: a student trained, with data.format=chat, on what the teacher says)."""

from __future__ import annotations

from collections.abc import Sequence

from research.data import Tokenizer
from research.data.chat import ChatTemplate
from research.infer.beam import beam_generate
from research.infer.decode import GREEDY, generate
from research.infer.model import InferenceModel
from research.infer.sampling import Sampling

CHUNK = 32  # conversations decoded together (one compile per chunk shape)


def context(conversation: Sequence[dict]) -> list[dict]:
    """What a reply answers: the conversation without its final assistant turn, if it ends with one."""
    return list(conversation[:-1] if conversation[-1]["role"] == "assistant" else conversation)


def reply(model: InferenceModel, tokenizer: Tokenizer, template: ChatTemplate, conversations: Sequence[Sequence[dict]],
          max_new_tokens: int, method: Sampling = GREEDY, beams: int = 1, length_penalty: float = 1.0,
          seed: int = 0) -> list[list[dict]]:
    """Each conversation's context followed by the model's reply (greedy by default, sampled, or the best beam),
    cut at its EOS."""
    out = []
    for start in range(0, len(conversations), CHUNK):
        contexts = [context(c) for c in conversations[start:start + CHUNK]]
        prompts = [tokenizer.encode(template.prompt(c)) for c in contexts]
        stops = (tokenizer.eos_id,)
        if beams > 1:
            made = beam_generate(model, prompts, max_new_tokens, beams, length_penalty, stops, tokenizer.pad_id)
        else:
            made = generate(model, prompts, max_new_tokens, method, stops, seed + start, tokenizer.pad_id)
        out += [c + [{"role": "assistant", "content": tokenizer.decode(ids)}] for c, ids in zip(contexts, made.tokens)]
    return out
