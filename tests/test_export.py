"""Export parity: one model of every family to ONNX (run in onnxruntime) and TorchScript, against PyTorch's logits.

Checkpoints are written with ``save_checkpoint`` from freshly created models (no training). The exported files are
read back here with onnxruntime and ``torch.jit.load`` directly, not through ``milestones.export``, and run on a batch
of another size than the traced one (the batch dimension must stay dynamic).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from parity import REL, REL_ONNXRUNTIME, assert_logits_close

from milestones.cli import main
from milestones.export import TOLERANCE, ExportError, export_checkpoint
from milestones.models import FAMILIES, create_model, get_spec
from milestones.train.checkpoint import save_checkpoint

# family -> (model, create_model options, input (C, H, W)): small instances of each architecture.
CASES = {
    "lenet": ("lenet5_modern", {}, (1, 32, 32)),
    # alexnet_owt's adaptive 6x6 pool: at 224 it is the identity (the only exportable case for ONNX's AveragePool;
    # its small 67 px test input would upsample 1x1 to 6x6); FC6-FC7 narrowed to 512 to keep the file small.
    "alexnet": ("alexnet_owt", {"hidden": 512}, (3, 224, 224)),
    "convnet4": ("convnet4", {"act": "tanh"}, (3, 32, 32)),  # ceil-mode max and average pools
    "vgg": ("vgg11", {"img_size": 32, "hidden": 1024}, (3, 32, 32)),  # FC6-FC7 narrowed as for AlexNet
    "googlenet": ("googlenet_tv", {}, (3, 64, 64)),
    "resnet": ("resnet20", {}, (3, 32, 32)),
    "densenet": ("densenet_bc100", {"depths": (2, 2, 2)}, (3, 32, 32)),  # bottlenecks, concatenation, compression
    "inception": ("inception_v3", {}, (3, 75, 75)),  # asymmetric 1x7 / 7x1 kernels, split-and-concatenate branches
    # narrowed: a strided entry block (max-pool, 1x1/2 shortcut), an identity-shortcut middle block, the exit convs
    "xception": ("xception", {"stem": "cifar", "blocks": (((32, 32), 2), ((32, 32, 32), 1), ((64, 64), 2)),
                              "tail_widths": (96, 128)}, (3, 32, 32)),
    "vit": ("vit_ti16", {"img_size": 32}, (3, 32, 32)),
    # Fewer and narrower blocks; every stage, its padding/masking and the shifted windows (swin) stay.
    "cswin": ("cswin_t", {"img_size": 64, "dim": 32, "depths": (1, 2, 2, 1), "num_heads": (2, 2, 4, 8)}, (3, 64, 64)),
    "swin": ("swin_t", {"dim": 32, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8)}, (3, 64, 64)),
}


def test_every_family_has_a_case() -> None:
    assert set(CASES) == set(FAMILIES)
    for name, _, size in CASES.values():
        assert get_spec(name).input_size[0] == size[0]


@torch.no_grad()
def _calibrate(model: torch.nn.Module, size: tuple[int, int, int]) -> None:
    """Make a fresh model's logits non-trivial, so that comparing them means something.

    Batch-norm running statistics are set from one random batch (at their initial (0, 1), GoogLeNet's 0.01-std
    weights shrink the signal to 1e-12 logits); all-zero weight matrices (ViT's head) get small random values.
    """
    for p in model.parameters():
        if p.ndim >= 2 and not p.any():
            torch.nn.init.normal_(p, std=0.02)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics
    model.train()
    model(torch.randn(8, *size, generator=torch.Generator().manual_seed(2)))
    for m in norms:
        m.momentum = 0.1
    model.eval()


def _checkpoint(tmp: Path, family: str) -> tuple[Path, torch.nn.Module, tuple[int, int, int]]:
    name, kwargs, size = CASES[family]
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    _calibrate(model, size)
    meta = {"model": name, "model_kwargs": kwargs, "data": {"input_size": list(size), "mean": [0.5] * size[0],
                                                           "std": [0.25] * size[0], "classes": ["a", "b"]}}
    save_checkpoint(tmp / "ckpt", model, meta)
    return tmp / "ckpt.safetensors", model, size


def _onnxruntime_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _torchscript_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("family", list(CASES))
def test_export_matches_pytorch(tmp_path: Path, family: str, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    ckpt, model, size = _checkpoint(tmp_path, family)
    # verify=False: the check below is this test's own, independent of export_checkpoint's.
    res = export_checkpoint(ckpt, fmt, verify=False)
    assert res.path == tmp_path / ("ckpt.onnx" if fmt == "onnx" else "ckpt.torchscript.pt")
    assert res.input_size == size and res.max_abs_diff is None
    x = torch.randn(3, *size, generator=torch.Generator().manual_seed(1))  # traced with 2 images, run with 3
    with torch.no_grad():
        ref = model(x)
    got = _onnxruntime_logits(res.path, x) if fmt == "onnx" else _torchscript_logits(res.path, x)
    assert got.shape == ref.shape
    assert ref.abs().max() > 1e-3, "degenerate logits would make the comparison meaningless"
    assert_logits_close(got, ref, rel=REL_ONNXRUNTIME if fmt == "onnx" else REL)


def test_metadata_travels_with_the_files(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ckpt, _, _ = _checkpoint(tmp_path, "lenet")
    res = export_checkpoint(ckpt, "onnx", verify=False)
    props = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert props["milestones.model"] == "lenet5_modern"
    assert json.loads(props["milestones.input_size"]) == [1, 32, 32]
    assert json.loads(props["milestones.mean"]) == [0.5] and json.loads(props["milestones.classes"]) == ["a", "b"]
    res = export_checkpoint(ckpt, "torchscript", verify=False)
    extra = {"milestones.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(res.path), _extra_files=extra)
    assert json.loads(extra["milestones.json"])["milestones.model"] == "lenet5_modern"


def test_cli_export_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    ckpt, _, _ = _checkpoint(tmp_path, "lenet")
    assert main(["export", str(ckpt), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "ckpt.onnx" in out and "max abs logit difference" in out  # verified by default
    target = tmp_path / "ckpt.onnx"
    before = target.read_bytes()
    target.write_bytes(b"keep me")
    assert main(["export", str(ckpt), "--format", "onnx"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"
    assert main(["export", str(ckpt), "--format", "onnx", "--overwrite"]) == 0
    assert target.read_bytes()[:64] == before[:64]
    custom = tmp_path / "sub" / "model.pt"
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(custom)]) == 0
    assert custom.is_file()


def test_cli_export_of_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _, _ = _checkpoint(tmp_path, "lenet")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        (run / "checkpoints" / f"best{suffix}").write_bytes(ckpt.with_suffix(suffix).read_bytes())
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    assert (run / "checkpoints" / "best.torchscript.pt").is_file()
    assert main(["export", str(tmp_path / "nowhere"), "--format", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_disagreeing_file_is_refused_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import milestones.export as export

    ckpt, _, _ = _checkpoint(tmp_path, "lenet")
    monkeypatch.setattr(export, "run_exported", lambda path, fmt, x, **kw: torch.zeros(x.shape[0], 10) + 1.0)
    with pytest.raises(ExportError, match="disagrees"):
        export_checkpoint(ckpt, "torchscript")
    assert not any(p.name.endswith((".pt", ".tmp")) for p in tmp_path.iterdir())


@pytest.mark.parametrize(("factor", "refused"), [(1 + TOLERANCE / 2, False), (1 + 2 * TOLERANCE, True)])
def test_the_check_allows_a_fraction_of_the_largest_logit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          factor: float, refused: bool) -> None:
    """The library's own check is relative: logits all off by the same fraction pass below ``TOLERANCE`` and are
    refused above it."""
    import milestones.export as export

    ckpt, _, _ = _checkpoint(tmp_path, "lenet")
    run = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda path, fmt, x, **kw: run(path, fmt, x, **kw) * factor)
    if refused:
        with pytest.raises(ExportError, match="disagrees"):
            export_checkpoint(ckpt, "torchscript")
    else:
        assert export_checkpoint(ckpt, "torchscript").max_abs_diff > 0
