"""Train one recipe under several sets of overrides at once on one device, and tabulate the test accuracy.

Each grid entry is a run: ``milestones train`` with the recipe plus that entry's overrides (``--optim.lr=0.4``,
``--epochs 20``, ``--seed 1``...). The runs start together as separate processes (a GPU holds many small runs
at once; on a CPU use ``--parallel 1``), and the table lists each run's test accuracy after every epoch. Runs that
finished earlier are not redone unless ``--overwrite`` is given: the sweep resumes.

    python benchmarks/recipe_sweep.py benchmarks/grids/resnet20_10ep.json --data-root ../shared/data --device cuda
    python benchmarks/recipe_sweep.py benchmarks/grids/resnet20_epochs.json --data-root ../shared/data --device cuda

The grids name the recipe (``recipe``) and the runs (``runs``: name -> list of ``milestones train`` arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from milestones.train.rundir import RunDir


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", type=Path, help="JSON file: {recipe, runs: {name: [train args]}}")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("runs/sweeps"))
    ap.add_argument("--parallel", type=int, default=0, help="runs at once (default: all)")
    ap.add_argument("--overwrite", action="store_true", help="redo finished runs")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    return ap


def main() -> None:
    args = build_parser().parse_args()

    grid = json.loads(args.grid.read_text())
    recipe, runs = grid["recipe"], grid["runs"]
    folder = args.out / args.grid.stem
    env = dict(os.environ)
    if args.parallel != 1:  # many runs share the cores: one thread each unless told otherwise
        env.setdefault("OMP_NUM_THREADS", "1")
    # Decode the data once before the runs start, so they do not all decode it at the same time.
    subprocess.run([sys.executable, "-m", "milestones.cli", "train", "--config", recipe, "--data-root", args.data_root,
                    "--out", str(folder), "--name", "_warm", "--overwrite", "--no-progress", "--epochs", "1",
                    "--data.train_subset=10", "--data.test_subset=10", "--data.batch_size=10", "--device", "cpu"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(folder / "_warm")
    t0 = time.time()
    todo = [n for n in runs if args.overwrite or not (folder / n / "summary.json").is_file()]
    width = args.parallel or len(todo) or 1
    active: dict[str, subprocess.Popen] = {}
    failed: dict[str, str] = {}
    while todo or active:
        while todo and len(active) < width:
            name = todo.pop(0)
            cmd = [sys.executable, "-m", "milestones.cli", "train", "--config", recipe, "--data-root", args.data_root,
                   "--out", str(folder), "--name", name, "--overwrite", "--no-progress", "--device", args.device,
                   *runs[name]]
            folder.mkdir(parents=True, exist_ok=True)
            active[name] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                            stderr=open(folder / f"{name}.err", "w"))
        time.sleep(2)
        for name, proc in list(active.items()):
            if proc.poll() is not None:
                del active[name]
                if proc.returncode:
                    failed[name] = (folder / f"{name}.err").read_text().strip().splitlines()[-1:] or ["?"]
    table = {}
    for name in runs:
        eps = [r for r in RunDir(folder / name).records("epoch") if "test_acc" in r]
        table[name] = {"args": runs[name], "test_acc": [round(100 * e["test_acc"], 2) for e in eps],
                       "ema_test_acc": [round(100 * e["ema_test_acc"], 2) for e in eps if "ema_test_acc" in e]}
    if args.json:
        args.json.write_text(json.dumps({"recipe": recipe, "device": args.device, "runs": table}, indent=1))
    print(f"{recipe}: {len(runs)} runs in {folder} ({time.time() - t0:.0f} s)\n")
    print("| run | overrides | epochs | final test acc % | EMA's % |\n|---|---|---:|---:|---:|")
    for name, row in table.items():
        acc, ema = row["test_acc"], row["ema_test_acc"]
        final = f"{acc[-1]:.2f}" if acc else failed.get(name, ["not run"])[0]
        print(f"| {name} | {' '.join(row['args']) or '(recipe)'} | {len(acc)} | {final} | "
              f"{f'{ema[-1]:.2f}' if ema else '-'} |")


if __name__ == "__main__":
    main()
