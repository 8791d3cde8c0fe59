"""Read sweep results into DataFrames: one row per run (`load`) or per logged step (`load_curves`).

Reads files only (`runs/*/summary.json`, `metrics.jsonl`, `results.jsonl`, CSV): analysis never imports the
training code. Which N, which C and which loss a fit uses is a `Convention`, chosen explicitly and recorded.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

# summary.json key -> column
_SUMMARY_COLUMNS = {
    "run_id": "run_id", "config_hash": "config_hash", "status": "status", "params": "N",
    "params_non_embedding": "N_nonembed", "tokens": "D", "epochs": "epochs", "flops": "C", "flops_6nd": "C_6ND_summary",
    "flops_per_token": "flops_per_token", "flop_convention": "flop_convention", "final_train_loss": "train_loss",
    "final_eval_loss": "eval_loss", "steps": "steps", "wall_time_s": "wall_time_s", "tokens_per_s": "tokens_per_s",
    "mfu": "mfu", "seed": "seed",
}


@dataclass(frozen=True)
class Convention:
    """Which parameter count is N, which FLOP count is C, and which loss is fitted; recorded in every fit.

    params: "total" (summary `params`) or "non_embedding" (`params_non_embedding`).
    flops:  "6ND" (C = flops_coefficient * N * D, with the N above) or "exact" (summary `flops`, attention included).
    loss:   "eval" (final eval loss, falling back to the final train loss where a run has none) or "train".
    """

    params: Literal["total", "non_embedding"] = "total"
    flops: Literal["6ND", "exact"] = "6ND"
    loss: Literal["eval", "train"] = "eval"
    flops_coefficient: float = 6.0

    def __post_init__(self):
        for name, allowed in (("params", ("total", "non_embedding")), ("flops", ("6ND", "exact")),
                              ("loss", ("eval", "train"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Convention.{name}={getattr(self, name)!r}: must be one of {allowed}.")

    @property
    def n_column(self) -> str:
        return "N" if self.params == "total" else "N_nonembed"

    @property
    def c_column(self) -> str:
        return "C_6ND" if self.flops == "6ND" else "C"

    def describe(self) -> str:
        n = "total parameters" if self.params == "total" else "non-embedding parameters"
        c = (f"C = {self.flops_coefficient:g} N D" if self.flops == "6ND"
             else "C = exact training FLOPs (attention included)")
        loss = "final eval loss (train loss where no eval)" if self.loss == "eval" else "final train loss"
        return f"N = {n}; D = training tokens; {c}; loss = {loss}"

    def to_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _summary_row(summary: dict, name: str | None, point: dict | None = None) -> dict:
    """A table row from a summary (results.jsonl rows carry name and tags; run dirs have them in point.json)."""
    point = point or {}
    row = {col: summary.get(key) for key, col in _SUMMARY_COLUMNS.items()}
    row["name"] = point.get("name") or summary.get("name") or name or summary.get("run_id")
    cfg = summary.get("config") or {}
    row.update({f"config.{k}": v for k, v in _flatten(cfg).items()})
    tags = point.get("tags") or summary.get("tags") or {}
    row.update({f"tags.{k}": v for k, v in tags.items()})
    if row["seed"] is None and "seed" in cfg:
        row["seed"] = cfg["seed"]
    return row


def _planned_row(point: dict, status: str) -> dict:
    """A run without a final result (running, pending or failed): what was planned, and no loss."""
    planned = {"params": point.get("params"), "tokens": point.get("tokens"), "flops": point.get("flops"),
               "run_id": point.get("run_id"), "config": point.get("config"), "status": status}
    return _summary_row(planned, None, point)


def _run_name(run_dir: Path, run_id: str | None) -> str:
    name = run_dir.name
    if run_id and name.endswith(f"-{run_id}"):
        return name[: -len(run_id) - 1]
    return name


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}). Fix: re-run the run or rebuild results.jsonl.") from err


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i + 1}: not valid JSON ({err}).") from err
    return rows


def _run_dirs(path: Path) -> list[Path]:
    runs = path / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def _run_row(run: Path) -> dict | None:
    """The row of one run dir: from summary.json; else failure.json (failed); else, for a planned run (point.json),
    'running' while a worker holds its claim (claim.json) and 'pending' before; else None (not a run)."""
    point = _read_json(run / "point.json") if (run / "point.json").is_file() else {}
    if (run / "summary.json").is_file():
        s = _read_json(run / "summary.json")
        row = _summary_row(s, _run_name(run, s.get("run_id")), point)
        if (run / "claim.json").is_file() and row["status"] == "interrupted":
            row["status"] = "running"  # resumed by a worker now
    elif (run / "failure.json").is_file():
        row = {**_planned_row(point, "failed"), "error": _read_json(run / "failure.json").get("error")}
    elif point:
        row = _planned_row(point, "running" if (run / "claim.json").is_file() else "pending")
    else:
        return None
    return {**row, "path": str(run)}


def _summaries(path: Path) -> list[dict]:
    """Summary rows from a sweep dir, a run dir or a results.jsonl."""
    if path.is_file():
        if path.suffix == ".jsonl":
            return [_summary_row(s, None) for s in _read_jsonl(path)]
        if path.name == "summary.json":
            return _summaries(path.parent)
        raise ValueError(f"{path}: expected a sweep dir, a run dir, results.jsonl, summary.json or a .csv")
    if (path / "summary.json").is_file() or (path / "failure.json").is_file():  # a single run
        return [_run_row(path)]
    rows = [row for row in map(_run_row, _run_dirs(path)) if row is not None]
    if rows:
        return rows
    if (path / "results.jsonl").is_file():
        return [_summary_row(s, None) for s in _read_jsonl(path / "results.jsonl")]
    raise FileNotFoundError(f"{path}: no runs/*/summary.json and no results.jsonl. Fix: point at a sweep output dir, "
                            "a run dir, a results.jsonl or a CSV with columns N, D, loss.")


def _from_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accept a table with N, D, C, loss (or the summary field names); derive what is missing, loudly."""
    df = df.rename(columns={k: v for k, v in _SUMMARY_COLUMNS.items() if k in df.columns and v not in df.columns})
    if "N" not in df.columns:
        raise ValueError(f"table needs a parameter-count column 'N' (or 'params'); has {list(df.columns)}")
    if "D" not in df.columns:
        if "C" not in df.columns:
            raise ValueError("table needs 'D' (training tokens, or 'tokens') or 'C' (training FLOPs) next to 'N'")
        warnings.warn("table has no D column: using D = C / (6 N)", stacklevel=3)
        df["D"] = df["C"] / (6.0 * df["N"])
    if "loss" in df.columns and "eval_loss" not in df.columns and "train_loss" not in df.columns:
        df["eval_loss"] = df["loss"]
    for col, default in (("N_nonembed", np.nan), ("C", np.nan), ("eval_loss", np.nan), ("train_loss", np.nan),
                         ("status", "complete"), ("seed", np.nan)):
        if col not in df.columns:
            df[col] = default
    if "run_id" not in df.columns:
        df["run_id"] = [f"row{i}" for i in range(len(df))]
    if "name" not in df.columns:
        df["name"] = df["run_id"]
    return df


