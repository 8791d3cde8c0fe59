"""Tokenizers across the boundary: our tokenizer.json -> HF tokenizer files, and an HF tokenizer.json -> ours.

Ours name their specials <|bos|>, <|eos|>, <|pad|> (research.data.tokenizer). Exporting a byte-level run writes an
equivalent HF byte-level BPE with no merges (byte b is id b, specials 256-258), which AutoTokenizer loads; importing
renames the HF tokens that play BOS / EOS / PAD (ids unchanged) and adds a token for any role no distinct token has.
"""

from __future__ import annotations

import json
from pathlib import Path

from research.config import ConfigError
from research.data.tokenizer import BOS, EOS, PAD, SPECIALS, BPETokenizer, ByteTokenizer, Tokenizer, _hf


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokenizer_json() -> str:
    """A `tokenizers` JSON that encodes exactly as ByteTokenizer: byte b -> id b, then BOS, EOS, PAD = 256-258."""
    tk = _hf()
    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    tok = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = tk.decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    return tok.to_str()


def write_hf_tokenizer(tokenizer: Tokenizer, out_dir: Path) -> None:
    """tokenizer.json + tokenizer_config.json for PreTrainedTokenizerFast, specials named by role."""
    text = byte_tokenizer_json() if isinstance(tokenizer, ByteTokenizer) else tokenizer.to_json()
    (Path(out_dir) / "tokenizer.json").write_text(text)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False}
    (Path(out_dir) / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _is_byte_layout(obj: dict) -> bool:
    """True for the byte_tokenizer_json layout (so a byte-level run round-trips as a byte-level run)."""
    model = obj.get("model") or {}
    vocab = model.get("vocab")
    if model.get("type") != "BPE" or model.get("merges") or not isinstance(vocab, dict):
        return False
    added = {t["content"]: t["id"] for t in obj.get("added_tokens", [])}
    return vocab == {ch: b for b, ch in bytes_to_unicode().items()} and added == {BOS: 256, EOS: 257, PAD: 258}


def _role_tokens(hf_dir: Path, tok) -> dict[str, str | None]:
    """The HF token strings of BOS, EOS and PAD: tokenizer_config.json first, then config.json's ids."""
    roles: dict[str, str | None] = {}
    tconf = hf_dir / "tokenizer_config.json"
    conf = json.loads(tconf.read_text()) if tconf.is_file() else {}
    model_conf = json.loads((hf_dir / "config.json").read_text())
    for ours, key in ((BOS, "bos"), (EOS, "eos"), (PAD, "pad")):
        value = conf.get(f"{key}_token")
        value = value.get("content") if isinstance(value, dict) else value
        if value is None:
            ids = model_conf.get(f"{key}_token_id")
            ids = ids[0] if isinstance(ids, list) and ids else ids
            value = tok.id_to_token(ids) if isinstance(ids, int) else None
        roles[ours] = value if value is not None and tok.token_to_id(value) is not None else None
    return roles


def _rename(node, old: str, new: str):
    """A copy of a JSON subtree with every string (and dict key) equal to `old` replaced by `new`."""
    if isinstance(node, dict):
        return {(new if k == old else k): _rename(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_rename(v, old, new) for v in node]
    return new if node == old else node


def tokenizer_from_hf(hf_dir: Path) -> tuple[Tokenizer, list[str]]:
    """Our tokenizer for an HF checkpoint directory's tokenizer.json, and notes on how specials were mapped."""
    path = Path(hf_dir) / "tokenizer.json"
    text = path.read_text()
    obj = json.loads(text)
    if _is_byte_layout(obj):
        return ByteTokenizer(), ["byte-level tokenizer (ids 0-255 bytes, 256-258 BOS/EOS/PAD)"]
    if (obj.get("model") or {}).get("type") != "BPE":
        raise ConfigError(f"{path}: model.type={(obj.get('model') or {}).get('type')!r}: research.data reads BPE "
                          "tokenizers only. Fix: import the weights alone with research.interop.import_hf.")
    tk = _hf()
    roles = _role_tokens(Path(hf_dir), tk.Tokenizer.from_str(text))
    notes, missing, used = [], [], set()
    for ours in (EOS, BOS, PAD):  # EOS first: GPT-2's <|endoftext|> is both BOS and EOS, and ends documents
        theirs = roles[ours]
        if theirs is None or theirs in used or theirs in SPECIALS and theirs != ours:
            missing.append(ours)
            continue
        used.add(theirs)
        if theirs != ours:
            for key in ("added_tokens", "model", "post_processor"):
                obj[key] = _rename(obj.get(key), theirs, ours)
            notes.append(f"{ours} = HF {theirs!r} (id {tk.Tokenizer.from_str(text).token_to_id(theirs)})")
    tok = tk.Tokenizer.from_str(json.dumps(obj))
    for ours in missing:
        tok.add_special_tokens([ours])
        notes.append(f"{ours} = new token id {tok.token_to_id(ours)} (no distinct HF token had that role)")
    return BPETokenizer(tok), notes
