"""DenseNet's ``memory_efficient`` option: peak memory and time of a training step, with and without checkpointing.

``memory_efficient=True`` recomputes each dense layer's concatenation, first BN-ReLU and first conv in the backward
pass instead of storing them (Pleiss et al. 2017, arXiv:1707.06990). This script runs one forward + backward pass of
each model both ways, side by side, one fresh subprocess per (model, mode) so that peaks do not leak between rows:

* saved: bytes of the distinct storages autograd keeps for the backward pass during the forward pass (through
  ``torch.autograd.graph.saved_tensors_hooks``). Exact and the same on every machine: what checkpointing removes.
* peak: the memory a step adds over weights, gradients and the input batch. CUDA: ``torch.cuda.max_memory_allocated``
  growth; CPU: growth of the process's resident-set high-water mark (``milestones.bench.PeakMemory``), which includes
  allocator slack, so compare it only within one run.
* step time: median wall time of the timed steps (after one warm-up step), the price of the recomputation.

Usage::

    python benchmarks/densenet_memory.py                    # densenet_bc100 (32 px, batch 64), densenet121 (224, 16)
    python benchmarks/densenet_memory.py --quick --threads 1   # a CPU smoke run: batch 8 / 2, 1 rep
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

DEFAULT_BATCH = {"densenet_bc100": 64, "densenet40": 64, "densenet121": 16}  # BC-100: the paper's batch size
QUICK_BATCH = {"densenet_bc100": 8, "densenet40": 8, "densenet121": 2}


def _worker(spec: dict) -> dict:
    """Build one model, measure saved bytes, then a warm-up step and timed steps; return memory and time."""
    import torch
    from torch.nn import functional as F

    from milestones.bench import PeakMemory
    from milestones.models import create_model, get_spec

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = create_model(spec["model"], memory_efficient=spec["efficient"]).to(device).train()
    size = get_spec(spec["model"]).input_size
    x = torch.randn(spec["batch"], *size, device=device)
    y = torch.randint(0, model.head.out_features, (spec["batch"],), device=device)
    for p in model.parameters():  # gradient buffers belong to the baseline, not to the peak
        p.grad = torch.zeros_like(p)

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    saved = sum(storages.values())

    def step() -> None:
        F.cross_entropy(model(x), y).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up: picks kernels, fills caches
    times = []
    with PeakMemory(device) as peak:
        for _ in range(spec["reps"]):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return {"saved_mib": saved / 2**20, "peak_mib": None if peak.bytes is None else peak.bytes / 2**20,
            "ms": 1000 * statistics.median(times)}


def _run(spec: dict) -> dict:
    """Run :func:`_worker` in a fresh interpreter so each configuration's peak memory is its own."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["densenet_bc100", "densenet121"])
    parser.add_argument("--batch", type=int, default=None, help="one batch for all models (default: per model)")
    parser.add_argument("--reps", type=int, default=None, help="timed steps, median reported; default 3 (1 quick)")
    parser.add_argument("--device", default=None, help="cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="small batches and 1 rep, for a CPU smoke run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    import torch

    from milestones.bench import machine_description

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    reps = args.reps or (1 if args.quick else 3)
    table = QUICK_BATCH if args.quick else DEFAULT_BATCH
    rows = []
    for model in args.models:
        batch = args.batch or table.get(model, 8)
        spec = {"model": model, "device": device, "batch": batch, "reps": reps, "threads": args.threads}
        rows.append((model, batch, {eff: _run({**spec, "efficient": eff}) for eff in (False, True)}))

    print(f"DenseNet memory_efficient: one training step (forward + backward) at each model's paper input size, "
          f"median of {reps} step(s) after 1 warm-up, one subprocess per row.")
    print(f"Machine: {machine_description(device, args.threads)}.")
    print()
    print("| model | batch | memory_efficient | saved for backward (MiB) | peak (MiB) | step (ms) "
          "| saved ratio | peak ratio | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, batch, results in rows:
        plain = results[False]
        for eff, r in results.items():
            if "error" in r:
                print(f"| {model} | {batch} | {eff} | error: {r['error']} | | | | | |")
                continue
            ratios = "| | |"
            if eff and "error" not in plain:
                peak = "-" if not (r["peak_mib"] and plain["peak_mib"]) else f"{r['peak_mib'] / plain['peak_mib']:.2f}x"
                ratios = f"{r['saved_mib'] / plain['saved_mib']:.2f}x | {peak} | {r['ms'] / plain['ms']:.2f}x |"
            print(f"| {model} | {batch} | {eff} | {r['saved_mib']:.1f} | {_fmt(r['peak_mib'])} | {r['ms']:.0f} "
                  f"| {ratios}")


if __name__ == "__main__":
    main()
