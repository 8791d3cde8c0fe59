"""CLI: `python -m research.interop import HF_DIR --out RUN_DIR [--set k=v ...]`,
`python -m research.interop export --workdir RUN [--step N] --out HF_DIR [--arch llama|gpt2]` and
`python -m research.interop merge --workdir LORA_RUN [--step N] --out RUN_DIR`,
`python -m research.interop peft-import ADAPTER_DIR --base RUN --out RUN_DIR [--set k=v ...]` and
`python -m research.interop peft-export --workdir LORA_RUN [--step N] --out ADAPTER_DIR` (PEFT LoRA adapters)."""

from __future__ import annotations

import argparse
import sys

from research.cli import add_debug_flag, entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.interop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="a local HF checkpoint -> a scalelab run directory (step-0 checkpoint)")
    imp.add_argument("hf_dir", help="directory with config.json, safetensors weights and tokenizer.json")
    imp.add_argument("--out", required=True, help="the new run directory")
    imp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override the run config (data.*, optim.*, train.*, seed, model.dropout ...)")
    exp = sub.add_parser("export", help="a scalelab run -> an HF checkpoint directory transformers loads as-is")
    exp.add_argument("--workdir", required=True, help="the run directory")
    exp.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    exp.add_argument("--out", required=True, help="the HF checkpoint directory to write")
    exp.add_argument("--arch", choices=["llama", "gpt2"], default=None,
                     help="default: gpt2 for learned positions, llama otherwise")
    merge = sub.add_parser("merge", help="a LoRA fine-tune -> a plain run directory with the updates in the weights")
    merge.add_argument("--workdir", required=True, help="the LoRA run directory")
    merge.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    merge.add_argument("--out", required=True, help="the new run directory")
    pin = sub.add_parser("peft-import", help="a PEFT LoRA adapter -> a LoRA run directory on its base run")
    pin.add_argument("adapter_dir", help="directory with adapter_config.json and adapter_model.safetensors")
    pin.add_argument("--base", required=True, help="the base model's run directory (e.g. what `import` wrote)")
    pin.add_argument("--out", required=True, help="the new run directory")
    pin.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the run config")
    pout = sub.add_parser("peft-export", help="a LoRA run's adapters -> a PEFT adapter directory")
    pout.add_argument("--workdir", required=True, help="the LoRA run directory")
    pout.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    pout.add_argument("--out", required=True, help="the adapter directory to write")
    args = add_debug_flag(parser).parse_args(argv)
    if args.command == "import":
        from research.interop.rundir import import_run  # JAX and the [hf] extra: after --help

        config, notes = import_run(args.hf_dir, args.out, args.set)
        m = config.model
        print(f"imported {args.hf_dir} -> {args.out} (run {config.run_id()}): d_model={m.d_model} "
              f"n_layers={m.n_layers} n_heads={m.n_heads} kv={m.resolved().n_kv_heads} vocab={m.vocab_size}")
        for note in notes:
            print(f"  tokenizer: {note}")
        print(f"fine-tune: python -m research.train --config {args.out} --workdir {args.out}")
    elif args.command == "peft-import":
        from research.interop.peft import import_peft  # JAX: after --help

        config = import_peft(args.adapter_dir, args.base, args.out, args.set)
        print(f"imported {args.adapter_dir} -> {args.out}: LoRA rank {config.adapt.lora_rank} on "
              f"{config.adapt.lora_targets} over {args.base}")
    elif args.command == "peft-export":
        from research.interop.peft import export_peft  # JAX: after --help

        out = export_peft(args.workdir, args.out, args.step)
        print(f"exported {args.workdir}'s adapters -> {out}: load with peft.PeftModel.from_pretrained(base, "
              f"{str(out)!r})")
    elif args.command == "merge":
        from research.interop.rundir import merge_run  # JAX: after --help

        config = merge_run(args.workdir, args.out, args.step)
        print(f"merged {args.workdir} -> {args.out} (a plain model, {config.model.n_layers} layers): generate, score, "
              f"export or fine-tune it like any run")
    else:
        from research.interop.convert import export_hf  # JAX and the [hf] extra: after --help

        out = export_hf(args.workdir, None, args.out, arch=args.arch, step=args.step)
        print(f"exported {args.workdir} -> {out}: load with "
              f"transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
