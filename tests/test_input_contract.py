"""One input contract (issue 27, point 2; issue 28, point 1): every checkpoint carries an :class:`InputSpec`, and
``milestones predict``, ``milestones viz`` and the page all feed an image through ``to_model_input`` with it.

The same drawing must become the same tensor through ``milestones predict`` and the page's API, for a run made by
today's training code and for the same run with the ``meta["data"]`` of older checkpoints (no style recorded); a
checkpoint ``milestones convert`` made from a torchvision state dict must predict, evaluate (or say in one line why
not) and be visualised.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
import torchvision
from cli_checks import one_line_error
from PIL import Image, ImageDraw

from milestones import cli, predict
from milestones.data import InputSpec, get_data_spec, input_spec
from milestones.serve import create_app, load_runs, start_in_thread
from milestones.serve import runs as serve_runs
from milestones.train import checkpoint
from milestones.train.checkpoint import load_checkpoint, save_checkpoint
from milestones.weights import converted_data


def seven() -> Image.Image:
    """A dark-on-light "7": a heavy bar over a thin stroke, so that centring the ink's box and centring its mass
    differ by pixels."""
    img = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(img)
    draw.line([(60, 50), (230, 50)], fill=0, width=40)
    draw.line([(225, 55), (120, 250)], fill=0, width=10)
    return img


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Every input a restored model is called with, in order (the model is the one predict and the page restore)."""
    inputs: list[torch.Tensor] = []
    restore = checkpoint.restore_model

    def restore_and_watch(*args, **kwargs):
        model, meta = restore(*args, **kwargs)
        model.register_forward_pre_hook(lambda _m, a: inputs.append(a[0].detach().clone()))
        return model, meta

    monkeypatch.setattr(checkpoint, "restore_model", restore_and_watch)
    return inputs


@pytest.fixture(scope="module")
def digit_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A LeNet-5 run on scikit-learn's digits trained by today's code (one epoch), an MNIST-format checkpoint saved
    as training saves one, and both again with the ``meta["data"]`` checkpoints had before the contract."""
    root = tmp_path_factory.mktemp("contract")
    assert cli.main(["train", "lenet5", "--data", "digits", "--epochs", "1", "--out", str(root), "--name", "digits",
                     "--no-progress"]) == 0
    runs = {"digits": root / "digits"}
    state, meta = load_checkpoint(runs["digits"])
    model = checkpoint.restore_model(runs["digits"])[0]
    mnist = get_data_spec("mnist")
    mnist_meta = {"model": "lenet5", "model_kwargs": {}, "data": {
        "name": "mnist", "full_name": "mnist", "classes": list(mnist.classes), **mnist.input_spec(2).to_dict(),
        "input_size": [1, 32, 32]}}
    for name, m in (("mnist", mnist_meta), ("digits-old", meta), ("mnist-old", mnist_meta)):
        old = {**m, "data": {k: v for k, v in m["data"].items() if k not in ("style", "recipe")}}
        (root / name / "checkpoints").mkdir(parents=True)
        save_checkpoint(root / name / "checkpoints" / "best", model, old if name.endswith("-old") else m)
        runs[name] = root / name
    return runs


def post(url: str, path: str, body: bytes) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


@pytest.mark.parametrize("run", ["digits", "mnist", "digits-old", "mnist-old"])
def test_the_same_drawing_is_the_same_tensor_in_predict_and_on_the_page(
    run: str, digit_runs: dict[str, Path], seen: list[torch.Tensor], tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    drawing = tmp_path / "seven.png"
    seven().save(drawing)
    assert cli.main(["predict", str(digit_runs[run]), str(drawing)]) == 0
    assert capsys.readouterr().out.startswith(f"{drawing}: ")
    from_predict = seen[-1]

    seen.clear()
    url, stop = start_in_thread(create_app(load_runs([digit_runs[run]])))
    try:
        for route in ("draw", "predict"):
            status, body = post(url, f"/api/runs/{run}/{route}", drawing.read_bytes())
            assert status == 200, body
            page = seen[0]
            assert page.shape == from_predict.shape == (1, 1, 32, 32)
            torch.testing.assert_close(page, from_predict, rtol=0, atol=0)
            seen.clear()
    finally:
        stop()
    recipe = "sklearn-digits" if run.startswith("digits") else "mnist"
    spec = InputSpec.from_dict(load_checkpoint(digit_runs[run])[1]["data"])
    assert spec.style == "digit" and spec.recipe == recipe
    fmt = predict.digits_format(seven()) if recipe == "sklearn-digits" else np.pad(predict.mnist_format(seven()), 2)
    x = (torch.from_numpy(fmt).double() / 255 - spec.mean[0]) / spec.std[0]
    torch.testing.assert_close(from_predict[0, 0].double(), x, rtol=0, atol=1e-6)  # the dataset's own recipe


def test_a_run_made_by_training_records_its_input_contract(digit_runs: dict[str, Path]) -> None:
    data = load_checkpoint(digit_runs["digits"])[1]["data"]
    spec = InputSpec.from_dict(data)
    assert (spec.style, spec.recipe, spec.img_size, spec.pad) == ("digit", "sklearn-digits", (32, 32), 0)
    assert data["style"] == "digit" and data["recipe"] == "sklearn-digits"
    assert list(spec.mean) == data["mean"] and list(spec.std) == data["std"]  # the recipe's (LeNet-5's scaling)


@pytest.mark.parametrize(("name", "recipe"), [("mnist", "mnist"), ("kmnist", "mnist"), ("digits", "sklearn-digits"),
                                              ("fashion-mnist", None), ("cifar10", None), ("folder:photos", None),
                                              (None, None)])
def test_old_data_records_get_the_style_their_dataset_declares(name: str | None, recipe: str | None) -> None:
    """Checkpoints from before the contract hold no style: the dataset's source row decides, not a list of names."""
    old = {"name": name, "in_chans": 1, "img_size": [28, 28], "mean": [0.5], "std": [0.5], "pad": 2}
    spec = input_spec(old)
    assert spec.recipe == recipe and spec.style == ("digit" if recipe else "photo")
    assert spec.input_size == (1, 32, 32) and InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="no style"):
        InputSpec.from_dict(old)  # the contract alone does not guess: the dataset's row decides


