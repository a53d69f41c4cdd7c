"""AlexNet's two towers on two gloo processes (issue 15): the same logits and gradients as the single-process two-tower
model, bytes counted on the collectives equal to bytes computed from the paper's shapes, a broken exchange caught, and
the ``two-gpu-split`` experiment's four strategies checked in smoke mode."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.distributed as dist
from parity import assert_logits_close, assert_logits_differ
from torch.nn import functional as F

from milestones import parallel
from milestones.errors import ConfigError
from milestones.experiments import two_gpu_split
from milestones.models import create_model
from milestones.parallel import CommCounter, merge_towers, split_towers, tower_exchange_bytes

SMALL = {"img_size": 67, "widths": (16, 32, 48, 48, 32), "hidden": 64, "num_classes": 10, "dropout": 0.0,
         "init": "kaiming"}


def _keep_own_slice(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
    own = grad.chunk(dist.get_world_size(ctx.group), ctx.dim)[dist.get_rank(ctx.group)]
    return own.contiguous(), None, None


def _towers_job(rank: int, world: int) -> dict[str, Any]:
    """Runs on each rank: the reference two-tower model, its tower, a tower whose exchanges send no gradient back,
    and the one-line errors that need a process group."""
    torch.manual_seed(0)
    full = create_model("alexnet", **SMALL)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, 67, 67, generator=g), torch.randint(0, 10, (4,), generator=g)
    ref = full(x)
    F.cross_entropy(ref, y).backward()
    tower = split_towers(full)
    counter = CommCounter(world)
    with counter:
        logits = tower(x)
        F.cross_entropy(logits, y).backward()
    grads = merge_towers(tower, {n: p.grad for n, p in tower.named_parameters()})

    broken = split_towers(full)  # every exchange's backward keeps only the rank's own slice: no reduce-scatter
    original = parallel._GatherForSplit.backward
    parallel._GatherForSplit.backward = staticmethod(_keep_own_slice)  # type: ignore[method-assign]
    try:
        F.cross_entropy(broken(x), y).backward()
    finally:
        parallel._GatherForSplit.backward = original  # type: ignore[method-assign]
    broken_grads = merge_towers(broken, {n: p.grad for n, p in broken.named_parameters()})

    errors = []
    one = dist.new_group([0])
    if rank == 0:
        for bad in (lambda: split_towers(full, group=one),
                    lambda: split_towers(create_model("alexnet_owt", hidden=64, num_classes=10)),
                    lambda: split_towers(create_model("alexnet", **{**SMALL, "num_classes": 7}))):
            try:
                bad()
            except ConfigError as e:
                errors.append(str(e))
    smoke = two_gpu_split.measure(rank, world, two_gpu_split.MODES["smoke"], two_gpu_split.STRATEGIES)
    return {"smoke": smoke, "ref": ref.detach(), "logits": logits.detach(),
            "ref_grads": {n: p.grad for n, p in full.named_parameters()},
            "grads": grads, "broken_grads": broken_grads, "sent": counter.sent, "calls": counter.calls,
            "computed": tower_exchange_bytes(full, 4), "errors": errors}


@pytest.fixture(scope="module")
def towers() -> list[dict[str, Any]]:
    return parallel.spawn(_towers_job, world=2)


def test_tower_split_gives_the_single_process_logits_and_gradients(towers: list[dict[str, Any]]) -> None:
    for rank in towers:
        assert_logits_close(rank["logits"], rank["ref"])
        assert rank["grads"].keys() == rank["ref_grads"].keys()
        for name, grad in rank["ref_grads"].items():
            assert grad.abs().max() > 0, name
            assert_logits_close(rank["grads"][name], grad)


def test_tower_split_without_the_gradient_exchange_is_caught(towers: list[dict[str, Any]]) -> None:
    # conv1 and conv2 get their gradient through conv3's exchange only: without the reduce-scatter they miss the
    # other tower's half of it
    rank = towers[0]
    assert_logits_differ(rank["broken_grads"]["stages.0.conv.weight"], rank["ref_grads"]["stages.0.conv.weight"])
    assert_logits_close(rank["broken_grads"]["head.weight"], rank["ref_grads"]["head.weight"])


def test_exchanged_bytes_counted_equal_bytes_from_shapes(towers: list[dict[str, Any]]) -> None:
    for rank in towers:
        assert rank["calls"] == {"all_gather": 5, "reduce_scatter": 4}  # conv3, FC6, FC7, FC8 (+ logits forward)
        assert rank["sent"] == sum(rank["computed"].values())


def test_paper_alexnet_exchange_bytes_from_figure_2() -> None:
    # Figure 2 at batch 128: each GPU holds 128 maps of 13x13 after pool2 and of 6x6 after pool5, 2048 neurons of FC6
    # and FC7 and 500 of FC8; each is sent once forward and, but the logits, once backward, in float32
    b = 128
    by_hand = 4 * b * (2 * (128 * 13 * 13 + 128 * 6 * 6 + 2048 + 2048) + 500)
    with torch.device("meta"):
        model = create_model("alexnet")
    assert sum(tower_exchange_bytes(model, b).values()) == by_hand == 31_320_064


def test_tower_split_errors_are_one_line(towers: list[dict[str, Any]]) -> None:
    errors = towers[0]["errors"]
    assert len(errors) == 3
    assert "2 towers, one per rank, but the process group has 1 ranks; launch 2 processes" in errors[0]
    assert "one tower" in errors[1] and "divide into 2 towers" in errors[2]
    assert all("\n" not in e for e in errors)
    with pytest.raises(ConfigError, match="needs torch.distributed initialised"):
        split_towers(create_model("alexnet", **SMALL))


def test_two_gpu_split_strategies_agree_in_smoke_mode(towers: list[dict[str, Any]]) -> None:
    ranks = [r["smoke"] for r in towers]
    model = two_gpu_split.build(two_gpu_split.MODES["smoke"])
    for strategy in two_gpu_split.STRATEGIES:
        for r in ranks:
            got = r[strategy]
            assert got["sent"] == pytest.approx(got["computed"], rel=1e-9), strategy
            assert got["computed"] == pytest.approx(two_gpu_split.computed_bytes(strategy, model, 4)), strategy
        assert ranks[0][strategy]["loss_rel_err"] <= two_gpu_split.EQUIVALENT, strategy
        assert ranks[0][strategy]["grad_rel_err"] <= two_gpu_split.EQUIVALENT, strategy
    params = 4 * sum(p.numel() for p in model.parameters())
    assert ranks[0]["ddp"]["sent"] == params  # ring all-reduce over 2 ranks: each sends half, twice
    assert ranks[0]["fsdp"]["memory"]["params"] == params // 2
    assert ranks[0]["ddp"]["memory"]["params"] == params


def _row(strategy: str, counted: float, computed: float, grad_err: float = 1e-7) -> dict[str, Any]:
    return {"strategy": strategy, "sent bytes/step (counted)": round(counted * 2**20),
            "sent bytes/step (from shapes)": round(computed * 2**20),
            "params+grads+momentum MB/rank": 1.0, "loss rel err": 1e-7, "grad rel err": grad_err}


def test_verdict_on_synthetic_rows() -> None:
    verdict = two_gpu_split._verdict
    fractions = {"conv_params": 0.04, "conv_macs": 0.95, "crossover_batch": 1000.0}
    m = {"batch": 128}
    good = [_row("towers", 30.0, 30.0), _row("ddp", 233.0, 233.0), _row("fsdp", 350.0, 350.0), _row("tp", 9.0, 9.0)]
    assert verdict(good, fractions, m)[0] == "reproduced"
    big_batch = [_row("towers", 300.0, 300.0), *good[1:]]
    assert verdict(big_batch, fractions, m)[0] == "partly reproduced"
    wrong = [_row("towers", 30.0, 30.0, grad_err=0.3), *good[1:]]
    assert verdict(wrong, fractions, m)[0] == "not reproduced"
    miscounted = [_row("towers", 31.0, 30.0), *good[1:]]
    assert verdict(miscounted, fractions, m)[0] == "not reproduced"
