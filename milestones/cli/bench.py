"""``bench``: speed, memory and FLOP/s of our models against torchvision's and the machine's matmul peak."""

from __future__ import annotations

import argparse
import json
import sys

from .options import add_device, add_no_progress, add_precision, table


def cmd_bench(args: argparse.Namespace) -> int:
    import contextlib

    from ..bench import (
        DEFAULT_MODELS,
        TABLE_HEADERS,
        bench_layouts,
        bench_model,
        bench_precisions,
        machine_description,
        measure_peak_gflops,
        table_rows,
    )
    from ..models import select_models

    names = select_models(args.models or DEFAULT_MODELS)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    amps = bench_precisions(names, device, args.precision, args.amp)
    layouts = bench_layouts(names, device, args.channels_last, amps)
    print(f"machine: {machine_description(device, args.threads)}; precision: {amps.pop('')}; channels_last: "
          f"{layouts.pop('')}")
    if args.probe:
        peak = measure_peak_gflops(args.threads, n=args.probe, device=device)
        print(f"matmul peak: {peak:.1f} GFLOP/s ({args.probe}^3 float32, median of 5; '% peak' uses the same probe "
              "run between the reps)")
    results = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.json, "a")) if args.json else None  # one line per model as it finishes
        for name in names:
            amp = amps[name]
            r = bench_model(name, args.mode, batch=args.batch, size=args.size, threads=args.threads,
                            channels_last=layouts[name], compile=args.compile, amp=amp, reps=args.reps,
                            warmup=args.warmup, torchvision=not args.no_torchvision,
                            onnxruntime=not args.no_onnxruntime, optimizer=args.optimizer, device=device,
                            probe=args.probe or None, clock=args.clock,
                            progress=not args.no_progress and sys.stderr.isatty())
            results.append(r)
            if out is not None:
                out.write(json.dumps(r.to_dict(), default=str) + "\n")
                out.flush()
    print(table(TABLE_HEADERS, table_rows(results)))
    notes = [f"{r.model}: {n}" for r in results for n in r.notes]
    notes += [f"{r.model}: outputs match torchvision's (max abs diff {r.tv_max_abs_diff:.2g})"
              for r in results if r.tv_max_abs_diff is not None]
    notes += [f"{r.model}: onnxruntime outputs match (max abs diff {r.ort_max_abs_diff:.2g})"
              for r in results if r.ort_max_abs_diff is not None]
    if notes:
        print("\n" + "\n".join(notes))
    what = (f"forward, cross-entropy, backward, {args.optimizer} step; GFLOP/s = 3 x 2 x MACs" if args.mode == "train"
            else "eval forward under inference_mode; GFLOP/s = 2 x MACs")
    print(f"\n{args.mode}: {what} per second; medians of interleaved reps; ours/tv > 1: ours faster; "
          "ORT/ours > 1: onnxruntime faster")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("bench", help="speed, memory and FLOP/s against torchvision and the machine's matmul peak")
    s.add_argument("models", nargs="*", metavar="MODEL",
                   help="names or glob patterns (default: one model of each family; slow on a CPU)")
    s.add_argument("--mode", choices=["train", "infer"], default="train",
                   help="train: forward, loss, backward and optimizer step; infer: eval forward passes (default: "
                   "train)")
    s.add_argument("--batch", type=int, help="default: 128 for inputs up to 32x32, else 8")
    s.add_argument("--size", type=int, help="input side (default: the model's)")
    s.add_argument("--threads", type=int, help="torch (and onnxruntime) threads (default: torch's)")
    s.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: as data.channels_last=auto picks it for each model's family)")
    s.add_argument("--compile", action="store_true", help="torch.compile (falls back to eager if unavailable)")
    add_precision(s, "auto", help="fp32, or bf16 autocast (default auto: bf16 where this device runs it faster)")
    s.add_argument("--amp", choices=["bf16"], help=argparse.SUPPRESS)  # older spelling of --precision bf16
    s.add_argument("--reps", type=int, default=10, help="timed reps per contender, interleaved (default 10)")
    s.add_argument("--warmup", type=int, default=2, help="untimed steps first (peak memory is measured over them)")
    s.add_argument("--optimizer", default="sgd-foreach",
                   help="train mode: sgd or adamw, with -loop, -foreach or -fused kernels (default sgd-foreach)")
    add_device(s, help="cpu, cuda or auto", default="cpu")
    s.add_argument("--probe", type=int, default=2048, help="matmul peak probe side; 0 skips it")
    s.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: this process's CPU time, steadier on a busy machine with --threads 1")
    s.add_argument("--no-torchvision", action="store_true", help="skip the torchvision comparison")
    s.add_argument("--no-onnxruntime", action="store_true", help="skip onnxruntime (infer mode)")
    s.add_argument("--json", help="append one JSON line per model to this file")
    add_no_progress(s, help="no progress bars")
    s.set_defaults(handler=cmd_bench)


PARSERS = {"bench": add_bench}
