"""`milestones convert`: a torchvision weight file in, a safetensors checkpoint out that rebuilds the same network.

The reference is torchvision itself: a randomly initialised torchvision model (no download; batch-norm statistics
randomised too, so that buffers must map as well as weights) is saved with ``torch.save`` as torchvision's downloads
are, converted through the CLI in-process, restored with ``restore_model`` and must give torchvision's eval logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from cli_checks import one_line_error
from parity import assert_logits_close
from safetensors.torch import load_file
from torch import nn

from milestones import cli
from milestones.models import get_converter
from milestones.train.checkpoint import restore_model

# (torchvision name, its constructor options, input size). resnet18 with 10 classes also checks that convert reads
# the number of classes from the file; alexnet (61M parameters) is the cheapest of the plain-CNN families; densenet121
# at 64 px covers the DenseNet converter; inception_v3 at 75 px (its smallest input) the Inception v3 one.
CASES = [("resnet18", {"num_classes": 10}, 64), ("alexnet", {}, 224), ("densenet121", {}, 64),
         ("inception_v3", {"aux_logits": False, "init_weights": True}, 75)]


def _torchvision_model(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics and affine parameters
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            nn.init.normal_(m.weight, 1.0, 0.1, generator=gen)
            nn.init.normal_(m.bias, 0.0, 0.1, generator=gen)
    return model.eval()


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    return one_line_error(capsys.readouterr().err)


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision resnet18 (10 classes) state dict saved the way torchvision's downloads are."""
    path = tmp_path_factory.mktemp("tv") / "resnet18-f37072fd.pth"
    torch.save(_torchvision_model("resnet18", num_classes=10).state_dict(), path)
    return path


@pytest.mark.parametrize(("tvname", "tv_kwargs", "size"), CASES, ids=[c[0] for c in CASES])
def test_convert_then_restore_gives_torchvisions_logits(
    tvname: str, tv_kwargs: dict, size: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tv = _torchvision_model(tvname, **tv_kwargs)
    src = tmp_path / f"{tvname}-0123abcd.pth"
    torch.save(tv.state_dict(), src)
    out = tmp_path / "x.safetensors"

    assert cli.main(["convert", tvname, str(src), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    target = get_converter(tvname).target
    assert f"torchvision {tvname} -> {target}" in captured.out and str(out) in captured.out
    assert out.is_file() and out.with_suffix(".json").is_file()
    # Plain safetensors: any reader gets the tensors, nothing pickled.
    assert len(load_file(str(out))) > 0

    model, meta = restore_model(out)
    assert meta["model"] == target and tvname in meta["converted_from"]
    assert not model.training
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, ref = model(x), tv(x)
    assert ours.shape == ref.shape == (2, tv_kwargs.get("num_classes", 1000))
    assert_logits_close(ours, ref)


def test_unknown_torchvision_name_exits_2_with_close_matches(
    resnet18_pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.safetensors"
    assert cli.main(["convert", "resnet19", str(resnet18_pth), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "'resnet19'" in err and "resnet18" in err and "did you mean" in err
    assert not out.exists()


def test_unknown_name_without_close_match_lists_the_convertible_ones(
    resnet18_pth: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["convert", "efficientnet_b0", str(resnet18_pth)]) == 2
    err = _one_line_error(capsys)
    assert "resnet50" in err and "vgg16_bn" in err


def test_missing_weight_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["convert", "resnet18", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth" in _one_line_error(capsys)


def test_existing_out_is_kept_without_overwrite(
    resnet18_pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"precious")
    assert cli.main(["convert", "resnet18", str(resnet18_pth), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    assert not out.with_suffix(".json").exists()

    assert cli.main(["convert", "resnet18", str(resnet18_pth), "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    model, meta = restore_model(out)
    assert meta["model_kwargs"] == {"version": "v1.5", "num_classes": 10}


@pytest.mark.parametrize("out_arg", [None, "my.model.safetensors"], ids=["default-out", "dotted-out"])
def test_the_file_written_is_the_one_named_and_is_never_overwritten(
    out_arg: str | None,
    resnet18_pth: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["convert", "resnet18", str(resnet18_pth)] + (["--out", out_arg] if out_arg else [])
    assert cli.main(args) == 0
    weights_line, metadata_line = capsys.readouterr().out.splitlines()
    named = Path(weights_line.rsplit(": ", 1)[1].strip())
    assert named.is_file(), f"convert printed {named} but wrote {sorted(p.name for p in tmp_path.iterdir())}"
    assert Path(metadata_line.rsplit(": ", 1)[1].strip()) == named.with_suffix(".json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([named.name, named.with_suffix(".json").name])
    before = named.read_bytes()
    assert cli.main(args) == 2, "a second convert to the same place must not overwrite without --overwrite"
    _one_line_error(capsys)
    assert named.read_bytes() == before


def test_convert_weights_in_the_library(resnet18_pth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``convert`` does, as library calls: ``converted_path`` names the output (and refuses to replace one),
    ``convert_weights`` gives our model with torchvision's weights and the metadata its checkpoint records."""
    from milestones.errors import CheckpointError
    from milestones.weights import convert_weights, converted_path

    model, meta = convert_weights("resnet18", resnet18_pth)
    assert meta["model"] == "resnet18" and meta["model_kwargs"]["num_classes"] == 10  # read from the head's weights
    assert meta["converted_from"] == "torchvision resnet18" and meta["source_file"] == str(resnet18_pth)
    assert meta["data"]["name"] is None and len(meta["data"]["classes"]) == 10
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_logits_close(model.eval()(x), _torchvision_model("resnet18", num_classes=10)(x))
    monkeypatch.chdir(tmp_path)
    assert converted_path("resnet18", resnet18_pth) == Path("resnet18-f37072fd.resnet18.safetensors")
    assert converted_path("resnet18", resnet18_pth, tmp_path / "r18") == tmp_path / "r18.safetensors"
    (tmp_path / "r18.json").write_text("{}")
    with pytest.raises(CheckpointError, match="exists; pass --overwrite"):
        converted_path("resnet18", resnet18_pth, tmp_path / "r18")
    assert converted_path("resnet18", resnet18_pth, tmp_path / "r18", overwrite=True) == tmp_path / "r18.safetensors"
