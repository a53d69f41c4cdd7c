"""``milestones bench``: the CLI end to end on a tiny model (no timing assertions), the torchvision pairing table,
and the measurement pieces (peak memory, the FLOP arithmetic, the compiler fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from parity import REL

from milestones.bench import (
    BenchResult,
    PeakMemory,
    Settings,
    _setup,
    bench_model,
    compare_settings,
    measure_peak_gflops,
    table_rows,
    torchvision_pairs,
)
from milestones.cli import main
from milestones.measure import count_params
from milestones.models import create_model, get_converter

torchvision = pytest.importorskip("torchvision")


def _logit_scale(name: str, size: int, kwargs: dict) -> float:
    """max |logit| of the seeded model and batch of 2 that bench_model and compare_settings build: the scale their
    ``max_abs_diff`` is judged against (tests/parity.py)."""
    model, _, _, _, _, x, _ = _setup(name, 2, size, kwargs, 0)
    with torch.no_grad():
        return float(model.eval()(x).abs().max())


FAST = ["--reps", "1", "--warmup", "1", "--batch", "2", "--threads", "1", "--probe", "64", "--no-progress"]


def test_cli_bench_train(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_json = tmp_path / "bench.jsonl"
    assert main(["bench", "lenet5_modern", *FAST, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "matmul peak" in out and "machine:" in out
    header, rule, row = out.split("\n")[2:5]
    assert header.split()[:4] == ["model", "mode", "batch", "input"] and set(rule) <= {"-", " "}
    assert row.split()[:4] == ["lenet5_modern", "train", "2", "1x32x32"]
    record = json.loads(out_json.read_text().splitlines()[0])
    assert record["model"] == "lenet5_modern" and record["mode"] == "train" and record["img_per_s"] > 0
    assert record["gflops"] > 0 and record["torchvision"] is None and record["optimizer"] == "sgd-foreach"


def test_cli_bench_infer_with_onnxruntime(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    assert main(["bench", "lenet5*", "--mode", "infer", *FAST]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.split("\n\n")[0].splitlines() if line.startswith("lenet5")]
    assert [r[0] for r in rows] == ["lenet5", "lenet5_modern"]  # the glob expands in registry order
    assert all(r[-2] != "-" for r in rows), "infer mode times onnxruntime beside PyTorch"
    assert "onnxruntime outputs match" in out


def test_cli_bench_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "lenet6", *FAST]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["bench", "nothing*", *FAST]) == 2
    assert main(["bench", "lenet5_modern", *FAST, "--optimizer", "rmsprop"]) == 2
    assert "optimizer" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "lenet5_modern", *FAST, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


REQUIRED_PAIRS = {"alexnet_owt": "alexnet", "googlenet_tv": "googlenet", "inception_v3": "inception_v3",
                  **{f"resnet{d}": f"resnet{d}" for d in (18, 34, 50, 101, 152)},
                  **{f"vgg{d}{bn}": f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")},
                  **{f"vit_{s}{p}": f"vit_{s}_{p}" for s, p in (("b", 16), ("b", 32), ("l", 16), ("l", 32), ("h", 14))},
                  **{f"swin_{s}": f"swin_{s}" for s in "tsb"},
                  **{f"densenet{d}": f"densenet{d}" for d in (121, 169, 201, 161)}}


def test_pairing_table_covers_the_twins() -> None:
    pairs = torchvision_pairs()
    assert {k: v.builder for k, v in pairs.items()} == REQUIRED_PAIRS
    assert pairs["resnet50"].ours_kwargs == {"version": "v1.5"}  # the paper's v1 is not torchvision's
    assert pairs["googlenet_tv"].tv_kwargs["aux_logits"] is False  # its aux heads would run in train mode
    assert pairs["inception_v3"].tv_kwargs["aux_logits"] is False


@pytest.mark.parametrize("name", sorted(REQUIRED_PAIRS))
def test_pairs_are_the_same_architecture(name: str) -> None:
    """Identical parameter counts, and torchvision's state dict maps onto ours key for key and shape for shape."""
    pair = torchvision_pairs()[name]
    with torch.device("meta"):
        ours = create_model(name, **pair.ours_kwargs)
        theirs = pair.build_torchvision(num_classes=1000)
    assert count_params(ours) == count_params(theirs)
    converted = get_converter(pair.builder).fn(theirs.state_dict())
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == shapes


