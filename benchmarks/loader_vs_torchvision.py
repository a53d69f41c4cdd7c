"""One training epoch of the same model and augmentation, the torchvision way and the milestones way, side by side.

Tasks:

* ``mnist``: ``lenet5_modern``, Adam 1e-3. torchvision: ``datasets.MNIST`` + ``Pad(2), ToTensor(), Normalize``.
* ``cifar10``: ``resnet20``, SGD with Nesterov momentum 0.9 and weight decay 5e-4 as in its recipe, at lr 0.1 (the
  recipe peaks at 0.2; the rate does not change the time). torchvision: ``datasets.CIFAR10``
  + ``RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize``. The images are the shared JPEG
  (q75) copy, decoded once by milestones and written out in the official pickle format for torchvision to read
  (its md5 check is skipped: the rebuilt batches are not the published files). milestones reflect-pads where
  torchvision zero-pads by default; the cost is the same.

Both ways: ``DataLoader`` (batch 128, shuffle, ``--workers`` workers, last partial batch dropped) against
``get_dataset`` (uint8 tensors in memory, the decode cache) + ``TensorLoader`` (crop, flip, normalise and batch with
tensor ops). Each epoch is timed end to end: dataset construction, every batch, forward, backward, step. The ways
alternate and the medians are compared, because this machine's speed drifts. Two modes:

* default, the data path alone: the same model in the same memory format (channels-last, as the shipped recipes
  set it; the torchvision batches are converted inside the timed loop) and the same ``torch.optim`` optimizer.
* ``--as-shipped``: each way as its user runs it. torchvision: the model in PyTorch's default (NCHW) layout and
  ``torch.optim`` with its CPU defaults. milestones: the recipe's settings, channels-last and
  ``milestones.train.optim.build_optimizer`` (fused kernel; no weight decay on norms and biases), same learning
  rate, momentum and weight decay.

    python benchmarks/loader_vs_torchvision.py --task cifar10 --data-root ../shared/data --reps 3
    python benchmarks/loader_vs_torchvision.py --task cifar10 --data-root ../shared/data --reps 3 --as-shipped
    python benchmarks/loader_vs_torchvision.py --task mnist --data-root ../shared/data --reps 3
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

BATCH = 128


def mnist_layout(root: Path, tmp: Path) -> Path:
    """torchvision's MNIST reads <root>/MNIST/raw/<name> uncompressed; build that from the .gz files once."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (root / "mnist").glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def cifar10_layout(root: Path, tmp: Path) -> Path:
    """The official ``cifar-10-batches-py`` folder (5 train batches of 10,000, a test batch, the meta file) with the
    pixels milestones decodes from the JPEG copy."""
    from milestones.data import get_dataset

    folder = tmp / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        s = get_dataset("cifar10", split, root=root)
        images = s.images.numpy().reshape(len(s.labels), -1)  # (N, 3072): R plane, G plane, B plane, as published
        labels = s.labels.tolist()
        per = len(labels) // len(names)
        for i, name in enumerate(names):
            batch = {"batch_label": name, "labels": labels[i * per:(i + 1) * per],
                     "data": np.ascontiguousarray(images[i * per:(i + 1) * per]), "filenames": []}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        classes = list(s.spec.classes)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}, protocol=2))
    return tmp


def train_epoch(loader: Iterable, model: torch.nn.Module, opt: torch.optim.Optimizer, convert: bool) -> None:
    """The same plain loop for both ways; ``convert`` makes the batch channels-last (the torchvision way)."""
    model.train()
    for x, y in loader:
        if convert:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def torchvision_dataset(task: str, tv_root: Path):
    from torchvision import datasets, transforms

    from milestones.data import get_data_spec

    spec = get_data_spec(task)
    norm = transforms.Normalize(spec.mean, spec.std)
    if task == "mnist":
        tf = transforms.Compose([transforms.Pad(2), transforms.ToTensor(), norm])
        return datasets.MNIST(str(tv_root), train=True, transform=tf, download=False)
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), norm])

    class RebuiltCIFAR10(datasets.CIFAR10):
        # the rebuilt files are not the published ones: skip the md5 checks, nothing else changes
        meta = {**datasets.CIFAR10.meta, "md5": None}

        def _check_integrity(self) -> bool:
            return True

    return RebuiltCIFAR10(str(tv_root), train=True, transform=tf, download=False)


