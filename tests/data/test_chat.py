"""Chat data for SFT: rendering and loss masks worked by hand, whole-example packing, batches, and bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from research.config import ConfigError, DataConfig
from research.data import ByteTokenizer, DataError, load_data
from research.data.chat import LOSS, START, ChatTemplate, pack_examples, read_conversations, render

TALK = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "ok?"}, {"role": "assistant", "content": "sure"}]


def test_the_loss_covers_assistant_tokens_and_their_eos_worked_by_hand():
    tok = ByteTokenizer()
    ids, flags = render(TALK, tok, ChatTemplate())
    text = "<|user|>\nhi\n<|assistant|>\nyo" + "\x00" + "<|user|>\nok?\n<|assistant|>\nsure" + "\x00"
    expected = [tok.eos_id if c == "\x00" else b for c, b in zip(text, text.encode())]
    assert ids.tolist() == expected
    # "<|user|>\n" 9 + "hi" 2 + "\n" 1 + "<|assistant|>\n" 14 = 26: "yo" + EOS at 26..28; the second reply at 56..60
    trained = np.flatnonzero(flags & LOSS).tolist()
    assert trained == [26, 27, 28, 56, 57, 58, 59, 60]
    assert ids[28] == ids[60] == tok.eos_id and flags[0] == START and not (flags[1:] & START).any()
    _, last_only = render(TALK, tok, ChatTemplate(), loss_on="last_assistant")
    assert np.flatnonzero(last_only & LOSS).tolist() == [56, 57, 58, 59, 60]


def test_prompt_response_lines_are_a_two_message_conversation(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "response": "yo", "system": "be brief"}) + "\n\n" +
                    json.dumps({"messages": TALK}) + "\n")
    first, second = read_conversations(path, "data.source='sft.jsonl'")
    assert first == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "yo"}]
    assert second == TALK


def test_examples_are_packed_whole_in_order_and_cut_only_when_longer_than_a_window():
    examples = [(np.arange(1, n + 1, dtype=np.int32) * 10, np.full(n, LOSS, np.uint8)) for n in (3, 4, 5, 10)]
    for _, flags in examples:
        flags[0] |= START
    tokens, flags, truncated = pack_examples(examples, seq_len=7, pad_id=-1)  # windows of 8
    assert truncated == 1
    assert tokens.reshape(-1, 8).tolist() == [[10, 20, 30, 10, 20, 30, 40, -1],
                                              [10, 20, 30, 40, 50, -1, -1, -1],
                                              [10, 20, 30, 40, 50, 60, 70, 80]]
    assert (flags.reshape(-1, 8)[:, 0] & START).all() and flags.reshape(-1, 8)[0, 3] & START
    assert not flags.reshape(-1, 8)[0, 7] and not flags.reshape(-1, 8)[1, 5:].any()


@pytest.fixture
def chat_source(tmp_path):
    rng = random.Random(0)
    words = "the a cat dog sat ran on under mat log why how yes no".split()
    say = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    lines = []
    for i in range(60):
        talk = [{"role": "user", "content": say(rng.randint(2, 6))},
                {"role": "assistant", "content": say(rng.randint(1, 8))}]
        if i % 3 == 0:
            talk += [{"role": "user", "content": say(3)}, {"role": "assistant", "content": say(2)}]
        lines.append(json.dumps({"messages": talk}))
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("loss_on", ["all_assistant", "last_assistant"])
def test_batches_train_on_exactly_the_flagged_tokens_and_documents_follow_the_examples(chat_source, loss_on,
                                                                                        tmp_path):
    cfg = DataConfig(source=chat_source, format="chat", loss_on=loss_on, seq_len=192, val_fraction=0.2,
                     document_mask=True)
    data = load_data(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "chat_template.json").is_file()
    n = data.num_train_windows
    batch = data.train_batch(0, n, seed=0)  # every window once (one epoch, shuffled)
    pad = data.tokenizer.pad_id
    assert int((batch["targets"] != pad).sum()) == int((np.asarray(data.train_flags) & LOSS).sum())
    assert set(batch["inputs"][batch["targets"] != pad].ravel()) - set(range(256)) == set()  # replies are text...
    assert (batch["targets"] == data.tokenizer.eos_id).sum() > 0  # ... and end with EOS
    assert int((batch["positions"] == 0).sum()) == data.info["num_train_docs"]  # each example starts once, at 0
    assert data.info["truncated_train_examples"] == 0


def test_chat_errors_name_the_line_and_the_fix(tmp_path):
    path = tmp_path / "bad.jsonl"
    for line, expected in [('{"text": "x"}', r"line 2: no conversation"),
                           ('{"messages": [{"role": "user", "content": "x"}]}', r"line 2: .* no assistant message"),
                           ('{"messages": [{"role": "bot", "content": "x"}]}', r"line 2: message .* role in"),
                           ("{oops", r"line 2: not valid JSON")]:
        path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + line + "\n")
        with pytest.raises(DataError, match=expected + ".*Fix: write each line"):
            read_conversations(path, f"data.source={str(path)!r}")
    with pytest.raises(ConfigError, match=r"data.format='chat': .* Fix: point data.source at a .jsonl"):
        DataConfig(source="notes.txt", format="chat")
