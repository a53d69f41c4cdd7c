"""Run under torchrun by tests/test_distributed.py, which also calls :func:`train` in one process: a few float64 SGD
steps of lenet5_modern (flip, crop and mixup) and resnet20 (flip, crop, SyncBatchNorm) on a digits subset through
the library's distributed pieces (``TensorLoader.shard``, ``distributed.init/convert_sync_bn/wrap``); rank 0 (or
the single process) saves the final weights to ``OUT/<model>.pt``.

In float64 the only differences between 2 ranks and 1 process are summation orders, so the test can ask for
agreement to ~1e-9 of the weights' size; float32 runs of a BN net diverge by ~1e-2 within a few steps from rounding
alone (one process against itself in float64 shows the same), which would hide a real mistake.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from milestones.data import get_dataset
from milestones.data.batch_augment import BatchAugment
from milestones.data.loader import TensorLoader, subset
from milestones.models import create_model
from milestones.train import distributed

STEPS = 3
RUNS = {  # model, augmentation, sync_bn
    "lenet5_modern": (dict(flip=True, crop_padding=2, mixup_alpha=0.4), False),
    "resnet20": (dict(flip=True, crop_padding=2), True),
}


def train(name: str, out: Path, single: bool) -> None:
    world, device = (distributed.SINGLE, torch.device("cpu")) if single else distributed.init("cpu", 60)
    options, sync_bn = RUNS[name]
    split = subset(get_dataset("digits", "train"), 96, seed=0)
    augment = BatchAugment.for_spec(split.spec, dtype=torch.float64, **options)
    loader = TensorLoader(split, batch_size=32, train=True, augment=augment, seed=0).shard(world.rank, world.size)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1).double()
    if sync_bn and world.size > 1:
        distributed.convert_sync_bn(model, device)
    net = distributed.wrap(model, device, aux_weight=0.0) if world.size > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step, (x, y) in enumerate(loader):
        if step == STEPS:
            break
        logits = net(x)
        loss = F.cross_entropy(logits, y.to(logits.dtype) if y.is_floating_point() else y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if world.is_main:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / f"{name}.pt")


if __name__ == "__main__":
    for model_name in RUNS:
        train(model_name, Path(sys.argv[1]), single=False)
    distributed.close()
