"""python -m research.bench [--config PRESET_OR_FILE] [--set k=v ...]: training throughput and MFU.

Trains a few warm steps of the real jitted train step on random tokens and prints tokens/s, achieved FLOP/s and MFU.
FLOPs per token follow the MFU convention 6 N_non-embedding + 12 L (heads x head_dim) T (research.model.flops).
On CPU the peak is measured in this same process: the faster of a large f32 matmul through JAX and through NumPy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from research.cli import add_debug_flag, entry_point
from research.config import DataConfig, RunConfig, TrainConfig
from research.config_files import load_config
from research.model.flops import count_params, mfu_flops_per_token
from research.parallel import activate, batch_sharding
from research.parallel.pipeline import model_for, pipeline_for
from research.presets import model as preset_model
from research.train.host_memory import HUGE_PAGES_TUNABLE, huge_pages_requested, keep_freed_host_memory
from research.train.mfu import ACCELERATOR_PEAKS, measure_cpu_peak, peak_flops
from research.train.plan import simulate_devices
from research.train.setup import setup
from research.train.step import call_inputs, steps_per_call

BENCH_RUN = dict(batch_size=8, seq_len=512)  # the core-run issue's target shape

# --layouts: every standard layout of a small 8-layer model on 8 (simulated) devices
LAYOUTS = {
    "single": ["parallel.data=1"],
    "dp8": ["parallel.data=8"],
    "fsdp8": ["parallel.data=1", "parallel.fsdp=8"],
    "tp2_fsdp4": ["parallel.data=1", "parallel.fsdp=4", "parallel.tensor=2"],
    "dp2_fsdp2_tp2": ["parallel.data=2", "parallel.fsdp=2", "parallel.tensor=2"],
    "pp2_dp4_gpipe": ["parallel.data=4", "parallel.pipeline=2", "parallel.microbatches=4"],
    "pp2_dp4_circular": ["parallel.data=4", "parallel.pipeline=2", "parallel.microbatches=4",
                         "parallel.pipeline_schedule=circular", "parallel.pipeline_repeats=2"],
    "pp4_tp2_gpipe": ["parallel.data=1", "parallel.pipeline=4", "parallel.tensor=2", "parallel.microbatches=8"],
    "pp4_tp2_circular": ["parallel.data=1", "parallel.pipeline=4", "parallel.tensor=2", "parallel.microbatches=8",
                         "parallel.pipeline_schedule=circular", "parallel.pipeline_repeats=2"],
}
LAYOUT_MODEL = ["model.d_model=128", "model.n_layers=8", "model.n_heads=4", "model.d_ff=512", "model.vocab_size=264",
                "model.max_seq_len=128", "data.seq_len=128", "train.batch_size=16"]


def default_config() -> RunConfig:
    return RunConfig(model=preset_model("bench-25m"), data=DataConfig(seq_len=BENCH_RUN["seq_len"]),
                     train=TrainConfig(steps=100, batch_size=BENCH_RUN["batch_size"]))


def benchmark(config: RunConfig, steps: int = 5, warmup: int = 2, devices: list | None = None,
              against: str | None = None) -> dict:
    """Time `steps` training steps after `warmup` untimed ones; returns the measurements as a dict.

    Steps run as `run()` runs them: train.steps_per_call at a time in one compiled call. With against="torch", a
    plain eager PyTorch GPT of the same shape (research.bench_torch) trains on the same thread count, timed in
    rounds interleaved with scalelab's, so both see the same machine; the ratio is the median of per-round ratios.
    """
    keep_freed_host_memory()
    devices = jax.devices() if devices is None else devices
    reference = None
    if against == "torch":
        from research.bench_torch import TorchTrainer  # PyTorch: an optional extra, loaded only for --against

        reference = TorchTrainer(config, threads=os.cpu_count() or 1)  # XLA:CPU uses every core too
    run_setup = setup(config, devices)
    mesh = run_setup.mesh
    state = run_setup.init_state()
    per_call = steps_per_call(config)
    t0 = time.perf_counter()
    step = run_setup.train_step(pad_id=-1, steps=per_call)
    seed = np.int32(config.seed)
    compile_s = time.perf_counter() - t0

    peaks_before = measure_cpu_peak() if devices[0].platform == "cpu" else None
    rng = np.random.default_rng(0)
    shape = (config.batch_size, config.data.seq_len + 1)
    inputs = []  # two calls' worth of random-token batches, alternated
    for _ in range(2):
        tokens = [rng.integers(0, min(config.model.vocab_size, 256), shape, dtype=np.int32) for _ in range(per_call)]
        host, *rest = call_inputs([{"inputs": t[:, :-1], "targets": t[:, 1:]} for t in tokens],
                                  np.full(per_call, config.optim.lr), per_call)
        inputs.append((jax.device_put(host, batch_sharding(mesh, stacked=per_call > 1)), *rest))
    calls = max(1, -(-steps // per_call))
    rounds = 3 if reference is not None else 1
    times, torch_times, ratios = [], [], []
    with activate(mesh):
        for i in range(max(1, -(-warmup // per_call))):
            state, metrics = step(state, *inputs[i % 2], seed)
        jax.block_until_ready(metrics)
        if reference is not None:
            for _ in range(warmup):
                reference.step()
        for _ in range(rounds):
            mine = []
            for i in range(calls):
                start = time.perf_counter()
                state, metrics = step(state, *inputs[i % 2], seed)
                jax.block_until_ready(metrics)
                mine.append((time.perf_counter() - start) / per_call)
            times += mine
            if reference is not None:
                theirs = [reference.step() for _ in range(calls * per_call)]
                torch_times += theirs
                ratios.append(float(np.median(theirs) / np.median(mine)))

    step_s = float(np.median(times))
    tokens_per_s = config.tokens_per_step / step_s
    flops_per_token = mfu_flops_per_token(config.model, config.data.seq_len)
    achieved = tokens_per_s * flops_per_token
    result = {"device": devices[0].device_kind, "devices": len(devices), "mesh": dict(mesh.shape),
              "params": count_params(config.model).total,
              "params_non_embedding": count_params(config.model).non_embedding,
              "batch": config.batch_size, "seq_len": config.data.seq_len, "compute_dtype": config.model.compute_dtype,
              "compile_s": compile_s, "steps_per_call": per_call, "timed_calls": len(times),
              "step_s_median": step_s, "step_s_min": min(times),
              "tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token, "achieved_flops": achieved}
    if reference is not None:
        import torch

        result.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                      torch_step_s_median=float(np.median(torch_times)),
                      torch_tokens_per_s=config.tokens_per_step / float(np.median(torch_times)),
                      ratio_vs_torch=float(np.median(ratios)), ratios_vs_torch=ratios)
    if devices[0].platform == "cpu":  # the best of two measurements, before and after the steps: a conservative peak
        result["huge_pages"] = huge_pages_requested()
        after = measure_cpu_peak()
        peaks = {k: max(peaks_before[k], after[k]) for k in after}
        result.update(peak_jax_matmul=peaks["jax"], peak_numpy_matmul=peaks["numpy"], peak_flops=peaks["peak"])
    else:
        result["peak_flops"] = peak_flops(devices, config.model.compute_dtype)
        kind = devices[0].device_kind.lower()
        result["peak_table"] = {k: v for k, v in ACCELERATOR_PEAKS.items() if k.lower() in kind}
    result["mfu"] = achieved / result["peak_flops"]
    if config.parallel.pipeline > 1:
        tokens = inputs[0][0]["inputs"] if per_call == 1 else inputs[0][0]["inputs"][0]
        result.update(bubble_measured=measure_bubble(config, mesh, state.params, tokens),
                      bubble_theory=pipeline_for(config).bubble)
    return result


def measure_bubble(config: RunConfig, mesh, params, inputs) -> float:
    """Idle share of stage-ticks in one forward pass of the pipelined model: which stage held a real microbatch at
    which tick is recorded by the pipeline itself (`pipeline_busy`, [ticks, stages]), not derived from the formula."""
    rows = config.batch_size // config.train.accum_steps  # what one accumulation step feeds the model
    with activate(mesh):
        forward = jax.jit(lambda p, x: model_for(config).apply({"params": p}, x, mutable=["intermediates"])[1])
        busy = np.asarray(forward(params, inputs[:rows])["intermediates"]["pipeline_busy"][0])
    return float(1.0 - busy.mean())


def benchmark_layouts(steps: int, warmup: int, overrides: list[str]) -> list[tuple[str, dict]]:
    """`benchmark` of the small layout model under every entry of LAYOUTS on the first 8 devices."""
    config = default_config().override(*LAYOUT_MODEL, *overrides)
    return [(name, benchmark(config.override(*sets), steps=steps, warmup=warmup,
                             devices=jax.devices()[:1 if name == "single" else 8])) for name, sets in LAYOUTS.items()]


def print_layouts(results: list[tuple[str, dict]]) -> None:
    print("step time per layout: 8 simulated CPU devices sharing this machine's cores, so these times measure "
          "communication and scheduling overheads, not speed on real devices")
    print(f"{'layout':<18s}{'mesh (data, pipeline, fsdp, tensor)':<38s}{'compile s':>10s}{'step ms':>10s}"
          f"{'bubble measured':>17s}{'theory':>9s}")
    for name, r in results:
        mesh = ", ".join(str(r["mesh"][a]) for a in ("data", "pipeline", "fsdp", "tensor"))
        bubble = (f"{r['bubble_measured']:>17.3f}{r['bubble_theory']:>9.3f}" if "bubble_measured" in r
                  else f"{'-':>17s}{'-':>9s}")
        print(f"{name:<18s}{mesh:<38s}{r['compile_s']:>10.1f}{r['step_s_median'] * 1e3:>10.1f}{bubble}")


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.bench", description=__doc__)
    parser.add_argument("--config", default=None, help="preset or config file (default: the 25M benchmark shape)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--against", choices=["torch"], default=None,
                        help="also time a plain eager PyTorch GPT of the same shape, interleaved, and print the ratio")
    parser.add_argument("--layouts", action="store_true",
                        help="time a small 8-layer model under every standard layout on 8 simulated devices")
    args = add_debug_flag(parser).parse_args(argv)
    if args.layouts:
        if jax.device_count() < 8:
            return simulate_devices("research.bench", sys.argv[1:] if argv is None else argv, 8)
        print_layouts(benchmark_layouts(args.steps, args.warmup, args.overrides))
        return 0
    if args.config is None:
        config = default_config().override(*args.overrides)
    else:
        config = load_config(args.config, args.overrides)
    r = benchmark(config, steps=args.steps, warmup=args.warmup, against=args.against)
    print(f"device          {r['device']} x{r['devices']}  mesh {r['mesh']}")
    print(f"model           {r['params'] / 1e6:.2f}M params ({r['params_non_embedding'] / 1e6:.2f}M non-embedding), "
          f"batch {r['batch']} x seq {r['seq_len']}, {r['compute_dtype']}")
    print(f"compile         {r['compile_s']:.1f} s")
    if "huge_pages" in r:
        print("host memory     " + ("huge pages (GLIBC_TUNABLES)" if r["huge_pages"] else
                                 f"4 KB pages: CPU steps run ~10% faster with GLIBC_TUNABLES={HUGE_PAGES_TUNABLE} "
                                 "(make sets it)"))
    print(f"step            {r['step_s_median'] * 1e3:.1f} ms "
          f"(median over {r['timed_calls']} calls of {r['steps_per_call']} steps; min {r['step_s_min'] * 1e3:.1f})")
    print(f"tokens/s        {r['tokens_per_s']:,.0f}")
    if "ratio_vs_torch" in r:
        rounds = ", ".join(f"{x:.2f}" for x in r["ratios_vs_torch"])
        print(f"PyTorch eager   {r['torch_tokens_per_s']:,.0f} tokens/s ({r['torch_step_s_median'] * 1e3:.1f} ms/step, "
              f"torch {r['torch_version']}, {r['torch_threads']} threads)")
        print(f"ratio           {r['ratio_vs_torch']:.2f}x PyTorch (median over interleaved rounds: {rounds})")
    print(f"FLOPs/token     {r['flops_per_token'] / 1e6:.1f}M  (6 N_non-embedding + 12 L H d_head T)")
    print(f"achieved        {r['achieved_flops'] / 1e9:,.1f} GFLOP/s")
    if "peak_numpy_matmul" in r:
        print(f"peak (measured) {r['peak_flops'] / 1e9:,.1f} GFLOP/s  = max(JAX matmul "
              f"{r['peak_jax_matmul'] / 1e9:,.1f}, NumPy matmul {r['peak_numpy_matmul'] / 1e9:,.1f})")
    else:
        print(f"peak (table)    {r['peak_flops'] / 1e12:,.1f} TFLOP/s")
    print(f"MFU             {r['mfu']:.1%}")
    if "bubble_measured" in r:
        print(f"pipeline bubble {r['bubble_measured']:.3f} measured, {r['bubble_theory']:.3f} = (S-1)/(R M+S-1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