def epoch_torchvision(task: str, tv_root: Path, model, opt, workers: int, limit: int | None, *,
                      convert: bool = True) -> float:
    from torch.utils.data import DataLoader, Subset

    start = time.perf_counter()
    ds = torchvision_dataset(task, tv_root)
    if limit:
        ds = Subset(ds, range(limit))
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=False)
    train_epoch(loader, model, opt, convert=convert)
    return time.perf_counter() - start


def epoch_milestones(task: str, root: Path, model, opt, seed: int, limit: int | None) -> float:
    from milestones.data import BatchAugment, TensorLoader, get_dataset, subset

    start = time.perf_counter()
    train = get_dataset(task, "train", root=root)
    if limit:
        train = subset(train, limit, stratified=False)
    if task == "mnist":
        kw = {"pad": 2}
    else:
        kw = {"augment": BatchAugment.for_spec(train.spec, crop_padding=4, flip=True)}
    loader = TensorLoader(train, batch_size=BATCH, train=True, seed=seed, channels_last=True, **kw)
    train_epoch(loader, model, opt, convert=False)
    return time.perf_counter() - start


# task -> (model, the optimizer's config, the torchvision data layout builder)
TASKS: dict[str, tuple[str, dict, Callable[[Path, Path], Path]]] = {
    "mnist": ("lenet5_modern", {"name": "adam", "lr": 1e-3}, mnist_layout),
    "cifar10": ("resnet20", {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                cifar10_layout),
}


def plain_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """``torch.optim`` as a user writes it: every parameter in one group, the implementation PyTorch picks."""
    if cfg["name"] == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"])
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                           weight_decay=cfg["weight_decay"])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="cifar10")
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="train on the first N images only (a smoke test, not a measurement)")
    ap.add_argument("--as-shipped", action="store_true",
                    help="each way as its user runs it (torchvision: NCHW, torch.optim defaults; milestones: the "
                    "recipe's channels-last and fused optimizer), instead of the data path alone")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)

    from milestones.config import OptimConfig
    from milestones.models import create_model
    from milestones.train.optim import build_optimizer

    model_name, opt_cfg, layout = TASKS[args.task]
    times: dict[str, list[float]] = {"torchvision": [], "milestones": []}
    with tempfile.TemporaryDirectory() as tmp:
        tv_root = layout(args.data_root, Path(tmp))
        for rep in range(args.reps):
            for way in times:
                torch.manual_seed(rep)
                model = create_model(model_name, num_classes=10)
                if way == "milestones" or not args.as_shipped:
                    model = model.to(memory_format=torch.channels_last)
                if way == "milestones" and args.as_shipped:
                    opt = build_optimizer(model, OptimConfig(**opt_cfg))
                else:
                    opt = plain_optimizer(model.parameters(), opt_cfg)
                if way == "torchvision":
                    t = epoch_torchvision(args.task, tv_root, model, opt, args.workers, args.limit,
                                          convert=not args.as_shipped)
                else:
                    t = epoch_milestones(args.task, args.data_root, model, opt, rep, args.limit)
                times[way].append(t)
                print(f"rep {rep + 1} {way:12s} {t:7.2f} s", flush=True)
    tv, ms = statistics.median(times["torchvision"]), statistics.median(times["milestones"])
    from milestones.machine import cpu_name

    print()
    limited = f", first {args.limit} images" if args.limit else ""
    mode = "each way as shipped" if args.as_shipped else "data path alone (same model format and optimizer)"
    print(f"task {args.task} ({model_name}, batch {BATCH}{limited}), {mode}; machine: {cpu_name()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"| way | epoch seconds (median of {args.reps}) | all |")
    print("|---|---|---|")
    print(f"| torchvision DataLoader ({args.workers} workers) | {tv:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in times['torchvision'])} |")
    print(f"| milestones TensorLoader | {ms:.2f} | {', '.join(f'{t:.2f}' for t in times['milestones'])} |")
    print(f"\nmilestones is {tv / ms:.2f}x faster per epoch end to end")


if __name__ == "__main__":
    main()
