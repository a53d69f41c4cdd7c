"""Transfer learning (issue 18): the head every family replaces, class subsets, freezing and discriminative learning
rates, and ``milestones finetune`` / ``milestones features`` end to end on real data (the exact CIFAR-10 subset and an
image folder made from it), with their one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_checks import one_line_error
from parity import assert_logits_close as assert_close
from PIL import Image

from milestones.cli import main
from milestones.compare import Suite, SuiteRun, plan
from milestones.data import FolderDataset, get_dataset, open_folder
from milestones.data.loader import select_classes
from milestones.errors import ConfigError
from milestones.models import create_model, get_spec, list_models
from milestones.train.checkpoint import load_checkpoint, restore_model
from milestones.train.optim import build_optimizer, set_lr
from milestones.transfer import extract_features, freeze, head_names

ONE_PER_FAMILY = sorted({get_spec(n).family: n for n in list_models()}.values())


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_reset_classifier_gives_the_model_built_for_that_many_classes(name: str) -> None:
    """After ``reset_classifier(3)`` a 7-class model has exactly the tensors of a model built with 3 classes (so a
    fine-tuned run resumes into a freshly built model), and the head it reports is what changed shape."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=7, **spec.small)
        model.reset_classifier(3)
        fresh = create_model(name, num_classes=3, **spec.small)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    head = head_names(name, {"num_classes": 7, **spec.small})
    assert head and all(n in dict(model.named_parameters()) for n in head)
    shaped = {n for n, p in model.named_parameters() if p.ndim >= 1 and p.shape[0] == 3}
    assert shaped <= set(head), shaped - set(head)  # every 3-row tensor is the head's


def test_select_classes_against_the_label_file(data_root: Path) -> None:
    """Classes 7 and 2 of the exact test subset, relabelled 0 and 1 in that order, are the images the label file
    (read here independently) gives those classes, in order."""
    split = get_dataset("cifar10-exact", "test", root=str(data_root))
    lines = (data_root / "cifar10" / "exact-subset" / "cifar10_labels_51000.txt").read_text().split()
    ref = np.array([int(x) for x in lines[50_000:51_000]])
    sub = select_classes(split, [7, 2])
    keep = np.nonzero((ref == 7) | (ref == 2))[0]
    assert sub.labels.tolist() == [0 if ref[i] == 7 else 1 for i in keep]
    assert torch.equal(sub.images, split.images[torch.from_numpy(keep)])
    assert sub.spec.classes == ("horse", "bird") and sub.spec.num_classes == 2
    with pytest.raises(ConfigError, match="0..9"):
        select_classes(split, [3, 10])


def test_discriminative_learning_rates_and_frozen_parameters() -> None:
    model = create_model("resnet20", num_classes=5)
    head = head_names("resnet20", {"num_classes": 5})
    assert head == ["head.weight", "head.bias"]
    frozen = freeze(model, ["stem.*"])
    assert frozen == ["stem.conv.weight", "stem.bn.weight", "stem.bn.bias"]
    opt = build_optimizer(model, create_cfg_optim(), head=head, backbone_lr_mult=0.1)
    set_lr(opt, 0.5)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert len(lr_of) == sum(p.requires_grad for p in params.values())  # each trainable parameter once, frozen none
    for n, p in params.items():
        if n in frozen:
            assert id(p) not in lr_of
        else:
            assert lr_of[id(p)] == (0.5 if n in head else 0.5 * 0.1), n


def create_cfg_optim():
    from milestones.config import OptimConfig

    return OptimConfig(weight_decay=1e-4)


