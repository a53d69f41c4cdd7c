"""The ``alexnet-ablations`` experiment: its sub-claims and verdict on synthetic seeds whose answer is known (each
verdict word it can give), its answer paragraph, its budget by the CPU estimate, the training-set measurement it relies
on, that every variant runs on the same seeds, and that every mode's runs are valid configs and models. (The test of
the shared test-set noise helpers in ``measures`` stays here, where they were first written.)"""

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
from milestones.experiments.verdict import HOLDS, NOT_REACHED, NOT_TESTABLE, OPPOSITE, WITHIN_NOISE, decide
from milestones.models import create_model
from milestones.train.callbacks import StepInfo


def final(**arms: list[tuple[float, float]]) -> dict[str, dict[int, tuple[float, float]]]:
    """Per variant (``no_dropout`` for ``no-dropout``), per seed 0, 1, 2...: (clean training error %, test error %)."""
    return {label.replace("_", "-"): dict(enumerate(runs)) for label, runs in arms.items()}


FITS = [(20.0, 35.0), (22.0, 36.0), (21.0, 35.5)]  # the reference: gap 15, 14, 14.5
UNFIT = [(40.0, 45.0), (42.0, 46.0), (41.0, 45.5)]  # gap 5, 4, 4.5: under FIT_GAP
OVERFITS = {"no_dropout": [(10.0, 37.0), (11.0, 37.5), (12.0, 38.0)],  # gap 27, 26.5, 26
            "no_augment": [(2.0, 40.0), (3.0, 41.0), (2.5, 40.0)]}  # gap 38, 38, 37.5
WORSE = {"no_lrn": [(23.0, 37.5), (25.0, 38.4), (24.0, 38.1)],  # test +2.5, +2.4, +2.6
         "no_overlap": [(20.0, 36.0), (22.0, 37.1), (21.0, 36.4)]}  # test +1.0, +1.1, +0.9


def verdict(f: dict) -> tuple[str, str, list]:
    subclaims = ab.claims(f, 2000)
    return (*decide(subclaims), subclaims)


def statuses(subclaims: list) -> dict[str, str]:
    return {label: c.status for label, c in zip(ab.CLAIMS, subclaims, strict=True)}


def test_every_sub_claim_beyond_seed_noise_is_reproduced() -> None:
    word, reason, subclaims = verdict(final(full=FITS, **OVERFITS, **WORSE))
    assert word == "reproduced" and reason.startswith("Every sub-claim holds beyond seed noise")
    assert [c.mechanism for c in subclaims] == [True, True, False, False]  # dropout, augmentation: reduce overfitting
    assert "difference +12.0 points (95% CI" in subclaims[0].evidence and "paired t-test over 3 seeds" in \
        subclaims[0].evidence
    assert "sampling alone (2,000 images)" in subclaims[2].evidence


def test_a_difference_within_seed_noise_makes_it_partly_reproduced() -> None:
    noisy = {"no_lrn": [(23.0, 38.0), (25.0, 34.0), (24.0, 37.0)]}  # test +3.0, -2.0, +1.5: within noise
    word, reason, subclaims = verdict(final(full=FITS, **OVERFITS, no_overlap=WORSE["no_overlap"], **noisy))
    assert word == "partly reproduced"
    assert statuses(subclaims)["no-lrn"] == WITHIN_NOISE
    assert "without LRN the test error rises (§3.3) stayed within noise" in reason


def test_regularisers_are_not_judged_while_the_reference_does_not_fit() -> None:
    """The same widening gaps, but the reference's own gap is under FIT_GAP: dropout and augmentation are "regime not
    reached" whatever their numbers say."""
    shifted = {k: [(tr + 20, te + 10) for tr, te in v] for k, v in OVERFITS.items()}  # gaps still far wider
    worse = {k: [(tr + 20, te + 10) for tr, te in v] for k, v in WORSE.items()}
    word, reason, subclaims = verdict(final(full=UNFIT, **shifted, **worse))
    assert statuses(subclaims) == {"no-dropout": NOT_REACHED, "no-augment": NOT_REACHED, "no-lrn": HOLDS,
                                   "no-overlap": HOLDS}
    assert word == "partly reproduced" and "never reached its regime" in reason
    assert "its gap is 4.5 ± 0.5 points, under the 10 the claim needs" in subclaims[0].evidence
    assert "measured anyway" in subclaims[0].evidence
    # and with LRN and overlapping pooling within noise too: nothing to say at this scale
    flat = final(full=UNFIT, **shifted, no_lrn=[(41.0, 46.0), (42.0, 45.0), (41.0, 45.8)],
                 no_overlap=[(41.0, 44.0), (42.0, 47.0), (41.0, 45.5)])
    assert verdict(flat)[0] == "inconclusive at this scale"


