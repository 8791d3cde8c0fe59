"""`python -m analysis fit|isoflop|frontier|backtest|report OUT`: scaling-law fits of a sweep, from the shell.

Every subcommand prints its table and writes its artefact under OUT/analysis/ (or --out): fit.json, isoflop.json,
frontier.json, backtest.json; `report` writes all of them, the figures (PNG and SVG) and report.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax
import matplotlib
import pandas as pd

from analysis.backtest import backtest
from analysis.chinchilla import fit_chinchilla
from analysis.envelope import fit_envelope
from analysis.fit import FitError
from analysis.isoflop import fit_isoflop
from analysis.load import Convention, load, load_curves
from analysis.report import Report, build_report, write_json, write_report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    helps = {"fit": "Approach 3: parametric fit with bootstrap CIs and the compute-optimal allocation",
             "isoflop": "Approach 2: IsoFLOP parabolas and the exponents of N*(C), D*(C)",
             "frontier": "compute-optimal frontier: Approach 1 (training-curve envelope) and Approach 3's N/D/L_opt(C)",
             "backtest": "fit on the smaller runs, predict the largest, report relative errors",
             "report": "everything above, with figures, in OUT/analysis/report.md"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("source", help="sweep output dir, run dir, results.jsonl or CSV")
        s.add_argument("--out", help="where artefacts go (default: SOURCE/analysis, or next to a file source)")
        s.add_argument("--params", choices=("total", "non_embedding"), default="total", help="which N (default total)")
        s.add_argument("--flops", choices=("6ND", "exact"), default="6ND", help="which C (default 6ND)")
        s.add_argument("--loss", choices=("eval", "train"), default="eval", help="which final loss (default eval)")
        s.add_argument("--seed", type=int, default=0, help="seed of every resampling (default 0)")
        s.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        s.add_argument("--bootstrap", type=int, default=1000, help="Approach 3 bootstrap resamples (default 1000)")
        s.add_argument("--subsamples", type=int, default=100,
                       help="80%% subsamples for Approach 1/2 intervals (default 100, as Hoffmann et al.)")
        if name in ("isoflop", "report"):
            s.add_argument("--rtol", type=float, default=0.1, help="relative C tolerance of a budget (default 0.1)")
            s.add_argument("--robust", action="store_true", help="Huber-robust IsoFLOP parabolas")
        if name in ("backtest", "report"):
            s.add_argument("--holdout", type=float, default=0.2,
                           help="fraction (<1) or count (>=1) of the largest-C runs to hold out (default 0.2)")
    return p


def _out_dir(args) -> Path:
    if args.out:
        return Path(args.out)
    src = Path(args.source)
    return (src if src.is_dir() else src.parent) / "analysis"


def _holdout(value: float):
    return int(value) if value >= 1 else value


def _show(title: str, df: pd.DataFrame) -> None:
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.5g}".format):
        print(f"\n{title}\n{df.to_string()}")


def main(argv=None) -> int:
    matplotlib.use("Agg")  # never a window (figures are drawn without pyplot anyway)
    args = _parser().parse_args(argv)
    conv = Convention(params=args.params, flops=args.flops, loss=args.loss)
    out = _out_dir(args)
    try:
        if args.command == "report":
            rep = build_report(args.source, convention=conv, n_bootstrap=args.bootstrap, seed=args.seed,
                               holdout=_holdout(args.holdout), isoflop_rtol=args.rtol, robust_isoflop=args.robust,
                               n_subsamples=args.subsamples)
            paths = write_report(rep, out)
            for name, why in rep.skipped.items():
                print(f"{name} not fitted: {why}", file=sys.stderr)
            print(f"report: {paths['report']}")
            print(f"artefacts and figures (PNG, SVG): {out}")
            return 0
        runs = load(args.source, conv)
        rep = Report(str(args.source), runs, conv, {"seed": args.seed, "n_bootstrap": args.bootstrap,
                                                    "n_subsamples": args.subsamples})
        if args.command in ("fit", "frontier"):
            rep.fit = fit_chinchilla(runs, convention=conv, n_bootstrap=args.bootstrap, seed=args.seed,
                                     bootstrap_C=rep.budgets())
        if args.command == "fit":
            _show("Approach 3 (Hoffmann et al.): estimates, bootstrap SE and CI", rep.fit.table())
            for w in rep.fit.diagnostics.warnings:
                print(f"warning: {w}", file=sys.stderr)
            _show("Compute-optimal allocation", rep.fit.frontier(rep.budgets()))
            path = write_json(out, "fit", rep.artefacts()["fit"])
        elif args.command == "isoflop":
            rep.isoflop = fit_isoflop(runs, rtol=args.rtol, robust=args.robust, n_bootstrap=args.subsamples,
                                      seed=args.seed, convention=conv)
            _show("Approach 2 (IsoFLOP) budgets", rep.isoflop.budgets.drop(columns=["c0", "c1", "c2"]))
            print(f"\na = {rep.isoflop.a:.4f} {rep.isoflop.a_ci}   b = {rep.isoflop.b:.4f} {rep.isoflop.b_ci}")
            for w in rep.isoflop.warnings:
                print(f"warning: {w}", file=sys.stderr)
            path = write_json(out, "isoflop", rep.artefacts()["isoflop"])
        elif args.command == "frontier":
            try:
                rep.envelope = fit_envelope(load_curves(args.source, conv), n_bootstrap=args.subsamples,
                                            seed=args.seed, convention=conv)
                print(f"\nApproach 1 (envelope): a = {rep.envelope.a:.4f} {rep.envelope.a_ci}   "
                      f"b = {rep.envelope.b:.4f} {rep.envelope.b_ci}")
            except (FitError, FileNotFoundError) as err:
                print(f"Approach 1 not run: {err}", file=sys.stderr)
            _show("Approach 3 compute-optimal frontier", rep.fit.frontier(rep.budgets()))
            path = write_json(out, "frontier", rep.artefacts()["frontier"])
        else:
            rep.backtest = backtest(runs, _holdout(args.holdout), n_bootstrap=args.bootstrap, seed=args.seed,
                                    convention=conv)
            _show(f"Backtest: fit on {rep.backtest.n_train} runs, predict {rep.backtest.holdout}", rep.backtest.table)
            print(f"\nmean |rel error| {rep.backtest.mean_abs_rel_error:.3%}, max {rep.backtest.max_abs_rel_error:.3%}")
            path = write_json(out, "backtest", rep.artefacts()["backtest"])
        print(f"\nwrote {path}")
        return 0
    except (FitError, OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"error: {error_message(err)}", file=sys.stderr)
        return 2


def error_message(err: Exception) -> str:
    """`<what>. Fix: <how>` (the style of research.cli, which analysis may not import)."""
    if isinstance(err, OSError):
        where = err.filename if err.filename is not None else "the source"
        return f"{where}: {err.strerror or err}. Fix: point at a sweep's --out directory or a results CSV/JSONL."
    text = str(err).rstrip(".")
    if "Fix:" in text:
        return text
    if isinstance(err, FitError):
        return f"{text}. Fix: add runs the law can be fitted on (more sizes, budgets or seeds), or see --help."
    return f"{text}. Fix: check the arguments (--help)."



def enable_compilation_cache() -> Path:
    """JAX's persistent compilation cache where research.train keeps it ($SCALELAB_CACHE, else ~/.cache/scalelab):
    a repeated command skips compiling the fit. The same two settings as research/train/compile_cache.py, which
    analysis may not import; set here, at the shell edge, never by the library."""
    path = Path(os.environ.get("SCALELAB_CACHE") or Path.home() / ".cache" / "scalelab").expanduser() / "jax-compile"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


if __name__ == "__main__":
    enable_compilation_cache()
    sys.exit(main())
