"""``milestones.viz`` and ``milestones viz``: the pictures show what they claim to (weights set by the test, a model
built to look at one quadrant, CSWin's stripe geometry), features() gives each family's documented shapes, and
``train.tensorboard`` writes what metrics.jsonl holds."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from cli_checks import one_line_error
from parity import assert_logits_close, relative_error
from PIL import Image
from torch import nn
from torch.nn import functional as F

from milestones import cli, create_model, features
from milestones.errors import ConfigError
from milestones.viz import attention_rollout, filter_grid, filter_image, grad_cam, head_maps, stripe_maps
from milestones.viz.figures import training_curves


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------- filter grids


def test_filter_grid_shows_the_weights_the_test_set() -> None:
    """LeNet-5's six 5x5 C1 filters set to known values appear pixel for pixel where the layout says, scaled
    0.5 + 0.5 w / max|w|, and the figure draws exactly that array."""
    model = create_model("lenet5")
    w = torch.arange(6 * 25, dtype=torch.float32).reshape(6, 1, 5, 5) - 75  # max |w| = 75
    with torch.no_grad():
        model.c1.weight.copy_(w)
    grid = filter_image(model)  # c1 is the first convolution: the default
    assert grid.shape == (2 * 6 + 1, 3 * 6 + 1, 3)  # 3 columns (ceil sqrt 6), 2 rows, 1-pixel borders
    for i in range(6):
        r, c = divmod(i, 3)
        cell = grid[1 + 6 * r:6 + 6 * r, 1 + 6 * c:6 + 6 * c]
        expected = (0.5 + 0.5 * w[i, 0].double() / 75).numpy()
        for ch in range(3):  # grey: the same in R, G and B
            np.testing.assert_allclose(cell[..., ch], expected, rtol=1e-6)
    assert (grid[0] == 1).all() and (grid[:, 0] == 1).all()  # white borders
    fig = filter_grid(model)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), grid)


def test_rgb_filters_are_colour_and_per_filter_stretches() -> None:
    """A 3-channel filter that is only red at one pixel shows red there; per_filter maps each filter to 0..1."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 1, 2] = 2.0  # filter 0: red at (1, 2)
        model[0].weight[1, 2, 0, 0] = -0.5  # filter 1: negative blue at (0, 0)
    grid = filter_image(model)
    np.testing.assert_allclose(grid[1 + 1, 1 + 2], [1.0, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(grid[1, 1 + 4], [0.5, 0.5, 0.375], rtol=1e-6)  # 0.5 + 0.5 * -0.5 / 2
    stretched = filter_image(model, per_filter=True)
    np.testing.assert_allclose(stretched[1, 1 + 4], [1.0, 1.0, 0.0], rtol=1e-6)  # its minimum -> 0, zeros -> 1


def test_overlay_puts_the_heatmap_where_it_belongs() -> None:
    """A 2x2 map with only its top-right cell hot, blended at alpha 0.5 over a black 8x8 image without smoothing:
    that quadrant has half the colour map's top colour, the rest half its bottom colour."""
    import matplotlib

    from milestones.viz import overlay

    out = overlay(np.zeros((8, 8, 3), np.float32), np.array([[0.0, 3.0], [0.0, 0.0]]), smooth=False, alpha=0.5)
    jet = matplotlib.colormaps["jet"]
    hot, cold = np.round(127.5 * np.array(jet(1.0)[:3])), np.round(127.5 * np.array(jet(0.0)[:3]))
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert (out[:4, 4:] == hot).all() and (out[4:] == cold).all() and (out[:4, :4] == cold).all()


# ---------------------------------------------------------------------------------------------------------- Grad-CAM


class Quadrants(nn.Module):
    """Class 0 can only see the top-left quadrant, class 1 only the bottom-right: the input is masked into two
    channels, convolved per channel (``conv``), rectified and averaged into the two logits."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        mask = torch.zeros(2, size, size)
        mask[0, : size // 2, : size // 2] = 1
        mask[1, size // 2:, size // 2:] = 1
        self.register_buffer("mask", mask)
        self.conv = nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x * self.mask)).mean(dim=(2, 3))  # (B, 2)


@pytest.mark.parametrize("target", [0, 1])
def test_grad_cam_lights_the_quadrant_the_class_looks_at(target: int) -> None:
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) + 0.5
    cam = grad_cam(Quadrants(), x[0], target_class=target, layer="conv")
    assert cam.heatmap.shape == (32, 32) and cam.target_class == target
    quadrant = np.zeros((32, 32), bool)
    rows = slice(0, 16) if target == 0 else slice(16, 32)
    quadrant[rows, rows] = True
    near = np.zeros((32, 32), bool)  # the 3x3 conv and the bilinear upsampling reach 2 pixels past the edge
    near[slice(0, 18) if target == 0 else slice(14, 32), slice(0, 18) if target == 0 else slice(14, 32)] = True
    heat = cam.heatmap.astype(np.float64)
    assert (heat[~near] == 0).all()
    assert heat[quadrant].sum() / heat.sum() > 0.9
    assert heat[quadrant].mean() > 10 * heat[~quadrant].mean()
    assert heat.max() == pytest.approx(1.0, rel=1e-6)


def test_grad_cam_explains_the_top_class_by_default_and_checks_its_arguments() -> None:
    model = Quadrants()
    x = torch.zeros(1, 1, 32, 32)
    x[..., 16:, 16:] = 1.0  # only class 1's quadrant has ink: class 1 wins
    assert grad_cam(model, x, layer="conv").target_class == 1
    with pytest.raises(ConfigError, match="out of range"):
        grad_cam(model, x, target_class=2, layer="conv")
    with pytest.raises(ConfigError, match="one normalised image"):
        grad_cam(model, torch.zeros(2, 1, 32, 32), layer="conv")


@pytest.mark.parametrize("name, kwargs, shape, layer", [
    ("lenet5", {}, (1, 32, 32), "c3"),
    ("resnet20", {}, (3, 32, 32), "stages.2"),
    ("googlenet", {}, (3, 64, 64), "stages.2.5b"),
    ("densenet_bc100", {}, (3, 32, 32), "stages.block3"),
    ("inception_v3", {}, (3, 75, 75), "stages.Mixed_7c"),
    ("xception", {"stem": "cifar"}, (3, 32, 32), "tail"),
])
def test_grad_cam_default_layer_per_family(name: str, kwargs: dict, shape: tuple, layer: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    cam = grad_cam(model, torch.randn(shape))
    assert cam.layer == layer and cam.heatmap.shape == shape[1:]
    assert 0 <= cam.heatmap.min() and cam.heatmap.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # explaining does not leave gradients behind


# -------------------------------------------------------------------------------------------- features(), all families


@pytest.mark.parametrize("name, kwargs, shape, layer, out, maps", [
    # LeNet-5 (1998, Fig. 2): C1 6@28x28, C3 16@10x10
    ("lenet5", {}, (1, 32, 32), "c3", (1, 16, 10, 10), (1, 16, 10, 10)),
    # AlexNet at 227: conv1 96@55x55, then 3x3/2 overlapping max pool -> 27x27
    ("alexnet", {}, (3, 227, 227), "stages.0", (1, 96, 27, 27), (1, 96, 27, 27)),
    # VGG stage 1: 64 channels, halved by its pool
    ("vgg11", {"img_size": 32}, (3, 32, 32), "stages.0", (1, 64, 16, 16), (1, 64, 16, 16)),
    # GoogLeNet Table 1: inception (3a) 256 channels at 1/8 of the input (28x28 at 224)
    ("googlenet", {}, (3, 64, 64), "stages.0.3a", (1, 256, 8, 8), (1, 256, 8, 8)),
    # ResNet §4.2: the second stage of the CIFAR nets, 32 filters on 16x16 maps
    ("resnet20", {}, (3, 32, 32), "stages.1", (1, 32, 16, 16), (1, 32, 16, 16)),
    # ViT-Ti/16 (D = 192) with 4x4 patches on 32x32: class token + 64 patch tokens
    ("vit_ti16", {"img_size": 32, "patch_size": 4}, (3, 32, 32), "stages.0", (1, 65, 192), (1, 192, 8, 8)),
    # Swin-T stage 2 (C = 192) on a 32x32 input with 2x2 patches: 16x16 -> 8x8 tokens, channels last
    ("swin_t", {"patch_size": 2, "window_size": 4}, (3, 32, 32), "stages.1", (1, 8, 8, 192), (1, 192, 8, 8)),
    # CSWin-T stage 2 (C = 128) at 1/8 of the input, channels last
    ("cswin_t", {"img_size": 64, "depths": (1, 1, 1, 1)}, (3, 64, 64), "stages.1", (1, 8, 8, 128),
     (1, 128, 8, 8)),
])
def test_features_shapes_per_family(name: str, kwargs: dict, shape: tuple, layer: str, out: tuple,
                                    maps: tuple) -> None:
    torch.manual_seed(0)
    model = create_model(name, **kwargs).eval()
    x = torch.randn(1, *shape)
    extract = features(model, [layer])
    with torch.no_grad():
        got = extract(x)[layer]
        spatial = extract.maps(x)[layer]
    assert tuple(got.shape) == out and tuple(spatial.shape) == maps
    assert not any(m._forward_hooks for m in model.modules())  # hooks live for one call only


def test_features_equal_the_layers_own_outputs() -> None:
    """What features() returns is what the layers compute: LeNet-5's C1 and ResNet-20's stem recomputed directly."""
    torch.manual_seed(0)
    lenet, x = create_model("lenet5").eval(), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        got = features(lenet, "c1")(x)["c1"]
        assert_logits_close(got, lenet.c1(x))
        resnet, y = create_model("resnet20").eval(), torch.randn(2, 3, 32, 32)
        got = features(resnet, ["stem", "head"])(y)
        assert_logits_close(got["stem"], resnet.stem(y))
        assert_logits_close(got["head"], resnet(y))
        vgg = create_model("vgg11", img_size=32).eval()  # conv1 is followed by ReLU(inplace=True)
        got = features(vgg, "stages.0.conv1")(y)["stages.0.conv1"]
        assert got.min() < 0
        assert_logits_close(got, vgg.stages[0].conv1(y))
    vit = create_model("vit_ti16", img_size=32, patch_size=4).eval()
    z = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        tokens = features(vit, "stages.0")(z)["stages.0"]
        grid = features(vit, "stages.0").maps(z)["stages.0"]
    assert relative_error(grid[0, :, 2, 5], tokens[0, 1 + 2 * 8 + 5]) == 0  # row-major patches after the class token


def test_unknown_layer_is_one_line_with_close_matches(capsys, tmp_path) -> None:
    model = create_model("lenet5")
    with pytest.raises(ConfigError) as e:
        features(model, ["c1", "c33"])
    assert "\n" not in str(e.value) and "'c33'" in str(e.value) and "c3" in str(e.value)
    with pytest.raises(ConfigError, match="top-level layers are c1, s2"):
        features(model, "stages.0")
    code, _, err = run_cli(capsys, "viz", "filters", "lenet5", "--layer", "c7", "--out", str(tmp_path / "f.png"))
    assert code == 2
    one_line_error(err, "no layer 'c7'", "c1")


# ------------------------------------------------------------------------------------------------------- attention


def test_cswin_stripe_maps_have_the_stripe_shape() -> None:
    """The query's vertical heads attend to exactly the sw-wide column stripe holding it (full height), its
    horizontal heads to the row stripe (full width): stage 1 (sw = 1, 16x16 tokens) and stage 2 (sw = 2, 8x8)."""
    torch.manual_seed(0)
    model = create_model("cswin_t", img_size=64, depths=(1, 1, 1, 1))
    x = torch.randn(3, 64, 64)
    pixel = (37, 22)
    for block, (grid, sw) in enumerate([(16, 1), (8, 2)]):
        vertical, horizontal = stripe_maps(model, x, pixel, block=block)
        r, c = pixel[0] * grid // 64, pixel[1] * grid // 64
        col = np.zeros((grid, grid), bool)
        col[:, c // sw * sw:(c // sw + 1) * sw] = True
        row = np.zeros((grid, grid), bool)
        row[r // sw * sw:(r // sw + 1) * sw, :] = True
        np.testing.assert_array_equal(vertical > 0, col)
        np.testing.assert_array_equal(horizontal > 0, row)
        assert vertical.sum() == pytest.approx(1.0, rel=1e-5) and horizontal.sum() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ConfigError, match="globally"):
        stripe_maps(model, x, pixel, block=3)  # the last stage attends globally


def test_vit_rollout_and_heads_with_uniform_attention() -> None:
    """With q = k = 0 every weight is 1/N: each head's class-token map is 1/N everywhere, and the rollout is
    uniform over the patches (all 1 after scaling to the maximum)."""
    model = create_model("vit_ti16", img_size=32, patch_size=8)  # 4x4 patches + class token: N = 17
    with torch.no_grad():
        for block in model.stages:
            block.attn.qkv.weight[: 2 * 192].zero_()
            block.attn.qkv.bias[: 2 * 192].zero_()
    x = torch.randn(3, 32, 32)
    heads = head_maps(model, x)
    assert heads.shape == (3, 4, 4)
    np.testing.assert_allclose(heads, np.full((3, 4, 4), 1 / 17), rtol=1e-5)
    np.testing.assert_allclose(attention_rollout(model, x), np.ones((4, 4)), rtol=1e-5)
    with pytest.raises(ConfigError, match="ViT"):
        attention_rollout(create_model("cswin_t", img_size=64, depths=(1, 1, 1, 1)), torch.randn(3, 64, 64))


# ------------------------------------------------------------------------------------------------- training curves


def _fake_run(path, accs: list[float]) -> None:
    path.mkdir()
    rows = [{"kind": "epoch", "epoch": i + 1, "step": 10 * (i + 1), "train_loss": 1.0 / (i + 1), "train_acc": a / 2,
             "test_loss": 1.5 / (i + 1), "test_acc": a} for i, a in enumerate(accs)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_training_curves_of_several_runs_in_one_figure(tmp_path) -> None:
    _fake_run(tmp_path / "a", [0.5, 0.7, 0.8])
    _fake_run(tmp_path / "b", [0.3, 0.4])
    fig = training_curves([tmp_path / "a", tmp_path / "b"])
    acc = fig.axes[1]
    lines = {line.get_label(): line for line in acc.lines}
    np.testing.assert_allclose(lines["a test"].get_ydata(), [50, 70, 80])
    np.testing.assert_allclose(lines["b test"].get_ydata(), [30, 40])
    np.testing.assert_allclose(lines["b train"].get_ydata(), [15, 20])
    from milestones.errors import RunDirError

    with pytest.raises(RunDirError, match="no metrics.jsonl"):
        training_curves([tmp_path])


# ------------------------------------------------------------------------------------- tensorboard and the CLI


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    """Two short epochs of LeNet-5 on 256 digits, with train.tensorboard=true (``make test`` installs the
    tensorboard extra; without it this fails with the one-line error saying how to install it)."""
    from milestones.config import build_config
    from milestones.train import run_training

    out = tmp_path_factory.mktemp("runs")
    cfg = build_config(model="lenet5", data="digits", overrides=[
        "--train.epochs=2", "--train.progress=false", f"--out_dir={out}", "--name=board", "--train.log_every=3",
        "--data.train_subset=256", "--train.tensorboard=true"])
    return run_training(cfg)


def test_tensorboard_events_match_metrics_jsonl(board_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from milestones.train.checkpoint import restore_model

    run = board_run.run
    events = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    records = run.records()
    for kind, keys in (("epoch", ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "img_per_s")),
                       ("step", ("loss", "lr"))):
        rows = [r for r in records if r["kind"] == kind]
        assert len(rows) >= 2
        for key in keys:
            scalars = events.Scalars(f"{kind}/{key}")
            assert [s.step for s in scalars] == [r["step"] for r in rows]
            np.testing.assert_allclose([s.value for s in scalars], [r[key] for r in rows], rtol=1e-6)
    images = events.Images("filters")
    assert [i.step for i in images] == [r["step"] for r in records if r["kind"] == "epoch"]
    import io

    shown = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"), dtype=np.float64)
    model, _ = restore_model(run.path, prefer="last")  # the weights at the last epoch's end
    expected = filter_image(model).astype(np.float64) * 255
    assert shown.shape == expected.shape and np.abs(shown - expected).max() <= 1.0  # 8-bit rounding


def test_missing_tensorboard_is_a_one_line_error(monkeypatch) -> None:
    from milestones.train.callbacks import TensorBoard

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'milestones\[tensorboard\]'") as e:
        TensorBoard("unused")
    assert "\n" not in str(e.value)


def test_viz_cli_on_a_run_and_a_model_name(board_run, capsys, tmp_path) -> None:
    """Each view writes a PNG; gradcam and features read an image file through the project's loader; curves take
    several runs."""
    digit = tmp_path / "one.png"
    ink = np.full((40, 40), 255, np.uint8)
    ink[6:34, 18:23] = 0  # a dark "1" on white paper
    Image.fromarray(ink).save(digit)
    run = str(board_run.run.path)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(rgb)
    commands = [
        ("filters", run), ("features", run, "--image", str(digit), "--layers", "c1,c3"),
        ("gradcam", run, "--image", str(digit)), ("curves", run, str(other)),
        ("attention", "vit_ti16", "--option", "img_size=32", "--option", "patch_size=8", "--image", str(rgb)),
    ]
    for i, (what, *rest) in enumerate(commands):
        out = tmp_path / f"{i}-{what}.png"
        code, stdout, err = run_cli(capsys, "viz", what, *rest, "--out", str(out))
        assert code == 0, err
        assert str(out) in stdout
        with Image.open(out) as png:
            assert png.format == "PNG" and png.width > 200
    code, _, err = run_cli(capsys, "viz", "gradcam", run)
    one_line_error(err, "--image")
    assert code == 2
    code, _, err = run_cli(capsys, "viz", "attention", run, "--image", str(digit), "--out", str(tmp_path / "x.png"))
    assert code == 2
    one_line_error(err, "no attention")