def test_freeze_errors_are_one_line_with_close_names() -> None:
    model = create_model("resnet20", num_classes=5)
    with pytest.raises(ConfigError, match=r"'stages\.9\.\*' matches no parameter .*did you mean stages") as e:
        freeze(model, ["stages.9.*"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="freezes every parameter"):
        freeze(model, ["*"])


@pytest.fixture(scope="module")
def pretrained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-20 trained for one epoch on classes 0-4 of the exact CIFAR-10 subset (30 images per class)."""
    out = tmp_path_factory.mktemp("pre")
    rc = main(["train", "resnet20", "--data", "cifar10-exact", "--epochs", "1", "--data-root", str(data_root),
               "--out", str(out), "--name", "pre", "--no-progress", "--data.classes=[0,1,2,3,4]",
               "--data.max_per_class=30", "--data.batch_size=50"])
    assert rc == 0
    return out / "pre"


@pytest.fixture(scope="module")
def folder(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder of classes 5-9 (dog ... truck) of the exact subset: 12 train and 6 test PNGs per class."""
    root = tmp_path_factory.mktemp("folder") / "pets"
    for split, n in (("train", 12), ("test", 6)):
        data = select_classes(get_dataset("cifar10-exact", split, root=str(data_root)), [5, 6, 7, 8, 9])
        for c, name in enumerate(data.spec.classes):
            (root / split / name).mkdir(parents=True)
            idx = (data.labels == c).nonzero().squeeze(1)[:n]
            for i in idx.tolist():
                Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(root / split / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_finetune_head_only_on_an_image_folder_then_resume(pretrained: Path, folder: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A linear probe from a run onto an image folder: only the new head trains (backbone and batch-norm statistics
    stay the pretrained ones, bit for bit), and ``train --resume`` continues it with the backbone still frozen."""
    rc = main(["finetune", str(pretrained), "--data", f"folder:{folder}", "--head-only", "--epochs", "1",
               "--out", str(tmp_path), "--name", "probe", "--no-progress", "--data.batch_size=20"])
    assert rc == 0, capsys.readouterr().err
    before, _ = load_checkpoint(pretrained, "last")
    for which in ("last",):
        after, meta = load_checkpoint(tmp_path / "probe", which)
        assert meta["data"]["classes"] == ["dog", "frog", "horse", "ship", "truck"]
        changed = sorted(k for k in after if not torch.equal(after[k], before[k]))
        assert changed == ["head.bias", "head.weight"]
    assert main(["train", "--resume", str(tmp_path / "probe"), "--epochs", "2", "--no-progress"]) == 0
    after, meta = load_checkpoint(tmp_path / "probe", "last")
    assert meta["epoch"] == 2
    assert sorted(k for k in after if not torch.equal(after[k], before[k])) == ["head.bias", "head.weight"]


@pytest.mark.slow
def test_finetune_with_a_lower_backbone_lr_trains_everything(pretrained: Path, data_root: Path,
                                                             tmp_path: Path) -> None:
    rc = main(["finetune", str(pretrained), "--data", "cifar10-exact", "--data-root", str(data_root),
               "--backbone-lr-mult", "0.1", "--freeze", "stem.*", "--epochs", "1", "--out", str(tmp_path),
               "--name", "ft", "--no-progress", "--data.classes=[5,6,7,8,9]", "--data.max_per_class=10",
               "--data.batch_size=25"])
    assert rc == 0
    before, _ = load_checkpoint(pretrained, "last")
    after, _ = load_checkpoint(tmp_path / "ft", "last")
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert not any(k.startswith("stem.") for k in changed) and "stages.2.2.conv2.weight" in changed


def test_features_cli_matches_forward_features(pretrained: Path, folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``features --layer stages`` (average-pooled) is ResNet's forward_features, computed here directly from the
    folder's images; labels are the folder's, in its order."""
    out = tmp_path / "f" / "feats.npy"
    assert main(["features", str(pretrained), "--layer", "stages", "--data", f"folder:{folder}", "--out",
                 str(out)]) == 0
    feats, labels = np.load(out), np.load(out.with_name("feats.labels.npy"))
    assert feats.shape == (30, 64) and labels.tolist() == [c for c in range(5) for _ in range(6)]
    model, meta = restore_model(pretrained)
    from milestones.data import make_test_loader

    loader = make_test_loader(meta["data"], name=f"folder:{folder}")
    ref, ref_labels = extract_features(model, loader)  # forward_features, no hooks
    assert_close(torch.from_numpy(feats), ref)
    assert torch.equal(torch.from_numpy(labels), ref_labels)
    assert main(["features", str(pretrained), "--data", f"folder:{folder}", "--out", str(tmp_path / "g.npz")]) == 0
    with np.load(tmp_path / "g.npz") as z:
        assert_close(torch.from_numpy(z["features"]), ref)
        assert list(z["classes"]) == ["dog", "frog", "horse", "ship", "truck"]


def test_bad_input_is_one_line_exit_2(pretrained: Path, folder: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["features", str(pretrained), "--layer", "stage.2", "--out", str(tmp_path / "x.npy")]) == 2
    one_line_error(capsys.readouterr().err, "no layer 'stage.2'", "did you mean stages.2")
    assert main(["finetune", str(pretrained), "--data", f"folder:{folder}", "--model", "vgg11_bn"]) == 2
    one_line_error(capsys.readouterr().err, "holds weights of resnet20, not of vgg11_bn")
    assert main(["finetune", str(pretrained), "--data", f"folder:{folder}", "--freeze", "stages.9.*"]) == 2
    one_line_error(capsys.readouterr().err, "matches no parameter", "did you mean")
    # The trained 5-way head kept for a 2-class folder.
    two = tmp_path / "two"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (two / split / c).mkdir(parents=True)
            Image.new("RGB", (32, 32), (200, 10, 10) if c == "a" else (10, 10, 200)).save(two / split / c / "0.png")
    assert main(["finetune", str(pretrained), "--data", f"folder:{two}", "--keep-head", "--epochs", "1",
                 "--out", str(tmp_path), "--no-progress", "--data.batch_size=2"]) == 2
    one_line_error(capsys.readouterr().err, "has 5 classes and the data has 2")


def test_suite_runs_start_from_an_earlier_run_of_the_same_seed(tmp_path: Path) -> None:
    runs = [SuiteRun("resnet20", "pre"), SuiteRun("resnet20", "ft", init_from="pre",
                                                  overrides={"finetune.head_only": True})]
    planned = plan(Suite("s", runs, seeds=[0, 3]), tmp_path)
    ft = [p for p in planned if p.run.label == "ft"]
    assert [p.cfg.finetune.weights for p in ft] == [str(tmp_path / "s" / "runs" / f"pre-s{s}") for s in (0, 3)]
    with pytest.raises(ConfigError, match="not an earlier run"):
        plan(Suite("s", runs[::-1]), tmp_path)


@pytest.mark.slow
def test_vgg_features_transfer_smoke(data_root: Path, tmp_path: Path) -> None:
    """The experiment's smoke mode trains its eight runs (fine-tunes from their pretraining runs) and reports."""
    from milestones.experiments import run_experiment
    from milestones.experiments import vgg_features_transfer as vft

    result = run_experiment("vgg-features-transfer", mode="smoke", out=tmp_path / "out", data_root=str(data_root))
    assert result.failed == 0
    text = result.report.read_text()
    assert "vgg11_bn-probe-4" in text and (tmp_path / "out" / "transfer.png").is_file()
    probe = tmp_path / "out" / "runs" / "vgg11_bn-probe-4-s0"
    pre, _ = load_checkpoint(tmp_path / "out" / "runs" / "vgg11_bn-pretrain-s0", "last")
    after, _ = load_checkpoint(probe, "last")
    assert sorted(k for k in after if not torch.equal(after[k], pre[k])) == ["head.bias", "head.weight"]
    setup = vft.setup("quick")
    sizes = {r.label: r.overrides.get("data.train_subset") for r in setup.runs}
    assert sizes["resnet20-scratch-10"] == 50 and sizes["resnet20-probe-1000"] == 5000


def test_a_linear_probe_reads_fixed_features() -> None:
    """head_only: in train mode VGG's features are the same twice (FC6/FC7 dropout off) and equal eval mode's, and
    batch-norm statistics do not move; fine-tuning with dropout keeps it."""
    kwargs = {"num_classes": 5, "img_size": 32, "widths": (8, 8, 8, 8, 8), "hidden": 16}
    torch.manual_seed(0)
    model = create_model("vgg11_bn", **kwargs)
    freeze(model, head=head_names("vgg11_bn", kwargs), head_only=True)
    x = torch.randn(4, 3, 32, 32)
    stats = model.stages[0].bn1.running_mean.clone()
    model.train()
    a, b = model.forward_features(x), model.forward_features(x)
    assert torch.equal(a, b) and torch.equal(model.stages[0].bn1.running_mean, stats)
    assert_close(a, model.eval().forward_features(x))
    free = create_model("vgg11_bn", **kwargs).train()
    assert not torch.equal(free.forward_features(x), free.forward_features(x))


def test_transfer_verdict_branches() -> None:
    """The verdict on hand-made accuracies: reproduced when VGG's pretrained start beats scratch at every size,
    partly when only with few labels, not when never; a missing run is not testable."""
    from milestones.experiments import vgg_features_transfer as vft

    def table(vgg_gain: list[float]) -> dict:
        acc = {}
        for model in vft.MODELS:
            for n, g in zip(vft.LABELS, vgg_gain if model == "vgg11_bn" else [10.0, 10.0, 10.0], strict=True):
                acc[(model, n, "scratch")] = 50.0
                acc[(model, n, "probe")] = 50.0 + g
                acc[(model, n, "fine-tune")] = 50.0
        return acc

    assert vft._verdict(table([9.0, 9.0, 9.0]), vft.LABELS, 4.5, 5000)[0] == "reproduced"
    verdict, reason, _ = vft._verdict(table([9.0, 1.0, -9.0]), vft.LABELS, 4.5, 5000)
    assert verdict == "partly reproduced" and "(10 per class)" in reason
    assert vft._verdict(table([1.0, 1.0, 1.0]), vft.LABELS, 4.5, 5000)[0] == "not reproduced"
    partial = table([9.0, 9.0, 9.0])
    del partial[("resnet20", 10, "probe")]
    assert vft._verdict(partial, vft.LABELS, 4.5, 5000)[0] == "not testable here"


def _noise_folder(root: Path, mode: str) -> Path:
    """Two classes of 20x20 noise PNGs in ``mode`` ("L" or "RGB"): 6 train and 3 test images each."""
    rng = np.random.default_rng(0)
    shape = (20, 20) if mode == "L" else (20, 20, 3)
    for split, n in (("train", 6), ("test", 3)):
        for c in ("circle", "square"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")
    return root


def test_lenet5_finetunes_onto_a_grayscale_folder_and_converts_an_rgb_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 28: a folder is read with the source model's channels. A LeNet-5 digits run fine-tuned onto grayscale
    PNGs reads them as its one channel (the loader used to decode RGB and fail: "mean/std need one value per channel
    (3)"); RGB PNGs are converted to grayscale, and one warning says so; eval reads the folder the same way."""
    assert main(["train", "lenet5", "--data", "digits", "--epochs", "1", "--data.train_subset=200", "--out",
                 str(tmp_path), "--name", "digits", "--no-progress"]) == 0
    gray, rgb = _noise_folder(tmp_path / "data" / "gray", "L"), _noise_folder(tmp_path / "data" / "rgb", "RGB")
    assert get_dataset(f"folder:{gray}", "train").images.shape[1] == 1  # a folder's own channels by default
    common = ["--epochs", "1", "--out", str(tmp_path), "--no-progress", "--data.batch_size=4"]
    with caplog.at_level(logging.WARNING, logger="milestones.data.folder"):
        rc = main(["finetune", str(tmp_path / "digits"), "--data", f"folder:{gray}", "--name", "gray", *common])
        assert rc == 0, capsys.readouterr().err
        assert not caplog.records
        rc = main(["finetune", str(tmp_path / "digits"), "--data", f"folder:{rgb}", "--name", "rgb", *common])
        assert rc == 0, capsys.readouterr().err
        assert main(["eval", str(tmp_path / "rgb")]) == 0
    for run in ("gray", "rgb"):
        _, meta = load_checkpoint(tmp_path / run, "last")
        assert meta["model_kwargs"]["in_chans"] == 1 and meta["data"]["in_chans"] == 1
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1, notes  # once, for training and evaluating alike
    assert "RGB images" in notes[0] and "1-channel input: converting them to grayscale" in notes[0]
    # the streamed path reads a folder as asked too
    streamed = open_folder(f"folder:{gray}", "train", image_size=32, channels=3, in_memory=False)
    assert isinstance(streamed, FolderDataset) and streamed[0][0].shape == (3, 32, 32)


def test_save_features_writes_npy_and_labels_or_one_npz(tmp_path: Path) -> None:
    """``milestones features --out``'s files, written by the library: ``.npy`` with ``.labels.npy`` beside it, or an
    ``.npz`` with the class names; another suffix or an unwritable place is a one-line error."""
    from milestones.errors import RunDirError
    from milestones.transfer import features_file, save_features

    feats, labels = torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 0])
    npy = tmp_path / "new" / "f.npy"
    assert save_features(npy, feats, labels, ["a", "b"]) == f"{npy} (labels: {npy.with_name('f.labels.npy')})"
    assert np.array_equal(np.load(npy), feats.numpy()) and np.load(npy.with_name("f.labels.npy")).tolist() == [0, 1, 0]
    assert save_features(tmp_path / "f.npz", feats, labels, ("a", "b")) == str(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz") as z:
        assert z["features"].shape == (3, 2) and z["labels"].tolist() == [0, 1, 0]
        assert z["classes"].tolist() == ["a", "b"]
    with pytest.raises(ConfigError, match=r"must end in \.npy .* or \.npz, got 'f\.csv'"):
        features_file(tmp_path / "f.csv")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(RunDirError, match="could not write"):
        save_features(tmp_path / "a_file" / "f.npy", feats, labels, ["a", "b"])
