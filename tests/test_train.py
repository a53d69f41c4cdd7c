"""The training stack: schedules, parameter groups, a real short MNIST run, the run directory, reproducibility."""

from __future__ import annotations

import json
import math

import pytest
import torch
from parity import assert_logits_close

from milestones.config import RunConfig, ScheduleConfig, apply_overrides, build_config
from milestones.errors import RunDirError
from milestones.models import create_model
from milestones.train import run_training
from milestones.train.checkpoint import load_checkpoint, restore_model
from milestones.train.optim import build_optimizer, lr_at, param_groups


def _lrs(cfg: ScheduleConfig, total: int = 100, per_epoch: int = 10, base: float = 1.0) -> list[float]:
    return [lr_at(s, base_lr=base, total_steps=total, steps_per_epoch=per_epoch, cfg=cfg) for s in range(total)]


def test_schedules() -> None:
    warm = _lrs(ScheduleConfig(name="constant", warmup_epochs=1))
    assert warm[:10] == pytest.approx([(i + 1) / 10 for i in range(10)]) and warm[10:] == [1.0] * 90
    step = _lrs(ScheduleConfig(name="step", milestones=[3, 6], gamma=0.1))
    assert step[29] == 1.0 and step[30] == pytest.approx(0.1) and step[60] == pytest.approx(0.01)
    cos = _lrs(ScheduleConfig(name="cosine", min_lr=0.0))
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5))) and cos[-1] < 0.001
    assert all(a >= b for a, b in zip(cos, cos[1:]))
    one = _lrs(ScheduleConfig(name="onecycle", pct_start=0.25, div_factor=25))
    peak = max(range(100), key=one.__getitem__)
    assert one[0] == pytest.approx(1 / 25) and peak == 25 and one[peak] == pytest.approx(1.0) and one[-1] < 0.02


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = create_model("resnet20")
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    opt = build_optimizer(model, apply_overrides(RunConfig(), ["--optim.nesterov=true"]).optim)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_kernels_match_a_float64_recompute(name: str) -> None:
    """Three steps of Adam and AdamW as built for a run agree with Adam's update rule (Kingma & Ba, Algorithm 1;
    AdamW's decoupled decay, Loshchilov & Hutter) recomputed in float64 from the same gradients, with the decay only
    on the weights (:func:`param_groups`)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    cfg = apply_overrides(RunConfig(), [f"--optim.name={name}", "--optim.lr=0.01", "--optim.weight_decay=0.1"]).optim
    opt = build_optimizer(model, cfg)
    (b1, b2), eps = cfg.betas, 1e-8
    ref = {n: [p.detach().double().clone(), torch.zeros_like(p, dtype=torch.float64),
               torch.zeros_like(p, dtype=torch.float64)] for n, p in model.named_parameters()}
    decay = {n: g["weight_decay"] for g in opt.param_groups for n, p in model.named_parameters()
             if any(p is q for q in g["params"])}
    for t in range(1, 4):
        grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
            w, m, v = ref[n]
            g = grads[n].double()
            if name == "adam":
                g = g + decay[n] * w
            else:
                w.mul_(1 - 0.01 * decay[n])
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            w.sub_(0.01 * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps))
        opt.step()
    for n, p in model.named_parameters():
        scale = ref[n][0].abs().max().item()
        assert (p.detach().double() - ref[n][0]).abs().max().item() <= 1e-5 * scale, n


@pytest.fixture(scope="module")
def mnist_run(data_root, tmp_path_factory):
    """One real, short run: lenet5_modern on 12,000 MNIST training images for 2 epochs, the full test set."""
    out = tmp_path_factory.mktemp("runs")
    cfg = build_config(model="lenet5_modern", data="mnist", overrides=[
        f"--data.root={data_root}", "--data.train_subset=12000", "--train.epochs=2", "--train.progress=false",
        f"--out_dir={out}", "--name=short", "--train.log_every=20"])
    return run_training(cfg)


def test_short_mnist_run_learns(mnist_run) -> None:
    """Two epochs on a fifth of MNIST already classify the real 10,000 test digits at 96% or better."""
    assert mnist_run.summary["final_test_acc"] >= 0.96
    assert mnist_run.history.epochs[1]["train_loss"] < mnist_run.history.epochs[0]["train_loss"]


def test_run_directory_contents(mnist_run) -> None:
    path = mnist_run.run.path
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "curves.png", "checkpoints/last.safetensors",
                 "checkpoints/last.json", "checkpoints/best.safetensors", "checkpoints/best.json"):
        assert (path / name).is_file(), name
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert sum(r["kind"] == "step" for r in records) == 2 * (12000 // 128) // 20
    summary = json.loads((path / "summary.json").read_text())
    for key in ("final_test_acc", "best_test_acc", "wall_seconds", "img_per_s", "device", "torch", "git_commit"):
        assert key in summary
    assert summary["params"] == 61_706
    assert (path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_restores_the_same_model(mnist_run) -> None:
    model, meta = restore_model(mnist_run.run.path, prefer="last")
    state, _ = load_checkpoint(mnist_run.run.path, prefer="last")
    assert meta["model"] == "lenet5_modern" and meta["data"]["pad"] == 2 and meta["epoch"] == 2
    x = torch.randn(4, 1, 32, 32)
    mnist_run.model.eval()
    with torch.no_grad():
        assert_logits_close(model(x), mnist_run.model(x))
    assert set(state) == set(model.state_dict())


def test_existing_run_directory_is_refused(mnist_run) -> None:
    cfg = build_config(config_file=mnist_run.run.path / "config.yaml")
    before = (mnist_run.run.path / "summary.json").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run"):
        run_training(cfg)
    assert (mnist_run.run.path / "summary.json").read_bytes() == before


def test_same_seed_same_weights(tmp_path) -> None:
    """Deterministic mode: two runs with one seed end with bitwise-identical weights; another seed differs."""
    def weights(seed: int, name: str) -> dict[str, torch.Tensor]:
        cfg = build_config(model="lenet5", data="digits", overrides=[
            "--train.epochs=1", "--train.deterministic=true", f"--train.seed={seed}", "--train.progress=false",
            f"--out_dir={tmp_path}", f"--name={name}", "--data.train_subset=256"])
        return run_training(cfg).model.state_dict()

    a, b, c = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_auxiliary_losses_are_added_with_their_weight() -> None:
    """With train.aux_loss_weight > 0 the loop trains GoogLeNet's heads: main + w * (aux1 + aux2); paper w = 0.3."""
    from torch.nn import functional as F

    from milestones.train.loop import logits_and_loss

    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=5, stem="cifar", aux_logits=True).eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    logits, loss = logits_and_loss(model, x, y, F.cross_entropy, 0.3)
    main, aux = model.forward_with_aux(x)
    expected = F.cross_entropy(main, y) + 0.3 * (F.cross_entropy(aux[0], y) + F.cross_entropy(aux[1], y))
    assert torch.allclose(loss, expected) and torch.equal(logits, main)
    _, plain = logits_and_loss(model, x, y, F.cross_entropy, 0.0)
    assert torch.allclose(plain, F.cross_entropy(main, y))


def test_flip_tta_averages_the_mirror_images_logits() -> None:
    from milestones.train.loop import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 5, 3))
    x, y = torch.randn(6, 3, 4, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    plain = evaluate(model, [(x, y)])
    tta = evaluate(model, [(x, y)], flip_tta=True)
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
    assert tta["acc"] == int((logits.argmax(1) == y).sum()) / 6
    assert tta["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert plain["loss"] != pytest.approx(tta["loss"])


@pytest.mark.parametrize(("overrides", "words"), [
    (["--data.trivial_augment=true", "--data.rand_augment=2"], "data.trivial_augment and data.rand_augment"),
    (["--data.mixup_alpha=-0.2"], "data.mixup_alpha"),
])
def test_bad_augmentation_options_fail_before_any_data_loads(tmp_path, capsys, overrides, words) -> None:
    """One check serves BatchAugment and the CLI; the data root does not exist, so failing later would say so."""
    from cli_checks import one_line_error

    from milestones.cli import main

    code = main(["train", "resnet20", "--data", "cifar10", "--data-root", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path), "--no-progress", *overrides])
    assert code == 2
    one_line_error(capsys.readouterr().err, words)
    assert not any(tmp_path.iterdir())  # no run directory was made
