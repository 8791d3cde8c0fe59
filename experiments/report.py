"""`report OUT`: OUT/report.md (the table and what it means), OUT/table.csv and table.json (the same numbers) and
OUT/curves.png (training curves, mean over seeds), from the run directories alone."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from experiments.table import ALPHA, Row, RunResult, build_rows, load_runs

NOT_TRAINED = ("pending", "running", "stalled", "interrupted")


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pm(s, signed: bool = False) -> str:
    if s.n == 0:
        return "n/a"
    mean = f"{s.mean:+.4f}" if signed else _fmt(s.mean)
    return mean + ("" if math.isnan(s.half_width) else f" ± {_fmt(s.half_width)}")


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return ("<0.001" if p < 1e-3 else f"{p:.3f}") + (" *" if p < ALPHA else "")


def _runs_note(row: Row) -> str:
    """'3/3', or '2/3 (1 diverged)': seeds in the statistics / planned, and what happened to the rest."""
    ok = row.loss.n
    rest = {s: n for s, n in row.statuses.items() if s != "complete"}
    note = ", ".join(f"{n} {s}" for s, n in sorted(rest.items()))
    return f"{ok}/{len(row.runs)}" + (f" ({note})" if note else "")


def table_records(experiment: dict, rows: list[Row]) -> list[dict]:
    """One flat record per row: what the CSV/JSON hold and the markdown shows."""
    tags = [a["tag"] for a in experiment["axes"]]
    records = []
    for row in rows:
        walls = [r.wall_s for r in row.runs if r.wall_s is not None]
        rec = {"variant": row.variant, **dict(zip(tags, row.cell, strict=True)),
               "params": row.runs[0].params if row.runs else None, "n": row.loss.n, "planned": len(row.runs),
               "statuses": row.statuses, "eval_loss_mean": row.loss.mean, "eval_loss_ci95": row.loss.half_width,
               "eval_loss_std": row.loss.std, "diff_vs_baseline": None if row.test is None else row.test.diff,
               "welch_t": None if row.test is None else row.test.t,
               "welch_dof": None if row.test is None else row.test.dof,
               "welch_p": None if row.test is None else row.test.p, "verdict": row.verdict,
               "flops_per_run": row.runs[0].flops if row.runs else None,
               "wall_s_per_run": float(np.mean(walls)) if walls else None, "wall_s_total": float(sum(walls))}
        if experiment["kv_cache"]:
            rec["kv_cache_bytes_per_token"] = row.runs[0].kv_bytes_per_token
        for f, s in row.lengths.items():
            rec[f"eval_loss_{f}x_mean"], rec[f"eval_loss_{f}x_ci95"] = s.mean, s.half_width
        for f, s in row.gaps.items():
            rec[f"gap_{f}x_vs_1x_mean"], rec[f"gap_{f}x_vs_1x_ci95"] = s.mean, s.half_width
        records.append(rec)
    return records


def markdown_table(experiment: dict, rows: list[Row]) -> str:
    tags = [a["tag"] for a in experiment["axes"]]
    seq = experiment["seq_len"]
    head = ["variant", *tags, "params", "eval loss (mean ± 95% CI)", "seeds", "Δ vs baseline", "Welch p", "verdict",
            "C per run (FLOPs)", "wall s per run"]
    if experiment["kv_cache"]:
        head.append("KV cache B/token")
    head += [f"eval @{f}x ({f * seq} tok)" for f in experiment["eval_lengths"] if f != 1]
    head += [f"@{f}x − @1x" for f in rows[0].gaps] if rows else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, rec in zip(rows, table_records(experiment, rows), strict=True):
        cells = [f"**{row.variant}**" if row.is_baseline else row.variant, *[str(c) for c in row.cell],
                 f"{rec['params']:,}", _pm(row.loss), _runs_note(row),
                 "—" if row.test is None else ("n/a" if math.isnan(row.test.diff) else f"{row.test.diff:+.4f}"),
                 "—" if row.test is None else _p(row.test.p), row.verdict,
                 f"{rec['flops_per_run']:.3g}", _fmt(rec["wall_s_per_run"], 1)]
        if experiment["kv_cache"]:
            cells.append(f"{rec['kv_cache_bytes_per_token']:,}")
        cells += [_pm(s) for f, s in row.lengths.items() if f != 1]
        cells += [_pm(s, signed=True) for s in row.gaps.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(experiment: dict, rows: list[Row], results: list[RunResult]) -> str:
    walls = [r.wall_s for r in results if r.wall_s is not None]
    flops = sum(r.flops for r in results if r.status in ("complete", "diverged"))
    pending = [r.dirname for r in results if r.status in NOT_TRAINED]
    out = [f"# Ablation: {experiment['ablation']} (scale {experiment['scale']})", "",
           experiment["description"] + ".", "",
           f"- Seeds: {experiment['seeds']} (the same initialisation and data-order seeds for every variant); "
           "same data, same token budget.",
           f"- Matched: {experiment['matched']}.",
           f"- Baseline: {experiment['baseline']}. Δ = mean(variant) − mean(baseline) in the same row group; p: "
           f"two-sided Welch t-test over seeds; * and 'better'/'worse' mean p < {ALPHA} (no correction for "
           "multiple comparisons). Eval loss: nats per byte on held-out windows at the end of training.",
           f"- Compute: {len(walls)} runs, {flops:.3g} training FLOPs, {sum(walls):.0f} s of run wall time in all.",
           ""]
    if experiment.get("overrides"):
        out += [f"- Base overrides: {', '.join(experiment['overrides'])}", ""]
    out += [markdown_table(experiment, rows), ""]
    if experiment["eval_lengths"]:
        out += [f"Eval @kx: the same text as the training run's final evaluation, re-cut into windows of k x the "
                f"training length ({experiment['seq_len']} tokens); learned positions beyond the training length "
                "were never trained. @kx − @1x: the per-run change, mean ± 95% CI over seeds (a paired comparison: "
                "an interval that excludes 0 is a change at p < 0.05).", ""]
    if pending:
        out += [f"Not finished ({len(pending)}): {', '.join(pending)}. Rerun `python -m experiments run` to finish.",
                ""]
    out += [f"Literature: {experiment['literature']}", "", "![training curves](curves.png)", ""]
    return "\n".join(out)


def plot_curves(experiment: dict, rows: list[Row], path: Path) -> None:
    """Train loss vs tokens (mean over the seeds that logged each step), eval loss as markers; a panel per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(r.cell for r in rows))
    cols = min(len(cells), 2)
    fig, axes = plt.subplots(-(-len(cells) // cols), cols, figsize=(6.5 * cols, 4 * -(-len(cells) // cols)),
                             squeeze=False)
    tags = [a["tag"] for a in experiment["axes"]]
    for ax, cell in zip(axes.flat, cells, strict=False):
        tops = []
        for i, row in enumerate(r for r in rows if r.cell == cell):
            color = f"C{i}"
            for key, style in (("loss", "-"), ("eval_loss", "o")):
                by_tokens: dict = {}
                for run in row.runs:
                    for rec in run.curve:
                        if rec.get(key) is not None and math.isfinite(rec[key]):
                            by_tokens.setdefault(rec["tokens"], []).append(rec[key])
                if not by_tokens:
                    continue
                xs = sorted(by_tokens)
                ys = [float(np.mean(by_tokens[x])) for x in xs]
                ax.plot(xs, ys, style, color=color, label=row.variant if key == "loss" else None,
                        markersize=4, alpha=0.9)
                if key == "loss":
                    tops.append(ys[min(len(ys) - 1, len(ys) // 5)])
        if tops:
            ax.set_ylim(top=max(tops) * 1.05)
        ax.set_xlabel("tokens")
        ax.set_ylabel("loss (nats/byte): train line, eval dots")
        ax.set_title(", ".join(f"{t}={v}" for t, v in zip(tags, cell, strict=True)) or experiment["ablation"])
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.suptitle(f"{experiment['ablation']} ({experiment['scale']}, mean over seeds {experiment['seeds']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: str | Path) -> dict[str, Path]:
    """Write report.md, table.csv, table.json and curves.png into OUT; returns their paths."""
    out = Path(out)
    experiment, results = load_runs(out)
    rows = build_rows(experiment, results)
    records = table_records(experiment, rows)
    paths = {"report": out / "report.md", "csv": out / "table.csv", "json": out / "table.json",
             "curves": out / "curves.png"}
    paths["report"].write_text(markdown(experiment, rows, results))
    paths["json"].write_text(json.dumps({"experiment": experiment, "rows": records}, indent=2, default=str) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        fields = list(dict.fromkeys(k for rec in records for k in rec))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, dict) else v for k, v in rec.items()} for rec in records)
    plot_curves(experiment, rows, paths["curves"])
    return paths
