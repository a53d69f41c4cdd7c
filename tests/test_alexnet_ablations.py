"""The ``alexnet-ablations`` experiment: its verdict and noise estimate on synthetic results whose answer is known,
the training-set measurement it relies on, per-run seeds, and that every mode's runs are valid configs and models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from milestones.compare import Suite, SuiteRun, plan
from milestones.data import BatchAugment, TensorLoader
from milestones.data.spec import DataSpec, ImageSplit
from milestones.experiments import alexnet_ablations as ab
from milestones.experiments import base, run_experiment
from milestones.experiments.measures import TrainSetError, describe_noise, difference_error, noise_threshold
from milestones.models import create_model
from milestones.train.callbacks import StepInfo


def rows(full: tuple[float, float], **variants: tuple[float, float]) -> list[dict]:
    """Result rows from (train err %, test err %) per variant."""
    out = []
    for label, (train, test) in {"full": full, **variants}.items():
        out.append({"variant": label, "status": "ok", "train err %": train, "test err %": test,
                    "gap (test - train)": test - train})
    return out


NOISE = {"measured": 0.5, "pairs": 1, "sampling": 0.9, "n_test": 1000, "threshold": 1.0}


def test_every_effect_beyond_the_noise_is_reproduced() -> None:
    r = rows((20, 40), **{"no-dropout": (5, 45), "no-augment": (2, 50), "no-lrn": (20, 43), "no-overlap": (19, 42)})
    verdict, reason, findings = ab._verdict(r, NOISE, "quick")
    assert verdict == "reproduced"
    assert reason.startswith("Without dropout the train-test gap widens by 20.0 points; without augmentation")
    assert "without overlapping pooling the test error rises by 2.0 points (at this small scale)." in reason
    assert any("it overfits more without it, as the paper says." in f for f in findings)


def test_regularisers_alone_are_partly_reproduced() -> None:
    r = rows((20, 40), **{"no-dropout": (5, 45), "no-augment": (2, 50), "no-lrn": (20, 40.5), "no-overlap": (19, 39.6)})
    verdict, reason, findings = ab._verdict(r, NOISE, "quick")
    assert verdict == "partly reproduced"
    assert "without augmentation the train-test gap widens by 28.0 points;" in reason
    assert "without LRN the test error rises by 0.5 points, within the noise (1.0)" in reason
    assert any(f.startswith("no-overlap") and "would hide anyway" in f for f in findings)  # 0.4 < 1.0


def test_no_effect_or_the_opposite_is_not_reproduced() -> None:
    same = rows((20, 40), **{"no-dropout": (20, 40.5), "no-augment": (20, 40), "no-lrn": (20, 40),
                             "no-overlap": (20, 40)})
    assert ab._verdict(same, NOISE, "quick")[0] == "not reproduced"
    better = rows((20, 40), **{"no-lrn": (18, 36)})
    verdict, reason, _ = ab._verdict(better, NOISE, "quick")
    assert verdict == "not reproduced" and "Without LRN the test error falls by 4.0 points, against the paper" in reason
    # a gap that shrinks without dropout counts against the paper too
    assert ab._verdict(rows((20, 40), **{"no-dropout": (30, 40)}), NOISE, "quick")[0] == "not reproduced"


def test_more_overfitting_with_a_lower_test_error_is_explained() -> None:
    """Short schedules: without dropout the net fits faster, so its gap widens while its test error still falls."""
    verdict, _, findings = ab._verdict(rows((48, 56), **{"no-dropout": (30, 52)}), NOISE, "quick")
    assert verdict == "partly reproduced"
    assert any(f.startswith("no-dropout") and "yet its test error is lower" in f for f in findings)
    _, _, findings = ab._verdict(rows((48, 56), **{"no-dropout": (30, 57)}), NOISE, "quick")
    assert not any("yet its test error is lower" in f for f in findings)


def test_the_noise_threshold_decides() -> None:
    r = rows((20, 40), **{"no-lrn": (20, 42)})
    assert ab._verdict(r, NOISE, "quick")[0] == "partly reproduced"
    assert ab._verdict(r, {**NOISE, "measured": 3.0, "threshold": 3.0}, "quick")[0] == "not reproduced"


def test_without_the_full_recipe_nothing_is_testable() -> None:
    r = [x for x in rows((20, 40), **{"no-lrn": (20, 42)}) if x["variant"] != "full"]
    assert ab._verdict(r, NOISE, "quick")[0] == "not testable here"


def test_noise_is_the_largest_of_floor_seed_spread_and_test_sampling() -> None:
    assert difference_error(50.0, 1000) == pytest.approx(2.236, abs=1e-3)  # sqrt(2 * 0.25 / 1000)
    assert difference_error(0.0, 1000) == 0.0
    n = noise_threshold([2.5, 1.5], 10.0, 10_000)  # sampling 0.42: the seeds decide
    assert n["measured"] == 2.0 and n["pairs"] == 2 and n["threshold"] == 2.0
    n = noise_threshold([0.1], 56.0, 1000)  # seeds agree by luck: the test set's sampling error decides
    assert n["threshold"] == pytest.approx(100 * (2 * 0.56 * 0.44 / 1000) ** 0.5)
    assert noise_threshold([], 1.0, 10_000, floor=1.0) == {"measured": None, "pairs": 0, "n_test": 10_000,
                                                            "sampling": pytest.approx(0.141, abs=1e-3),
                                                            "threshold": 1.0}
    assert "Differences below 2.2 points" in describe_noise(noise_threshold([0.4], 50.0, 1000), "`full`")


class Constant(nn.Module):
    """Predicts class 0 for every image, and remembers whether it ran in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([5.0, 0.0, 0.0]))
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(self.training)
        return self.bias.expand(x.shape[0], 3)


