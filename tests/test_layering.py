"""The import graph follows ../shared/DESIGN.md's one-way order: a forbidden edge, even a function-local import,
fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("research", "sweeps", "experiments", "analysis")

# layer of a module -> the layers it may import (DESIGN's table; config, files, the CLI error style and the named
# configs are open to all)
RESEARCH = {f"research.{x}" for x in ("config", "files", "cli", "presets", "model", "data", "parallel", "train",
                                       "infer", "interop", "entry")} | {"research"}
OPEN = {"research.config", "research.presets", "research.files", "research.cli"}
ALLOWED = {
    "research.config": set(),
    "research.files": set(),
    "research.cli": {"research.config"},
    "research.presets": {"research.config"},
    "research.model": OPEN,
    "research.data": OPEN,
    "research.parallel": OPEN | {"research.model"},
    "research.train": OPEN | {"research.model", "research.data", "research.parallel"},
    "research.infer": OPEN | {"research.model", "research.parallel", "research.data", "research.train.setup"},
    # the checkpoint module is the on-disk format: an imported model is written as a run's step-0 checkpoint
    "research.interop": OPEN | {"research.model", "research.data", "research.train.setup", "research.train.checkpoint"},
    "research.entry": RESEARCH,
    "sweeps": RESEARCH,
    "experiments": RESEARCH | {"sweeps"},
    "analysis": set(),
}


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "research":
        return parts[0]
    if len(parts) == 1:
        return "research"
    if parts[1] == "config_files":  # loads named and file configs: part of the config layer
        return "research.presets"
    if parts[1] in ("config", "files", "cli", "presets", "model", "data", "parallel", "train", "infer", "interop"):
        return f"research.{parts[1]}"
    return "research.entry"  # the CLIs and benchmarks at research/'s top level


def allowed(importer: str, imported: str) -> bool:
    src, dst = layer(importer), layer(imported)
    if src == dst:
        return True
    rules = ALLOWED[src]
    return dst in rules or any(imported == r or imported.startswith(r + ".") for r in rules)


def edges() -> set[tuple[str, str]]:
    """Every (module, imported module of ours), top-level and function-local imports alike."""
    out = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    subs = [f"{node.module}.{a.name}" for a in node.names]  # `from pkg import module`
                    names = [n for n in subs if _is_module(n)] or [node.module]
                else:
                    continue
                out |= {(module, n) for n in names if n.split(".")[0] in PACKAGES and _is_module(n)}
    return out


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_import_follows_the_design_order():
    forbidden = sorted(e for e in edges() if not allowed(*e))
    assert not forbidden, f"imports DESIGN.md forbids: {forbidden}"


def test_the_check_sees_forbidden_edges():
    assert not allowed("research.model.transformer", "research.parallel.pipeline")
    assert not allowed("analysis.fit", "research.config")
    assert not allowed("research.train.step", "sweeps.spec")
    assert not allowed("sweeps.spec", "experiments.ablations")
    assert allowed("experiments.run", "sweeps.runner") and allowed("research.train.loop", "research.parallel.mesh")