def _finish(df: pd.DataFrame, convention: Convention) -> pd.DataFrame:
    for col in ("N", "N_nonembed", "D", "C", "eval_loss", "train_loss"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    n = df[convention.n_column]
    df["C_6ND"] = convention.flops_coefficient * n * df["D"]
    if convention.loss == "eval":
        df["loss"] = df["eval_loss"].where(df["eval_loss"].notna(), df["train_loss"])
    else:
        df["loss"] = df["train_loss"]
    first = ["run_id", "name", "status", "N", "N_nonembed", "D", "C", "C_6ND", "loss", "eval_loss", "train_loss",
             "seed"]
    df = df[first + [c for c in df.columns if c not in first]].reset_index(drop=True)
    df.attrs["convention"] = convention
    return df


def load(path, convention: Convention | None = None) -> pd.DataFrame:
    """One row per run: N (total), N_nonembed, D, C (exact) and C_6ND, loss, eval_loss, seed, status, config.*.

    `path`: a sweep dir (runs/*/summary.json, else results.jsonl), a run dir, a results.jsonl, a .csv, or a
    DataFrame with N, D (or C) and loss. `loss` is the fitted loss under the convention; C_6ND uses its N.
    """
    convention = convention or Convention()
    if isinstance(path, pd.DataFrame):
        return _finish(_from_table(path.copy()), convention)
    path = Path(path)
    if path.suffix == ".csv":
        return _finish(_from_table(pd.read_csv(path)), convention)
    return _finish(pd.DataFrame(_summaries(path)), convention)


def load_curves(path, convention: Convention | None = None) -> pd.DataFrame:
    """One row per logged step of every run: run_id, name, N, N_nonembed, step, tokens, C, C_6ND, loss, ...

    C is the exact FLOP count so far (flops_per_token * tokens), C_6ND = coefficient * N * tokens.
    """
    convention = convention or Convention()
    path = Path(path)
    run_dirs = [path] if (path / "summary.json").is_file() else _run_dirs(path)
    frames = []
    for run in run_dirs:
        if not (run / "summary.json").is_file() or not (run / "metrics.jsonl").is_file():
            continue
        s = _read_json(run / "summary.json")
        m = pd.DataFrame(_read_jsonl(run / "metrics.jsonl"))
        if m.empty:
            continue
        for key, col in (("run_id", "run_id"), ("status", "status"), ("params", "N"),
                         ("params_non_embedding", "N_nonembed"), ("tokens", "D_final"),
                         ("flops_per_token", "flops_per_token"), ("seed", "seed")):
            m[col] = s.get(key)
        point = _read_json(run / "point.json") if (run / "point.json").is_file() else {}
        m["name"] = point.get("name") or _run_name(run, s.get("run_id"))
        frames.append(m)
    if not frames:
        raise FileNotFoundError(f"{path}: no run with both summary.json and metrics.jsonl. Fix: point at a sweep "
                                "output dir or a run dir.")
    df = pd.concat(frames, ignore_index=True)
    if "eval_loss" not in df.columns:
        df["eval_loss"] = np.nan
    for col in ("N", "N_nonembed", "tokens", "loss", "eval_loss", "flops_per_token"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["C"] = df["flops_per_token"] * df["tokens"]
    df["C_6ND"] = convention.flops_coefficient * df[convention.n_column] * df["tokens"]
    df = df.sort_values(["run_id", "step"]).reset_index(drop=True)
    df.attrs["convention"] = convention
    return df


def fit_columns(df: pd.DataFrame, convention: Convention | None = None, *, statuses=("complete",)):
    """The (N, D, C, loss) arrays a fit uses, the convention, and a note on the runs left out and why."""
    convention = convention or df.attrs.get("convention") or Convention()
    keep = df["status"].isin(statuses) if "status" in df.columns else pd.Series(True, index=df.index)
    n = df[convention.n_column]
    if convention.loss == "eval":
        loss = df["eval_loss"].where(df["eval_loss"].notna(), df.get("train_loss"))
    else:
        loss = df["train_loss"]
    if loss.isna().all() and "loss" in df.columns:
        loss = df["loss"]
    c = convention.flops_coefficient * n * df["D"] if convention.flops == "6ND" else df["C"]
    ok = keep & np.isfinite(n) & np.isfinite(df["D"]) & np.isfinite(loss) & np.isfinite(c) & (n > 0) & \
        (df["D"] > 0) & (loss > 0)
    dropped = {}
    if (~keep).any():
        dropped["status not in " + "/".join(statuses)] = int((~keep).sum())
    if (keep & ~ok).any():
        dropped["missing or non-positive N, D, C or loss"] = int((keep & ~ok).sum())
    sel = df.index[ok]
    return (n[sel].to_numpy(float), df.loc[sel, "D"].to_numpy(float), np.asarray(c[sel], float),
            loss[sel].to_numpy(float), convention, dropped, sel)
