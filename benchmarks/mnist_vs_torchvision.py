"""One MNIST epoch of the same LeNet and recipe, the torchvision way and the milestones way, side by side.

torchvision way: ``torchvision.datasets.MNIST`` + ``transforms.Pad(2), ToTensor(), Normalize`` + ``DataLoader``
(batch 128, shuffle, 2 workers). milestones way: ``get_dataset`` (uint8 tensors in memory) + ``TensorLoader``
(pad, normalise and batch with tensor ops; channels-last, as the shipped recipe sets it). Same model
(``lenet5_modern``), optimiser (Adam 1e-3) and batch size. Each "epoch" is timed end to end: dataset construction,
every batch, forward, backward, step. The two ways alternate (torchvision, milestones, torchvision, ...) and the
medians are compared, because this machine's speed drifts.

    python benchmarks/mnist_vs_torchvision.py --data-root ../shared/data --reps 3
"""

from __future__ import annotations

import argparse
import gzip
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def torchvision_layout(root: Path, tmp: Path) -> Path:
    """torchvision's MNIST reads <root>/MNIST/raw/<name> uncompressed; build that from the .gz files once."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (root / "mnist").glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def train_epoch(loader, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """The same plain loop for both ways."""
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def epoch_torchvision(tv_root: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, workers: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    start = time.perf_counter()
    tf = transforms.Compose([transforms.Pad(2), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(str(tv_root), train=True, transform=tf, download=False)
    loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=False)
    train_epoch(loader, model, opt)
    return time.perf_counter() - start


def epoch_milestones(root: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> float:
    from milestones.data import TensorLoader, get_dataset

    start = time.perf_counter()
    train = get_dataset("mnist", "train", root=root)
    # channels_last as the shipped recipe sets it (data.channels_last: true); the model is converted by the caller
    loader = TensorLoader(train, batch_size=128, train=True, pad=2, seed=seed, channels_last=True)
    train_epoch(loader, model, opt)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from milestones.models import create_model

    tv_times, ms_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tv_root = torchvision_layout(args.data_root, Path(tmp))
        for rep in range(args.reps):
            for way in ("torchvision", "milestones"):
                torch.manual_seed(rep)
                model = create_model("lenet5_modern")
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                if way == "torchvision":
                    tv_times.append(epoch_torchvision(tv_root, model, opt, args.workers))
                else:
                    model = model.to(memory_format=torch.channels_last)
                    ms_times.append(epoch_milestones(args.data_root, model, opt, rep))
                print(f"rep {rep + 1} {way:12s} {(tv_times if way == 'torchvision' else ms_times)[-1]:6.2f} s",
                      flush=True)
    tv, ms = statistics.median(tv_times), statistics.median(ms_times)
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"| way | epoch seconds (median of {args.reps}) | all |")
    print("|---|---|---|")
    print(f"| torchvision DataLoader ({args.workers} workers) | {tv:.2f} | {', '.join(f'{t:.2f}' for t in tv_times)} |")
    print(f"| milestones TensorLoader | {ms:.2f} | {', '.join(f'{t:.2f}' for t in ms_times)} |")
    print(f"\nmilestones is {tv / ms:.2f}x faster per epoch end to end")


if __name__ == "__main__":
    main()