def test_train_set_error_measures_plain_images_in_eval_mode_at_epoch_ends() -> None:
    labels = torch.tensor([0, 1, 2, 0, 0, 1, 2, 2, 0, 1])  # 4 of 10 are class 0: error 0.6
    spec = DataSpec("fake", 3, 3, (4, 4), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), ("a", "b", "c"))
    split = ImageSplit(torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8), labels, spec)
    augment = BatchAugment.for_spec(spec, flip=True, crop_padding=1)
    loader = TensorLoader(split, batch_size=4, train=True, augment=augment)  # 2 batches per epoch
    model = Constant().train()

    class State:
        pass

    state = State()
    state.loader, state.model = loader, model
    cb = TrainSetError(limit=None, batch_size=3)
    cb.on_fit_start(state, total_steps=4)  # type: ignore[arg-type]
    out = []
    for step in (1, 2, 3, 4):
        info = StepInfo(step, (step - 1) // 2, 0.1, torch.tensor(1.0), torch.zeros(4, 3), torch.zeros(4, 3, 4, 4),
                        torch.zeros(4, dtype=torch.long), model, torch.optim.SGD(model.parameters(), lr=0.1))
        out.append(cb.on_step(info))
    assert out[0] is None and out[2] is None
    assert out[1] == {"kind": "train_eval", "step": 2, "epoch": 1, "error": pytest.approx(0.6), "loss": out[1]["loss"],
                      "n": 10}
    assert out[3]["epoch"] == 2 and out[3]["n"] == 10
    assert model.modes == [False] * 8 and model.training  # 4 batches of 3 per measurement, then back to training
    cb = TrainSetError(limit=5)
    cb.on_fit_start(state, total_steps=4)  # type: ignore[arg-type]
    assert len(cb.labels) == 5


def test_every_mode_resolves_to_valid_configs_and_models(tmp_path: Path) -> None:
    for mode in ("quick", "full", "smoke"):
        setup = ab.setup(mode)
        suite = Suite(name="x", runs=[SuiteRun(r.model, r.label, r.recipe, dict(r.overrides)) for r in setup.runs],
                      data=setup.data, seeds=setup.seeds, overrides=dict(setup.overrides))
        for p in plan(suite, tmp_path):
            with torch.device("meta"):
                create_model(p.cfg.model.name, num_classes=10, **p.cfg.model.kwargs)
    quick = {r.label: r for r in ab.setup("quick").runs}
    assert quick["full"].seeds == [0, 1] and all(r.seeds is None for k, r in quick.items() if k != "full")


def test_a_run_can_have_its_own_seeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """RunSpec.seeds: the reference run gets a second seed, the others the setup's one; --seeds sets every run's."""
    calls: list[tuple[list[int], list[str]]] = []

    def fake_run_suite(suite: Suite, out: Path, **kwargs: object) -> list:
        calls.append((suite.seeds, [r.label for r in suite.runs]))
        return []

    monkeypatch.setattr(base, "run_suite", fake_run_suite)
    result = run_experiment("alexnet-ablations", mode="quick", out=tmp_path / "a")
    assert calls == [([0, 1], ["full"]), ([0], ["no-dropout", "no-augment", "no-lrn", "no-overlap"])]
    assert "seeds: 0; `full`: 0, 1" in result.report.read_text()
    assert result.analysis.verdict == "not testable here"
    calls.clear()
    run_experiment("alexnet-ablations", mode="quick", out=tmp_path / "b", seeds=3)
    assert calls == [([0, 1, 2], ["full", "no-dropout", "no-augment", "no-lrn", "no-overlap"])]


def test_dropout_slowdown_is_read_off_the_training_curves() -> None:
    assert ab.first_epoch_at([1, 2, 3, 4], [80, 60, 40, 20], 50) == 3
    assert ab.first_epoch_at([1, 2], [80, 60], 50) is None
    full = ([1, 2, 3, 4, 5, 6], [90, 80, 70, 60, 50, 40], [90, 85, 80, 75, 70, 65])
    faster = ([1, 2, 3, 4, 5, 6], [85, 60, 40, 20, 10, 5], [90, 80, 75, 75, 75, 75])
    text = ab._slowdown(full, faster)
    assert "reaches the full recipe's final 40.0% (first seed) at epoch 3" in text and "slows the fit 2.0x" in text
    assert "never falls" in ab._slowdown(full, ([1, 2], [90, 85], [90, 85]))


def test_a_bigger_no_overlap_net_is_called_out() -> None:
    r = rows((20, 40), **{"no-overlap": (19, 37)})
    r[0].update(params="1,392,762", MMACs=4.9)
    r[1].update(params="1,622,138", MMACs=5.7)
    findings = ab._verdict(r, NOISE, "quick")[2]
    assert any("its larger maps give it 1,622,138 parameters and 5.7 MMACs against 1,392,762 and 4.9" in f
               for f in findings)
    r[1].update(params="1,392,762", MMACs=4.9)
    assert not any("larger maps" in f for f in ab._verdict(r, NOISE, "quick")[2])