def test_the_opposite_direction_beyond_noise_is_not_reproduced() -> None:
    better = {"no_lrn": [(19.0, 33.0), (21.0, 34.1), (20.0, 33.4)]}  # test -2.0, -1.9, -2.1
    same = {"no_overlap": [(21.0, 35.5), (22.0, 35.0), (21.0, 36.0)]}  # +0.5, -1.0, +0.5: within noise
    word, reason, _ = verdict(final(full=FITS, no_dropout=FITS, no_augment=FITS, **better, **same))
    assert word == "not reproduced"
    assert reason.startswith("without LRN the test error rises (§3.3) did not hold (the opposite, beyond noise)")
    # a gap that narrows beyond noise without dropout counts against the paper once the reference fits
    narrower = [(tr + 8, te) for tr, te in FITS]
    word, _, subclaims = verdict(final(full=FITS, no_dropout=narrower))
    assert statuses(subclaims)["no-dropout"] == OPPOSITE and word == "not reproduced"


def test_one_seed_measures_no_noise_and_nothing_counts() -> None:
    one = final(full=FITS[:1], **{k: v[:1] for k, v in {**OVERFITS, **WORSE}.items()})
    word, _, subclaims = verdict(one)
    assert word == "inconclusive at this scale"
    assert set(statuses(subclaims).values()) == {WITHIN_NOISE}
    assert "one seed: the seed noise is not measured" in subclaims[2].evidence


def test_variants_are_paired_on_the_seeds_they_share() -> None:
    f = final(full=FITS, no_lrn=WORSE["no_lrn"][:2])  # seed 2 of no-lrn failed
    subclaims = ab.claims(f, 2000)
    assert "paired t-test over 2 seeds" in subclaims[2].evidence
    assert statuses(subclaims)["no-overlap"] == NOT_TESTABLE and "`no-overlap` did not finish" in \
        subclaims[3].evidence


def test_without_the_reference_nothing_is_testable() -> None:
    word, _, subclaims = verdict(final(**WORSE))
    assert word == "not testable here" and all(c.evidence == "the reference (`full`) did not finish" for c in subclaims)


SHRUNK_OVERRIDES = {"model.kwargs.widths": ab.EIGHTH, "data.train_subset": 6000, "train.epochs": 20}


def test_the_answer_names_what_mattered_in_plain_words() -> None:
    f = final(full=FITS, **OVERFITS, **WORSE)
    text = ab.answer(ab.claims(f, 2000), f, SHRUNK_OVERRIDES, 3)
    assert text.startswith("**Answer.** At this scale (an eighth-width AlexNet trained on 6,000 CIFAR-10 training "
                           "images for 20 epochs, 3 seeds per variant): Dropout, augmentation, LRN and overlapping "
                           "pooling mattered, beyond seed noise.")
    assert "without dropout the net overfit more: the gap between its training and test error grew by 12.0 points" in \
        text
    assert "\"exhibits substantial overfitting\" (§4.2)" in text and "13% to 11% (§3.3)" in text
    f = final(full=UNFIT, no_dropout=UNFIT, no_augment=UNFIT, no_lrn=UNFIT,
              no_overlap=[(41.0, 44.0), (42.0, 47.0), (41.0, 45.5)])
    text = ab.answer(ab.claims(f, 2000), f, SHRUNK_OVERRIDES, 3)
    assert "No ingredient made a difference beyond seed noise." in text
    assert "whether dropout and augmentation prevent overfitting could not be judged" in text
    one = final(full=FITS[:1], no_dropout=FITS[:1], no_augment=FITS[:1], no_lrn=FITS[:1], no_overlap=FITS[:1])
    text = ab.answer(ab.claims(one, 2000), one, SHRUNK_OVERRIDES, 1)
    assert "With one seed the seed noise is not measured" in text and "1 seed per variant" in text
    assert "Not measured" in ab.answer(ab.claims({}, 2000), {}, {}, 3)


