"""One process with T threads against N data-parallel processes (torchrun, gloo) with T/N threads each.

Both arms train the same recipe with the same global batch (``data.batch_size`` is the global batch in a distributed
run, so they take the same steps on the same batches), each run a fresh process tree, median of ``--runs``:

- ``1 x T``: ``milestones train ... --train.threads=T`` (``OMP_NUM_THREADS=T``);
- ``N x T/N``: ``milestones train ... --nproc N --train.threads=T/N`` (torchrun, ``OMP_NUM_THREADS=T/N``).

Reported per arm: training images per second (the run's own ``summary.json``: images over the epochs' training
seconds, evaluation excluded), the wall time at the end of the first epoch whose test accuracy reaches ``--target``
(start-up, data loading and evaluation included, measured inside rank 0 from its start), and the whole process
tree's wall time (imports, torchrun's start-up and rendezvous included).

    python benchmarks/ddp_scaling.py lenet5_modern --data mnist --target 0.98 --runs 3
    python benchmarks/ddp_scaling.py resnet20 --data cifar10 --target 0.6 --runs 1 --data.train_subset=10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from milestones.bench import machine_description  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The script's options; anything else on its command line is passed on as overrides, e.g. --epochs 3."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--target", type=float, default=0.98, help="test accuracy to time (default 0.98)")
    ap.add_argument("--threads", type=int, default=2, help="threads in all, T (default 2)")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel arm, N (default 2)")
    ap.add_argument("--runs", type=int, default=3)
    return ap


def run_arm(args: argparse.Namespace, extra: list[str], out: str, name: str, nproc: int) -> dict:
    threads = args.threads // nproc
    cmd = [sys.executable, "-m", "milestones", "train", args.model, "--data", args.data, "--out", out,
           "--name", name, "--no-progress", f"--train.threads={threads}",
           f"--train.target_accuracy={args.target}", *extra]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    s = json.loads((Path(out) / name / "summary.json").read_text())
    return {"img_per_s": s["img_per_s"], "to_target": s["time_to_target"], "wall": wall,
            "acc": s["final_test_acc"], "epochs": s["epochs"]}


def median(values: list[float | None]) -> str:
    ok = [v for v in values if v is not None]
    return f"{statistics.median(ok):.1f}" if ok else "not reached"


def main() -> None:
    args, extra = build_parser().parse_known_args()
    if args.threads % args.nproc:
        raise SystemExit(f"--threads {args.threads} does not split over --nproc {args.nproc}")
    arms = {f"1 x {args.threads}": 1, f"{args.nproc} x {args.threads // args.nproc}": args.nproc}
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    print(f"at the start: {machine_description(threads=args.threads)}", flush=True)
    with tempfile.TemporaryDirectory() as out:
        for i in range(args.runs):
            for arm, nproc in arms.items():  # alternate the arms, so that a change in load hits both
                r = run_arm(args, [*extra, f"--train.seed={i}"], out, f"run{i}-{nproc}", nproc)
                results[arm].append(r)
                print(f"run {i + 1}, {arm}: {r['img_per_s']:.0f} img/s, {args.target:.2%} after {r['to_target']} s "
                      f"(epoch {r['epochs']}, test {r['acc']:.4f}), process tree {r['wall']:.1f} s", flush=True)
    print(f"\n{args.model} on {args.data}, target {args.target:.2%}, {args.runs} run(s), at the end: "
          f"{machine_description(threads=args.threads)}")
    print("| processes x threads | img/s (training) | time to target (s) | process tree wall (s) |")
    print("|---|---|---|---|")
    for arm, rs in results.items():
        print(f"| {arm} | {statistics.median(r['img_per_s'] for r in rs):.0f} | "
              f"{median([r['to_target'] for r in rs])} | {median([r['wall'] for r in rs])} |")


if __name__ == "__main__":
    main()
