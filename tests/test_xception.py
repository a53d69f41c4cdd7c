"""Xception against timm's ``legacy_xception`` (same weights, same logits) and the paper's Table 3 count."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from parity import (
    assert_logits_close,
    check_perturbation,
    norm_identity,
    randomise_norms,
    relative_error,
    scaled,
    swapped,
)
from safetensors.torch import save_file

from milestones import cli
from milestones.bench import torchvision_pairs
from milestones.errors import CheckpointError, ConfigError
from milestones.models import create_model, get_converter
from milestones.models.xception import convert_timm_xception
from milestones.train.checkpoint import restore_model


@torch.no_grad()
def _calibrated(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Random BN affine parameters, then running statistics measured on ``x`` (as training would leave them).

    With random statistics instead (``randomise_norms`` alone), the BN shifts swamp the signal of timm's fan-out
    init: the logits then change by 0.1% between two inputs, and a 1% error in the first block's weights moves them
    by 4e-7, inside the parity bound.
    """
    randomise_norms(model)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics
    model.train()(x)
    return model.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[dict, torch.Tensor, torch.Tensor]:
    """timm's net (calibrated BN), its converted state dict, a 64x64 batch and timm's logits."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    theirs = _calibrated(timm.create_model("legacy_xception", pretrained=False),
                         torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        expected = theirs(x)
    assert relative_error(expected[0], expected[1]) > 0.1  # the logits depend on the input
    return convert_timm_xception(theirs.state_dict()), x, expected


def test_converted_timm_weights_give_timms_logits(pair) -> None:
    state, x, expected = pair
    ours = create_model("xception")
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert_logits_close(ours.eval()(x), expected)


@pytest.mark.parametrize("perturb", [
    scaled("blocks.0.sepconvs.0.depthwise.weight"),
    norm_identity("blocks.11.skip.bn"),
    norm_identity("blocks.1.norms.1"),
    swapped("blocks.5.sepconvs.1.pointwise.weight", "blocks.6.sepconvs.1.pointwise.weight"),
], ids=["scaled-depthwise", "unmapped-shortcut-bn", "unmapped-bn", "swapped-middle-blocks"])
def test_parity_catches_converter_mistakes(pair, perturb) -> None:
    state, x, expected = pair
    check_perturbation(lambda: create_model("xception"), state, perturb, x, expected)


def test_params_equal_the_papers_table_3() -> None:
    with torch.device("meta"):
        ours = create_model("xception")
        theirs = timm.create_model("legacy_xception", pretrained=False)
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters()) == 22_855_952


def test_flows_at_299_and_cifar_stem() -> None:
    """Figure 5: 19x19x728 through the middle flow, 10x10x2048 after the exit flow; the CIFAR stem keeps 32x32 until
    block 1, so the middle flow works at 4x4."""
    for stem, size, middle, final in (("imagenet", 299, 19, 10), ("cifar", 32, 4, 2)):
        model = create_model("xception", stem=stem, num_classes=10).eval()
        shapes = {}
        for key, module in (("middle", model.blocks[3]), ("final", model.tail)):
            module.register_forward_hook(lambda m, i, o, k=key, d=shapes: d.__setitem__(k, tuple(o.shape[1:])))
        with torch.no_grad():
            model(torch.randn(1, 3, size, size))
        assert shapes == {"middle": (728, middle, middle), "final": (2048, final, final)}, stem


def test_errors() -> None:
    with pytest.raises(CheckpointError, match="legacy_xception"):
        convert_timm_xception({"features.0.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="stem"):
        create_model("xception", stem="tiny")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_milestones_convert_reads_timm_files(suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``milestones convert legacy_xception FILE`` (a torch.save'd state dict, or timm's safetensors download) gives a
    checkpoint that restores to timm's logits; the class count is read from the file."""
    torch.manual_seed(0)
    theirs = _calibrated(timm.create_model("legacy_xception", pretrained=False, num_classes=10),
                         torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    src = tmp_path / f"model{suffix}"
    if suffix == ".pth":
        torch.save(theirs.state_dict(), src)
    else:
        save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(src))
    out = tmp_path / "x.safetensors"
    assert cli.main(["convert", "legacy_xception", str(src), "--out", str(out)]) == 0
    assert "converted timm legacy_xception -> xception" in capsys.readouterr().out
    model, meta = restore_model(out)
    assert meta["model"] == "xception" and meta["converted_from"] == "timm legacy_xception"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_logits_close(model(x), theirs(x))
    assert get_converter("legacy_xception").library == "timm"
    assert "legacy_xception" not in torchvision_pairs()  # bench pairs only torchvision builders


def test_convert_refuses_another_models_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "resnet.pth"
    torch.save(create_model("resnet20").state_dict(), src)
    assert cli.main(["convert", "legacy_xception", str(src), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a timm legacy_xception state dict" in err