def test_one_pixel_limit() -> None:
    assert serve_runs.MAX_PIXELS == predict.MAX_PIXELS


@pytest.mark.parametrize(("source", "target", "stats", "size"), [
    ("resnet18", "resnet18", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), (224, 224)),
    ("googlenet", "googlenet_tv", ((0.5,) * 3, (0.5,) * 3), (224, 224)),
    ("inception_v3", "inception_v3", ((0.5,) * 3, (0.5,) * 3), (299, 299)),
])
def test_converted_weights_record_what_they_expect(source: str, target: str, stats: tuple, size: tuple) -> None:
    """ImageNet's mean/std, or [-1, 1] for the weights torchvision runs with transform_input=True."""
    data = converted_data(source, "torchvision", target, {})
    spec = InputSpec.from_dict(data)
    assert (spec.mean, spec.std) == stats and spec.img_size == size and spec.style == "photo"
    assert data["classes"] == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``milestones convert resnet18`` of a randomly initialised torchvision resnet18 (1,000 classes)."""
    folder = tmp_path_factory.mktemp("converted")
    torch.manual_seed(0)
    src = folder / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), src)
    out = folder / "r18.resnet18.safetensors"
    assert cli.main(["convert", "resnet18", str(src), "--out", str(out)]) == 0
    return out


def test_convert_says_where_the_weights_and_metadata_went(converted: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "again.safetensors"
    assert cli.main(["convert", "resnet18", str(converted.with_name("r18.pth")), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and str(out.with_suffix(".json")) in printed and out.with_suffix(".json").is_file()


def photo(folder: Path) -> Path:
    path = folder / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def test_a_converted_checkpoint_predicts_and_is_visualised(
    converted: Path, seen: list[torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = photo(tmp_path)
    assert cli.main(["predict", str(converted), str(image)]) == 0
    out = capsys.readouterr().out
    names = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert out.startswith(f"{image}: ") and out.split(": ", 1)[1].split(" ")[0] in {n.split(" ")[0] for n in names}
    assert seen[-1].shape == (1, 3, 224, 224)
    for what in ("filters", "gradcam"):
        fig = tmp_path / f"{what}.png"
        assert cli.main(["viz", what, str(converted), "--image", str(image), "--out", str(fig)]) == 0
        assert fig.is_file() and capsys.readouterr().err == ""


def test_a_checkpoint_converted_before_the_contract_still_predicts(
    converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, meta = load_checkpoint(converted)
    model = checkpoint.restore_model(converted)[0]
    old = {k: v for k, v in meta.items() if k not in ("data", "weights_sha256", "format")}
    stem = tmp_path / "old.resnet18"
    save_checkpoint(stem, model, old)
    assert "data" not in json.loads(stem.with_name("old.resnet18.json").read_text())
    assert cli.main(["predict", str(stem.with_name("old.resnet18.safetensors")), str(photo(tmp_path))]) == 0
    assert capsys.readouterr().out.startswith(str(tmp_path / "photo.jpg"))


def test_evaluating_converted_weights_says_in_one_line_what_is_missing(
    converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["eval", str(converted)]) == 2
    one_line_error(capsys.readouterr().err, "--data")
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = tmp_path / "pets" / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    assert cli.main(["eval", str(converted), "--data", f"folder:{tmp_path / 'pets'}"]) == 2
    one_line_error(capsys.readouterr().err, "1000 classes", "has 2")
