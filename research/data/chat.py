"""Chat (instruction) data for supervised fine-tuning: conversations -> template -> token ids with per-token flags.

A JSONL line is {"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]} or
{"prompt": str, "response": str} (optionally "system"). The template renders each message as its header, its content,
and its end; an assistant message ends with the tokenizer's EOS instead, so generation stops there. Each piece is
tokenised on its own (so a mask boundary is a token boundary), and flags mark the tokens the loss trains on (the
assistant turns' content and EOS: all of them, or only the last) and the first token of each example. Examples are
packed whole, in order, into windows of seq_len + 1 tokens (the rest of a window is PAD), so no example is cut across
windows; one longer than a window keeps its first seq_len + 1 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from research.data.errors import DataError
from research.data.tokenizer import Tokenizer
from research.files import write_text_atomic

LOSS, START = 1, 2  # flag bits: the token is trained on as a target; the token begins an example
ROLES = ("system", "user", "assistant")
TEMPLATE_FILE = "chat_template.json"  # in the run directory, beside tokenizer.json


@dataclass(frozen=True)
class ChatTemplate:
    """Message i renders as header.format(role=role) + content + (EOS if assistant else end)."""

    header: str = "<|{role}|>\n"
    end: str = "\n"

    def text(self, messages: Sequence[dict]) -> str:
        """The conversation as plain text, every message closed by `end` (what a BPE for chat data learns from)."""
        return "".join(self.header.format(role=m["role"]) + m["content"] + self.end for m in messages)

    def prompt(self, messages: Sequence[dict]) -> str:
        """The text that asks the model for the next assistant turn (generation's input)."""
        return self.text(messages) + self.header.format(role="assistant")

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def of_run(cls, workdir: Path) -> ChatTemplate:
        """The template a run was trained with (its chat_template.json), or the default."""
        path = Path(workdir) / TEMPLATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()


def render(messages: Sequence[dict], tokenizer: Tokenizer, template: ChatTemplate,
           loss_on: str = "all_assistant") -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [n], flags uint8 [n]) of one conversation; see the module docstring."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ids, flags = [], []
    for i, m in enumerate(messages):
        trained = m["role"] == "assistant" and (loss_on == "all_assistant" or i == last)
        header = tokenizer.encode(template.header.format(role=m["role"]))
        body = tokenizer.encode(m["content"]) + ([tokenizer.eos_id] if m["role"] == "assistant" else [])
        tail = [] if m["role"] == "assistant" else tokenizer.encode(template.end)
        ids += header + body + tail
        flags += [0] * len(header) + [LOSS if trained else 0] * len(body) + [0] * len(tail)
    flags[0] |= START
    return np.asarray(ids, np.int32), np.asarray(flags, np.uint8)


def pack_examples(examples: Sequence[tuple[np.ndarray, np.ndarray]], seq_len: int,
                  pad_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(tokens, flags, number truncated): whole examples in order, a new window (of seq_len + 1) whenever the next one
    does not fit in what is left of the current one, which is PAD-filled (flags 0). Both streams are a whole number
    of windows long."""
    width = seq_len + 1
    windows, truncated, used = [], 0, width
    for ids, flags in examples:
        if len(ids) > width:
            ids, flags, truncated = ids[:width], flags[:width], truncated + 1
        if used + len(ids) > width:
            windows.append((np.full(width, pad_id, np.int32), np.zeros(width, np.uint8)))
            used = 0
        windows[-1][0][used:used + len(ids)] = ids
        windows[-1][1][used:used + len(ids)] = flags
        used += len(ids)
    if not windows:
        return np.zeros(0, np.int32), np.zeros(0, np.uint8), 0
    return np.concatenate([w[0] for w in windows]), np.concatenate([w[1] for w in windows]), truncated


def read_conversations(path: Path, label: str, need_reply: bool = True) -> list[list[dict]]:
    """Every conversation of a JSONL file, in order, as a list of {"role", "content"} messages. `label` names the
    file in errors (e.g. "data.source='sft.jsonl'"); need_reply: each must hold an assistant message (training)."""
    conversations = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                conversations.append(_conversation(line, f"{label} line {lineno}", need_reply))
    return conversations


def _conversation(line: str, where: str, need_reply: bool) -> list[dict]:
    fix = ('Fix: write each line as {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", '
           '"content": "..."}]} or {"prompt": "...", "response": "..."}.')
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg}). {fix}") from None
    if isinstance(obj, dict) and "messages" not in obj and {"prompt", "response"} <= set(obj):
        obj = {"messages": ([{"role": "system", "content": obj["system"]}] if obj.get("system") else []) + [
            {"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["response"]}]}
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(messages, list) or not messages:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{where}: no conversation (the line has {keys}). {fix}")
    for m in messages:
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
            raise DataError(f"{where}: message {m!r} needs a role in {list(ROLES)} and a string content. {fix}")
    if need_reply and not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: the conversation has no assistant message, so nothing to train on. {fix}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]