def test_standard_mode_fits_its_budget_by_the_cpu_estimate() -> None:
    """Every run's training images at 6 x MACs, its evaluations at 2 x MACs, at 30 GFLOP/s (module comment)."""
    assert ab._macs(ab.EIGHTH, ab.HIDDEN, True) == 4_879_424 and ab._macs(ab.EIGHTH, ab.HIDDEN, False) == 5_724_160
    assert ab.budget_minutes("standard") == pytest.approx(37.0, abs=0.1)  # 45 minutes, with margin
    assert ab.budget_minutes("standard", gflops=33) < 34
    assert ab.budget_minutes("quick") == pytest.approx(ab.budget_minutes("standard") / 3)
    assert ab.budget_minutes("quick") < 15


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
    for mode in ("smoke", "quick", "standard", "full"):
        setup = ab.setup(mode)
        suite = Suite(name="x", runs=[SuiteRun(r.model, r.label, r.recipe, dict(r.overrides)) for r in setup.runs],
                      data=setup.data, seeds=setup.seeds, overrides=dict(setup.overrides))
        for p in plan(suite, tmp_path):
            with torch.device("meta"):
                create_model(p.cfg.model.name, num_classes=10, **p.cfg.model.kwargs)
        assert [r.label for r in setup.runs] == list(ab.VARIANTS) and all(r.seeds is None for r in setup.runs)
    assert ab.setup("standard").seeds == [0, 1, 2] and ab.setup("quick").seeds == [0]
    assert ab.setup("quick").overrides == ab.setup("standard").overrides  # quick is standard's seed 0
    assert any("we cut the width to an eighth and the images to 6,000" in n for n in ab.setup("standard").notes)


def test_every_variant_trains_on_the_same_seeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One suite per mode: every variant on the mode's seeds (so they pair by seed); --seeds sets them all."""
    calls: list[tuple[list[int], list[str]]] = []

    def fake_run_suite(suite: Suite, out: Path, **kwargs: object) -> list:
        calls.append((suite.seeds, [r.label for r in suite.runs]))
        return []

    monkeypatch.setattr(base, "run_suite", fake_run_suite)
    result = run_experiment("alexnet-ablations", mode="standard", out=tmp_path / "a")
    assert calls == [([0, 1, 2], list(ab.VARIANTS))]
    assert "seeds: 0, 1, 2\n" in result.report.read_text()
    assert result.analysis.verdict == "not testable here"
    calls.clear()
    run_experiment("alexnet-ablations", mode="quick", out=tmp_path / "b", seeds=2)
    assert calls == [([0, 1], list(ab.VARIANTS))]


def test_dropout_slowdown_is_read_off_the_training_curves() -> None:
    assert ab.first_epoch_at([1, 2, 3, 4], [80, 60, 40, 20], 50) == 3
    assert ab.first_epoch_at([1, 2], [80, 60], 50) is None
    full = ([1, 2, 3, 4, 5, 6], [90, 80, 70, 60, 50, 40], [90, 85, 80, 75, 70, 65])
    faster = ([1, 2, 3, 4, 5, 6], [85, 60, 40, 20, 10, 5], [90, 80, 75, 75, 75, 75])
    text = ab._slowdown(full, faster)
    assert "reaches the full recipe's final 40.0% (first seed) at epoch 3" in text and "slows the fit 2.0x" in text
    assert "never falls" in ab._slowdown(full, ([1, 2], [90, 85], [90, 85]))


def test_a_bigger_no_overlap_net_is_called_out() -> None:
    ref = {"params": 1_392_762, "macs": 4_879_424}
    text = ab._bigger({"params": 1_622_138, "macs": 5_724_160}, ref)
    assert "its larger maps give it 1,622,138 parameters against 1,392,762 and 5.72 MMACs against 4.88" in text
    assert ab._bigger(dict(ref), ref) == "" and ab._bigger({}, ref) == ""