def test_bench_model_pairs_identical_outputs() -> None:
    r = bench_model("resnet18", "infer", batch=2, size=32, threads=1, reps=2, warmup=1, probe=64,
                    onnxruntime=False)
    assert r.torchvision == "resnet18" and r.model_kwargs == {"version": "v1.5"}
    assert r.tv_ms_per_batch and r.tv_ms_per_batch > 0 and r.ratio and r.ratio > 0
    assert r.tv_max_abs_diff is not None  # same weights, same architecture: equal up to float32 rounding
    assert r.tv_max_abs_diff <= REL * _logit_scale("resnet18", 32, r.model_kwargs)
    assert r.peak_gflops and r.peak_gflops > 0 and r.pct_of_peak and r.pct_of_peak > 0
    # At 32 px every feature map is 7x smaller per side than at 224 (224/32 = 7 exactly), so the conv MACs shrink by
    # 49; the FC layer's 512x1000 do not.
    fc = 512 * 1000 / 1e9
    assert r.input_size == (3, 32, 32) and r.gmacs == pytest.approx((1.8137 - fc) / 49 + fc, rel=1e-3)


def test_torchvision_twin_at_another_architecture_is_skipped() -> None:
    """At 32 px our VGG's FC6 reads 512x1x1 values, torchvision's (adaptive pool) 512x7x7: not the same net."""
    r = bench_model("vgg11", "infer", batch=1, size=32, threads=1, reps=1, warmup=1, probe=None,
                    onnxruntime=False, model_kwargs={"hidden": 64})
    assert r.torchvision is None and r.ratio is None
    assert any("another architecture" in n for n in r.notes)


def test_compile_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: Broken())
    r = bench_model("lenet5_modern", "train", batch=2, threads=1, reps=1, warmup=1, probe=None, compile=True)
    assert not r.compiled and r.ms_per_batch > 0
    assert any("torch.compile is unavailable" in n and "ran eager" in n for n in r.notes)


def test_compare_settings_same_logits_across_paths() -> None:
    res = compare_settings("vit_ti16", "infer", {"sdpa": Settings(), "explicit": Settings(attention="explicit"),
                                                 "no_grad": Settings(inference_mode=False)},
                           batch=2, size=32, threads=1, reps=2, warmup=1)
    assert [r.label for r in res] == ["sdpa", "explicit", "no_grad"] and res[0].speedup == 1.0
    assert all(r.ms_per_batch > 0 for r in res)
    # another kernel, the same function (the zero head was filled)
    assert 0 < res[1].max_abs_diff <= REL * _logit_scale("vit_ti16", 32, {})
    assert res[2].max_abs_diff == 0.0


def test_peak_memory_sees_a_large_allocation() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc")
    with PeakMemory(torch.device("cpu")) as mem:
        t = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del t
    assert mem.bytes is not None and 60 * 2**20 <= mem.bytes <= 200 * 2**20


def test_peak_gflops_probe() -> None:
    assert 0 < measure_peak_gflops(1, n=128, reps=2) < 1e5


def test_flop_arithmetic_and_table() -> None:
    r = BenchResult(model="m", mode="train", batch=4, input_size=(3, 8, 8), threads=1, device="cpu",
                    channels_last=False, compiled=False, amp=None, optimizer="sgd-foreach", reps=1, steps_per_rep=1,
                    clock="wall", model_kwargs={}, gmacs=0.5, ms_per_batch=100.0, peak_mib=None)
    assert r.img_per_s == pytest.approx(40.0)
    assert r.gflops == pytest.approx(2 * 0.5 * 4 * 3 / 0.1)  # 2 FLOPs per MAC, x3 for forward + backward
    r.mode = "infer"
    assert r.gflops == pytest.approx(2 * 0.5 * 4 / 0.1)
    assert r.pct_of_peak is None
    row = table_rows([r])[0]
    assert row[:5] == ["m", "infer", "4", "3x8x8", "40"] and row[-1] == "-"


def test_bench_precisions_group_the_models_by_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench``'s precision per model is what ``train.precision`` resolves for its family, with one line saying
    which; ``--amp bf16`` (the older spelling) asks for bf16 everywhere."""
    from milestones import precision
    from milestones.bench import bench_precisions

    names = ["lenet5", "resnet20", "vgg11"]
    fp32 = bench_precisions(names, "cpu", "fp32")
    assert [fp32[n] for n in names] == [None, None, None] and ";" not in fp32[""]
    assert bench_precisions(names, "cpu", "auto", amp="bf16") == {"": "bf16 (asked for with --amp)",
                                                                  **dict.fromkeys(names, "bf16")}
    bf16_families = {"resnet", "vgg"}
    monkeypatch.setattr(precision, "resolve_precision", lambda value, device, family: precision.Choice(
        "bf16" if family in bf16_families else "fp32", "measured" if family in bf16_families else "not measured"))
    mixed = bench_precisions(names, "cpu", "auto")
    assert mixed == {"lenet5": None, "resnet20": "bf16", "vgg11": "bf16",
                     "": "lenet5: fp32 (not measured); resnet20, vgg11: bf16 (measured)"}
