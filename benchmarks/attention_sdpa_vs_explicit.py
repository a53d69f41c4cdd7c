"""SDPA vs explicit softmax(QK^T)V attention: time and peak memory of a training step (forward + backward).

Every model routes attention through ``milestones.models._layers.attend``: by default
``F.scaled_dot_product_attention`` (fused kernels that never materialise the N x N matrix), and inside
``explicit_attention()`` the textbook softmax(q k^T * scale) v. This script times one forward + backward pass of each
model in both modes and reports the peak memory, one fresh subprocess per (model, mode) so that peaks do not leak
between configurations:

* CUDA: median of CUDA-synchronised wall times; peak = ``torch.cuda.max_memory_allocated`` during the steps minus the
  memory held before them (weights, gradients from the warm-up step, the input batch).
* CPU: median wall time; peak = the process's peak resident set size (``ru_maxrss``) over the steps minus its resident
  size before them (weights and gradients allocated). It includes allocator slack: compare it only within one run.

Usage::

    python benchmarks/attention_sdpa_vs_explicit.py                  # ViT-B/16 and CSWin-T, 224, batch 8
    python benchmarks/attention_sdpa_vs_explicit.py --quick --threads 1   # a CPU smoke run: batch 2, 2 reps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def _machine(device: str, threads: int | None) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    used = threads or torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {used} torch thread(s){load}, torch {torch.__version__}"


def _current_rss() -> int:
    """Resident set size of this process now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _worker(spec: dict) -> dict:
    """Build one model, run warm-up + timed training steps in one attention mode, return time and memory."""
    import torch
    from torch.nn import functional as F

    from milestones.models import create_model, explicit_attention

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = create_model(spec["model"], img_size=spec["size"]).to(device).train()
    x = torch.randn(spec["batch"], 3, spec["size"], spec["size"], device=device)
    y = torch.randint(0, 1000, (spec["batch"],), device=device)

    def step() -> None:
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for p in model.parameters():  # gradient buffers belong to the baseline, not to the peak
        p.grad = torch.zeros_like(p)
    times = []
    with explicit_attention(spec["mode"] == "explicit"):
        if device.type == "cpu":
            base = _current_rss()  # the high-water mark below includes the warm-up step, which peaks the same
        step()  # warm-up: picks kernels, fills caches
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        for _ in range(spec["reps"]):
            sync()
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # Linux reports KiB
    return {"ms": 1000 * statistics.median(times), "peak_mib": peak / 2**20, "reps": len(times)}


def _run(spec: dict) -> dict:
    """Run :func:`_worker` in a fresh interpreter so each configuration's peak memory is its own."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b16", "cswin_t"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=None, help="default 8 (2 with --quick)")
    parser.add_argument("--reps", type=int, default=None, help="timed steps, median reported; default 10 (2 quick)")
    parser.add_argument("--device", default=None, help="cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="batch 2 and 2 reps, for a CPU")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (2 if args.quick else 8)
    reps = args.reps or (2 if args.quick else 10)
    machine = _machine(device, args.threads)
    rows = []
    for model in args.models:
        results = {}
        for mode in ("sdpa", "explicit"):
            spec = {"model": model, "mode": mode, "device": device, "batch": batch, "size": args.size, "reps": reps}
            results[mode] = _run({**spec, "threads": args.threads})
        rows.append((model, results))

    print(
        f"Attention: SDPA vs explicit, forward + backward, {args.size}x{args.size}, batch {batch}, "
        f"median of {reps} step(s) after 1 warm-up, one subprocess per row."
    )
    print(f"Machine: {machine}.")
    print()
    print("| model | attention | step time (ms) | peak memory (MiB) | explicit / SDPA time | explicit / SDPA memory |")
    print("|---|---|---|---|---|---|")
    for model, results in rows:
        sdpa, explicit = results["sdpa"], results["explicit"]
        for mode, r in results.items():
            if "error" in r:
                print(f"| {model} | {mode} | error: {r['error']} | | | |")
                continue
            ratios = "| | |"
            if mode == "explicit" and "error" not in sdpa:
                ratios = (
                    f"| {explicit['ms'] / sdpa['ms']:.2f}x | "
                    f"{explicit['peak_mib'] / max(sdpa['peak_mib'], 1e-9):.2f}x |"
                )
            print(f"| {model} | {mode} | {r['ms']:.0f} | {r['peak_mib']:.0f} {ratios}")


if __name__ == "__main__":
    main()
