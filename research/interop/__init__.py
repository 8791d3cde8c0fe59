"""Hugging Face interop (optional extra `[hf]`): LLaMA-family and GPT-2 checkpoints <-> research.model, exactly.

`import_hf(path) -> (ModelConfig, params)`, `export_hf(config_or_workdir, params, out_dir)`, and
`import_run(path, workdir)`, which writes a run directory the training loop resumes from. CLI: `python -m
research.interop import|export ...`.
"""

__all__ = ["export_hf", "import_hf", "import_run"]


def __getattr__(name: str):
    # the converters load JAX and the [hf] extra: `import research.interop` stays light until one is used
    if name in ("import_hf", "export_hf"):
        from research.interop import convert

        return getattr(convert, name)
    if name == "import_run":
        from research.interop.rundir import import_run

        return import_run
    raise AttributeError(name)
