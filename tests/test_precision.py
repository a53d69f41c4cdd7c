"""Precision, memory format and torch.compile choices (milestones.precision): bf16 training agrees with float32 within
what bf16's 8-bit significand allows, ``auto`` picks float32 where bf16 is not native or not faster, the choice is
recorded, and bad values are one-line errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from parity import relative_error
from torch.nn import functional as F

from milestones import precision as P
from milestones.cli import main
from milestones.config import build_config
from milestones.errors import ConfigError
from milestones.models import create_model
from milestones.train import run_training
from milestones.train.loop import logits_and_loss

# bf16 keeps 8 significant bits: a relative rounding error of up to 2^-9 ~ 2e-3 per stored value. Convolutions and
# linear layers accumulate in float32, so each layer's output is off by a few of those, and gradients, which pass
# through every layer twice, by more. Measured for lenet5_modern after 3 SGD steps against a float64 run (AMD EPYC,
# torch 2.14): the update (weights - initial weights) 2.7e-2 of its size in bf16 and 8e-7 in float32; the losses
# 4.5e-5 and 1e-7. The bounds leave ~4x headroom over bf16's and sit far below a wrong update (a sign error or a
# skipped step is an error of 1 or more).
BF16_UPDATE_REL = 0.1
BF16_LOSS_REL = 1e-2
FP32_REL = 1e-4
# bf16 must be measurably different from float32: autocast that silently did nothing would be within FP32_REL.
BF16_MIN_DIFF = 1e-3


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    """Each test resolves afresh, with its own probe cache."""
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    P.reset()
    yield
    P.reset()


def _three_steps(base: torch.nn.Module, precision: str, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(1)
    model = copy.deepcopy(base).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses, outputs = [], []
    for _ in range(3):
        x = torch.randn(16, 1, 32, 32, generator=gen).to(dtype)
        y = torch.randint(0, 10, (16,), generator=gen)
        logits, loss = logits_and_loss(model, x, y, F.cross_entropy, 0.0, precision)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach().double())
        outputs.append((logits.dtype, loss.dtype))
    return model, torch.stack(losses), outputs, opt


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def test_bf16_and_fp32_steps_agree_with_float64() -> None:
    torch.manual_seed(0)
    base = create_model("lenet5_modern", num_classes=10)
    ref, loss64, _, _ = _three_steps(base, "fp32", torch.float64)
    m32, loss32, _, _ = _three_steps(base, "fp32")
    m16, loss16, kinds, opt = _three_steps(base, "bf16")
    w0 = _flat(base)
    update64 = _flat(ref) - w0
    assert relative_error(_flat(m32) - w0, update64) <= FP32_REL
    assert relative_error(loss32, loss64) <= FP32_REL
    assert relative_error(_flat(m16) - w0, update64) <= BF16_UPDATE_REL
    assert relative_error(loss16, loss64) <= BF16_LOSS_REL
    assert relative_error(_flat(m16) - w0, _flat(m32) - w0) >= BF16_MIN_DIFF  # autocast really ran in bf16
    # what stays float32 under autocast: logits handed to the loss, the loss, weights, optimizer state
    assert set(kinds) == {(torch.float32, torch.float32)}
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in opt.state.values())


def test_batchnorm_statistics_stay_float32_under_bf16() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    logits_and_loss(model, torch.randn(4, 3, 32, 32), torch.arange(4), F.cross_entropy, 0.0, "bf16")
    stats = [b for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))]
    assert stats and all(b.dtype == torch.float32 and torch.isfinite(b).all() for b in stats)


def _no_probe(*args, **kwargs):
    raise AssertionError("the probe must not run")


def test_auto_is_fp32_without_native_bf16_flags(monkeypatch) -> None:
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    monkeypatch.setattr(P, "measure_bf16", _no_probe)
    choice = P.resolve_precision("auto", "cpu")
    assert choice.value == "fp32" and "no amx_bf16/avx512_bf16" in choice.reason


@pytest.mark.parametrize(("speedup", "family", "expected"), [
    (0.1, None, "fp32"),          # the flag is there, but bf16 is emulated (this project's AMD machines, once)
    (1.1, None, "fp32"),          # faster, but not by PROBE_MARGIN
    (1.9, None, "bf16"),
    (1.9, "lenet", "fp32"),       # a family measured slower in bf16 on a CPU
    (1.9, "alexnet", "fp32"),     # another (FC-bound: 0.93x)
    (1.9, "vgg", "fp32"),         # faster, but diverged in bf16 (small-filters' 7x7 net)
    (1.9, "vit", "fp32"),         # not yet checked for accuracy in bf16
    (1.9, "resnet", "bf16"),      # measured faster and accuracy-checked
])
def test_auto_follows_the_probe(monkeypatch, speedup, family, expected) -> None:
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    monkeypatch.setattr(P, "measure_bf16", lambda device: {"fp32_ms": 10.0, "bf16_ms": 10.0 / speedup,
                                                           "speedup": speedup, "fp32_gflops": 40.0})
    assert P.resolve_precision("auto", "cpu", family).value == expected
    assert P.resolve_precision("fp32", "cpu").value == "fp32" and P.resolve_precision("bf16", "cpu").value == "bf16"


def test_probe_runs_once_per_machine(monkeypatch, tmp_path) -> None:
    calls = []

    def fake(device):
        calls.append(device)
        return {"fp32_ms": 10.0, "bf16_ms": 20.0, "speedup": 0.5, "fp32_gflops": 40.0}

    monkeypatch.setattr(P, "measure_bf16", fake)
    first, again = P.probe("cpu"), P.probe("cpu")
    assert len(calls) == 1 and not first["cached"] and again["cached"] and again["speedup"] == 0.5
    (key,) = json.loads((tmp_path / "cache" / "machine_probe.json").read_text())
    assert f"torch {torch.__version__}" in key


def test_the_real_probe_measures_both() -> None:
    p = P.measure_bf16("cpu", reps=3)
    assert p["fp32_ms"] > 0 and p["bf16_ms"] > 0 and p["fp32_gflops"] > 0
    assert p["speedup"] == pytest.approx(p["fp32_ms"] / p["bf16_ms"], rel=0.5)  # a median of ratios, near theirs


def test_channels_last_and_compile_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert P.resolve_channels_last("auto", "resnet").value is True
    assert P.resolve_channels_last("auto", "vgg").value is False          # measured 0.74x
    assert P.resolve_channels_last("auto", "densenet").value is False     # not measured: NCHW
    assert P.resolve_channels_last(False, "resnet").value is False
    assert P.resolve_channels_last("auto", "vgg", "cpu", "bf16").value is True  # bf16: 1.08x NHWC
    assert P.resolve_channels_last("auto", "lenet", "cpu", "bf16").value is P.CHANNELS_LAST_CPU["lenet"][0]
    # a 1.22x faster step and 110 s of compiling: 3,900 steps of 0.8 s repay it, 100 steps do not
    assert P.compile_pays(1.22, 110.0, 0.8, 3900) and not P.compile_pays(1.22, 110.0, 0.8, 100)
    assert not P.compile_pays(0.64, 1.0, 10.0, 10**6)
    measured = P.resolve_compile("auto", "resnet", "cpu", steps=10**6, step_seconds=_no_probe)
    assert measured.value is False and "0.55x" in measured.reason  # a whole compiled resnet20 run was slower
    monkeypatch.setitem(P.COMPILE_CPU, "resnet", (1.22, 110.0, "resnet20"))
    long = P.resolve_compile("auto", "resnet", "cpu", steps=3900, step_seconds=lambda: 0.8)
    short = P.resolve_compile("auto", "resnet", "cpu", steps=100, step_seconds=lambda: 0.8)
    assert long.value is True and short.value is False and "110 s" in short.reason
    bf16 = P.resolve_compile("auto", "resnet", "cpu", steps=3900, step_seconds=_no_probe, precision="bf16")
    assert bf16.value is False
    assert P.resolve_compile("auto", "vit", "cpu", steps=10**6, step_seconds=_no_probe).value is False
    assert P.resolve_compile(True, "vit", "cpu", steps=1, step_seconds=_no_probe).value is True


@pytest.mark.parametrize("override", ["--train.precision=fp16", "--train.compile=maybe",
                                      "--data.channels_last=sometimes"])
def test_bad_values_are_one_line_errors(override, capsys) -> None:
    with pytest.raises(ConfigError) as e:
        run_training(build_config(model="lenet5_modern", data="digits", overrides=[override]))
    assert "\n" not in str(e.value) and override.split("=")[0].removeprefix("--") in str(e.value)
    assert main(["train", "lenet5_modern", "--data", "digits", override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be auto" in err


def test_the_choice_is_recorded(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(P, "cpu_flags", lambda: set())
    cfg = build_config(model="lenet5_modern", data="digits", overrides=[
        "--data.train_subset=256", "--data.test_subset=64", "--train.epochs=1", "--train.progress=false",
        "--train.precision=bf16", f"--out_dir={tmp_path}", "--name=bf16"])
    result = run_training(cfg)
    s = json.loads((result.run.path / "summary.json").read_text())
    assert s["precision"] == "bf16" and s["run_settings"]["precision"]["reason"].startswith("asked for")
    assert s["channels_last"] is True and s["compiled"] is False  # lenet: measured 1.26x NHWC, 0.64x compiled
    meta = json.loads((result.run.path / "checkpoints" / "last.json").read_text())
    assert meta["precision"] == "bf16" and meta["run_settings"]["compile"]["value"] is False
    auto = build_config(model="lenet5_modern", data="digits", overrides=[
        "--data.train_subset=256", "--data.test_subset=64", "--train.epochs=1", "--train.progress=false",
        f"--out_dir={tmp_path}", "--name=auto"])
    assert run_training(auto).summary["precision"] == "fp32"  # no native bf16 flag: auto stays float32


def test_benchmarks_precision_table_names_the_flags(tmp_path, monkeypatch) -> None:
    """``make_benchmarks_doc.py --precision-table`` in its tiny mode (1 rep, batch 4, no compile): the section names
    the machine's bf16 flags and probe, and has a row per model with the candidate auto runs."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "make_benchmarks_doc.py"
    spec = importlib.util.spec_from_file_location("_make_benchmarks_doc", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    monkeypatch.setattr(gen, "measure_peak_gflops", lambda *a, **k: 1.0)
    out = tmp_path / "benchmarks.md"
    other = gen.KIND_BEGIN.format("Other CPU, AVX2 kernels, native bf16: none") + "\n### other\n" + \
        gen.KIND_END.format("Other CPU, AVX2 kernels, native bf16: none") + "\n"
    out.write_text(f"# Benchmarks\n\nintro\n\n{gen.PER_KIND}\n\n{other}\n## GPU\n\nnone\n")
    argv = ["--quick", "--tiny", "--precision-table", "--precision-models", "lenet5_modern", "--out", str(out)]
    gen.main(argv)
    text = out.read_text()
    assert "native bf16 flags in /proc/cpuinfo: amx_bf16" in text and "bf16 probe" in text
    row = next(line for line in text.splitlines() if line.startswith("| lenet5_modern |"))
    assert "| fp32 (" in row or "| channels_last (" in row  # lenet: auto keeps float32 on a CPU
    assert "## Every family" not in text  # only this kind's subsection was measured
    blocks = gen.kind_blocks(text)
    assert len(blocks) == 2 and other in text and gen.kind_key() in blocks and "native bf16: amx_bf16" in gen.kind_key()
    assert text.index("intro") < text.index(gen.PER_KIND) < text.index("## GPU")  # the rest of the file is kept
    gen.main(argv)  # measured again on the same kind: replaced, not added
    again = out.read_text()
    assert len(gen.kind_blocks(again)) == 2 and again.count(gen.PER_KIND) == 1 and other in again


def test_runs_from_before_the_keys_resume_as_they_trained(tmp_path) -> None:
    """A config.yaml without train.precision/compile (written before they existed) reads back as what it trained
    with on a CPU, float32 and eager, not as today's auto."""
    import yaml

    from milestones.config import RunConfig, to_yaml
    from milestones.train.runconfig import load_run_config

    data = yaml.safe_load(to_yaml(RunConfig()))
    del data["train"]["precision"], data["train"]["compile"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    cfg = load_run_config(tmp_path)
    assert cfg.train.precision == ("auto" if torch.cuda.is_available() else "fp32") and cfg.train.compile is False


def test_bench_follows_the_training_layout_unless_told() -> None:
    """``milestones bench`` without ``--channels-last``/``--no-channels-last`` runs each model in the memory format a
    training run's ``auto`` picks for its family; the flags override it for every model."""
    from milestones.bench import bench_layouts

    names = ["resnet20", "vgg11"]
    auto = bench_layouts(names, "cpu", None)
    assert auto["resnet20"] is P.CHANNELS_LAST_CPU["resnet"][0] and auto["vgg11"] is P.CHANNELS_LAST_CPU["vgg"][0]
    assert auto[""].startswith("auto")
    assert bench_layouts(names, "cpu", True) == {"": "on (asked for)", "resnet20": True, "vgg11": True}
    assert bench_layouts(names, "cpu", False)["vgg11"] is False


def test_reasons_name_the_family_not_a_model_of_it_measured_elsewhere(monkeypatch) -> None:
    """Training lenet5 printed "lenet5_modern trained 1.26x as fast with it": each reason is printed for every model
    of a family, so it names the family (issue 28), never another registered model."""
    import re

    from milestones.models import list_models

    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    monkeypatch.setattr(P, "measure_bf16", lambda device: {"fp32_ms": 10.0, "bf16_ms": 5.0, "speedup": 2.0,
                                                           "fp32_gflops": 40.0})
    families = {*P.CHANNELS_LAST_CPU, *P.CHANNELS_LAST_CPU_BF16, *P.COMPILE_CPU, *P.BF16_KEPT_FP32_CPU}
    for family in sorted(families):
        reasons = [P.resolve_channels_last("auto", family, "cpu", "fp32").reason,
                   P.resolve_channels_last("auto", family, "cpu", "bf16").reason,
                   P.resolve_compile("auto", family, "cpu", steps=10, step_seconds=lambda: 0.1).reason,
                   P.resolve_precision("auto", "cpu", family).reason]
        for reason in reasons:
            named = [m for m in list_models() if m != family and re.search(rf"\b{re.escape(m)}\b", reason)]
            assert named == [], (family, reason)
    lenet = P.resolve_channels_last("auto", "lenet", "cpu", "fp32").reason
    assert "lenet family" in lenet and "1.26x" in lenet
    assert "lenet family" in P.resolve_compile("auto", "lenet", "cpu", steps=10, step_seconds=lambda: 0.1).reason
    assert "lenet family" in P.resolve_precision("auto", "cpu", "lenet").reason
