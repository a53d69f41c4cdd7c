"""Wall time to a target test accuracy with a shipped recipe, data loading and start-up included, median of N runs.

Each run is a fresh process (`milestones train ... --train.target_accuracy=T`), so imports, reading the dataset from
disk, every epoch and every evaluation count. The time reported is the run's elapsed wall time at the end of the first
epoch whose test accuracy reaches the target (measured inside the process from its start), and the process's total.

    python benchmarks/time_to_accuracy.py lenet5_modern --data mnist --target 0.99 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The script's options; anything else on its command line is passed on as overrides, e.g. --optim.lr=0.003."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--runs", type=int, default=3)
    return ap


def main() -> None:
    args, extra = build_parser().parse_known_args()
    reached, totals = [], []
    with tempfile.TemporaryDirectory() as out:
        for i in range(args.runs):
            start = time.perf_counter()
            cmd = [sys.executable, "-m", "milestones.cli", "train", args.model, "--data", args.data, "--out", out,
                   "--name", f"run{i}", "--no-progress", f"--train.seed={i}",
                   f"--train.target_accuracy={args.target}", *extra]
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL)
            totals.append(time.perf_counter() - start)
            summary = json.loads((Path(out) / f"run{i}" / "summary.json").read_text())
            reached.append(summary["time_to_target"])
            print(f"run {i + 1}: reached {args.target:.2%} after {summary['time_to_target']} s "
                  f"(epoch {summary['epochs']}, test {summary['final_test_acc']:.4f}); process {totals[-1]:.1f} s",
                  flush=True)
    ok = [t for t in reached if t is not None]
    machine = platform.processor() or platform.machine()
    print(f"\n{args.model} on {args.data}, target {args.target:.2%}, machine {machine} ({os.cpu_count()} cores)")
    median = statistics.median(ok) if ok else float("nan")
    print(f"reached in {len(ok)}/{args.runs} runs; median time to target {median:.1f} s; "
          f"median process wall {statistics.median(totals):.1f} s")


if __name__ == "__main__":
    main()
