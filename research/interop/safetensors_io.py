"""Read and write safetensors checkpoints with NumPy alone: one file or a sharded index, bf16 via ml_dtypes.

Reading parses the format's JSON header and memory-maps the data, so neither torch nor the safetensors package is
needed to import, and bf16 checkpoints (which NumPy cannot name) load too.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

from research.config import ConfigError

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
          "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors files of a HF checkpoint directory; a clear error when there are none."""
    directory = Path(directory)
    if (directory / INDEX).is_file():
        weight_map = json.loads((directory / INDEX).read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    if (directory / SINGLE).is_file():
        return [directory / SINGLE]
    legacy = [p.name for p in directory.glob("*.bin")]
    hint = (f" (it holds {legacy[0]}: re-save it with transformers' save_pretrained(..., safe_serialization=True))"
            if legacy else "")
    raise ConfigError(f"path={str(directory)!r}: no {SINGLE} or {INDEX}{hint}. Fix: point at a Hugging Face "
                      "checkpoint directory with config.json and safetensors weights.")


def read_tensors(directory: Path) -> dict[str, np.ndarray]:
    """name -> array (memory-mapped, in the stored dtype) for every tensor of the checkpoint."""
    tensors: dict[str, np.ndarray] = {}
    for file in checkpoint_files(directory):
        tensors.update(_read_file(file))
    return tensors


def _read_file(file: Path) -> dict[str, np.ndarray]:
    with open(file, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + size) if file.stat().st_size > 8 + size else None
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ConfigError(f"tensor {name!r} in {file}: dtype {info['dtype']} is not supported. Fix: save the "
                              f"checkpoint in one of {sorted(DTYPES)}.")
        start, end = info["data_offsets"]
        raw = data[start:end] if data is not None else np.zeros(0, np.uint8)
        out[name] = raw.view(DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def write_tensors(directory: Path, tensors: dict[str, np.ndarray]) -> Path:
    """Write `tensors` as float32 into directory/model.safetensors (the metadata transformers expects)."""
    from safetensors.numpy import save_file

    path = Path(directory) / SINGLE
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path),
              metadata={"format": "pt"})
    return path
