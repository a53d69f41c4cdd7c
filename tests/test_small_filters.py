"""The ``small-filters`` experiment: §2.3's weight arithmetic against the nets as built, receptive fields, the
sub-claims and verdict on synthetic seeds whose answer is known (every verdict word it can give), the budget, and that
every mode's runs are valid configs and models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from milestones import count_params
from milestones.compare import Suite, SuiteRun, plan
from milestones.experiments import small_filters as sf
from milestones.experiments.verdict import HOLDS, NOT_REACHED, OPPOSITE, WITHIN_NOISE, Convergence, decide
from milestones.models import create_model


def test_receptive_fields_of_the_pairs_match() -> None:
    assert sf.receptive_field((3, 3)) == sf.receptive_field((5,)) == 5
    assert sf.receptive_field((3, 3, 3)) == sf.receptive_field((7,)) == 7
    assert sf.receptive_field((3,)) == 3
    for deep, shallow in sf.PAIRS:
        assert sf.receptive_field(sf.VARIANTS[deep][0]) == sf.receptive_field(sf.VARIANTS[shallow][0])


def test_weight_arithmetic_27_vs_49_c_squared() -> None:
    """§2.3: 3 (3^2 C^2) = 27 C^2 against 7^2 C^2 = 49 C^2 (81% more); 18 C^2 against 25 C^2 for the 5x5 pair."""
    for c in (1, 16, 512):
        assert sf.conv_weights([(3, 3, 3)], [c], in_chans=c) == 27 * c * c
        assert sf.conv_weights([(7,)], [c], in_chans=c) == 49 * c * c
        assert sf.conv_weights([(3, 3)], [c], in_chans=c) == 18 * c * c
        assert sf.conv_weights([(5,)], [c], in_chans=c) == 25 * c * c
    assert round(49 / 27 - 1, 2) == 0.81
    assert "27 C^2" in sf._arithmetic(sf.EIGHTH) and "(81% more" in sf._arithmetic(sf.EIGHTH)


def test_closed_form_equals_the_built_nets() -> None:
    """The count the report shows is the built model's, for every variant, at the trained and the paper's widths; and
    the whole net is conv weights + one bias and two batch-norm parameters per map and layer + the GAP head. Stage 5
    runs on 4x4 maps (one pool fewer), so a 7x7 kernel there sees real pixels."""
    for widths in (sf.EIGHTH, sf.PAPER_WIDTHS):
        for label, (ks, _) in sf.VARIANTS.items():
            kwargs = sf.model_kwargs(label, widths)
            closed = sf.conv_weights([ks] * sf.STAGES, widths)
            assert sf.built_conv_weights(kwargs) == closed, (ks, widths)
            with torch.device("meta"):
                model = create_model(sf.MODEL, num_classes=10, **kwargs)
            per_map = 3 * len(ks) * sum(widths)  # bias, BN gamma, BN beta
            assert count_params(model) == closed + per_map + widths[-1] * 10 + 10
    net = create_model(sf.MODEL, num_classes=10, **sf.model_kwargs("7x7", sf.EIGHTH)).eval()
    seen = []
    net.stages[4].conv1.register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert seen == [(4, 4)]
    b = sf.conv_weights([(3, 3)] * 5, [64, 128, 256, 512, 512])
    with torch.device("meta"):
        vgg13 = create_model("vgg13")
    assert b == sum(m.weight.numel() for m in vgg13.modules() if isinstance(m, nn.Conv2d))


OK = Convergence(True, "the last quarter improved training error by 0.8 points")
CAPPED = Convergence(False, "training error still fell 4.1 points in the last quarter (30.0% -> 25.9%)")
WEIGHTS = {k: sf.conv_weights([ks] * sf.STAGES, sf.EIGHTH) for k, (ks, _) in sf.VARIANTS.items()}


def seeds(base: float) -> list[float]:
    return [base, base + 0.8, base - 0.5]


def outcome(pair: float, five: float, triple: float, seven: float, *, train_gap: float = 3.0,
            late: str | None = None) -> tuple[dict, dict, dict]:
    """Test errors per net (three seeds with the same seed-to-seed pattern, so paired differences are exact), training
    errors ``train_gap`` points lower for the stacks than for their large filters, and ``late`` a net that has not
    converged."""
    test = {"3x3-pair": seeds(pair), "5x5": seeds(five), "3x3-triple": seeds(triple), "7x7": seeds(seven),
            "3x3-single": seeds(45.0)}
    test["5x5"][2] += 0.3  # a little noise in the paired differences
    test["7x7"][1] -= 0.3
    train = {k: seeds(20.0) for k in test}
    for deep, shallow in sf.PAIRS:
        train[shallow] = [t + train_gap for t in train[deep]]
        train[shallow][0] += 0.2
    conv = {k: [CAPPED if k == late else OK] * 3 for k in test}
    return test, train, conv


def verdict(*args: float, **kw: object) -> tuple[str, list]:
    test, train, conv = outcome(*args, **kw)  # type: ignore[arg-type]
    claims = sf.claims(test, train, conv, WEIGHTS)
    return decide(claims)[0], claims


def test_both_stacks_ahead_and_fitting_better_is_reproduced() -> None:
    word, claims = verdict(40, 44, 39, 45)
    assert word == "reproduced" and [c.status for c in claims] == [HOLDS] * 4
    assert [c.mechanism for c in claims] == [False, True, False, True]
    assert claims[0].name == "two 3x3 layers beat one 5x5 (test error)"
    assert claims[1].name.startswith("two 3x3 layers fit the training set better than one 5x5, with ")
    assert "fewer weights (§2.3)" in claims[3].name and "(exact)" in claims[3].evidence
    assert "paired t-test over 3 seeds" in claims[0].evidence


def test_one_stack_ahead_is_partly_reproduced() -> None:
    word, claims = verdict(40, 44, 40, 40.1)
    assert word == "partly reproduced" and claims[2].status == WITHIN_NOISE


def test_the_mechanism_absent_is_only_partly_reproduced() -> None:
    """Both stacks win on test error but fit their training sets no better: the mechanism §2.3 states is not seen."""
    word, claims = verdict(40, 44, 39, 45, train_gap=-4.0)
    assert word == "partly reproduced" and [c.status for c in claims] == [HOLDS, OPPOSITE, HOLDS, OPPOSITE]


def test_large_filters_ahead_is_not_reproduced() -> None:
    word, claims = verdict(44, 40, 45, 39, train_gap=-3.0)
    assert word == "not reproduced" and {c.status for c in claims} == {OPPOSITE}


def test_a_tie_is_inconclusive() -> None:
    word, claims = verdict(40, 40.2, 41, 40.9, train_gap=0.1)
    assert word == "inconclusive at this scale" and {c.status for c in claims} == {WITHIN_NOISE}


def test_a_net_that_has_not_converged_leaves_its_pair_unreached() -> None:
    """The triple has not converged: its two claims are 'regime not reached' whatever the numbers; the pair still
    counts. With both pairs unconverged the verdict is inconclusive, even with large gaps."""
    word, claims = verdict(40, 44, 39, 45, late="3x3-triple")
    assert word == "partly reproduced" and [c.status for c in claims] == [HOLDS, HOLDS, NOT_REACHED, NOT_REACHED]
    assert "3x3-triple: training error still fell 4.1 points" in claims[2].evidence
    test, train, conv = outcome(40, 44, 39, 45)
    conv = {k: [CAPPED] * 3 for k in conv}
    assert decide(sf.claims(test, train, conv, WEIGHTS))[0] == "inconclusive at this scale"


def test_one_seed_is_never_beyond_noise() -> None:
    test, train, conv = outcome(40, 44, 39, 45)
    one = {k: v[:1] for k, v in test.items()}
    assert decide(sf.claims(one, {k: v[:1] for k, v in train.items()}, conv, WEIGHTS))[0] == \
        "inconclusive at this scale"


def test_missing_runs_are_not_reached() -> None:
    test, train, conv = outcome(40, 44, 39, 45)
    del test["7x7"]
    claims = sf.claims(test, train, conv, WEIGHTS)
    assert [c.status for c in claims[2:]] == [NOT_REACHED, NOT_REACHED] and "no finished run of 7x7" in \
        claims[2].evidence


@pytest.mark.parametrize(("args", "kw", "words"), [
    ((40, 44, 39, 45), {}, "Yes, here too"),
    ((44, 40, 45, 39), {"train_gap": -3.0}, "Not here"),
    ((40, 40.2, 41, 40.9), {"train_gap": 0.1}, "Not measurably at this scale"),
    ((40, 44, 40, 40.1), {}, "Partly"),
    ((40, 44, 39, 45), {"late": "7x7"}, "This run cannot say yet"),
])
def test_the_answer_speaks_plainly(args: tuple, kw: dict, words: str) -> None:
    test, train, conv = outcome(*args, **kw)
    text = sf.answer(test, WEIGHTS, sf.claims(test, train, conv, WEIGHTS), "standard")
    assert text.startswith(f"**Answer.** {words}") and "27C² against 49C²" in text
    assert f"{WEIGHTS['3x3-triple']:,} against {WEIGHTS['7x7']:,}" in text


def test_the_standard_mode_fits_its_budget_by_the_estimate() -> None:
    """The brief's estimate (30 GFLOP/s, 6 x MACs per training image, 2 x per evaluated one): standard under 45
    minutes with margin, quick under 15, each net running the same grid, 3 seeds in standard."""
    assert sf.budget_minutes("standard") < 41 and sf.budget_minutes("quick") < 10
    assert sf.MODES["standard"]["seeds"] == [0, 1, 2] and len(sf.MODES["standard"]["grid"]) == 3


def test_every_mode_resolves_to_valid_configs_and_models(tmp_path: Path) -> None:
    for mode in ("quick", "standard", "full", "smoke"):
        setup = sf.setup(mode)
        assert setup.runs == [] and setup.tuning is not None and setup.overrides["data.val_split"] > 0
        arms = [SuiteRun(a.model, a.label, a.recipe, {**a.overrides, "optim.lr": v})
                for a in setup.tuning.arms for v in setup.tuning.grid]
        suite = Suite(name="x", runs=arms, data=setup.data, seeds=setup.seeds, overrides=dict(setup.overrides))
        for p in plan(suite, tmp_path / mode):
            kw = p.cfg.model.kwargs
            assert p.cfg.model.name == "vgg13_bn" and kw["img_size"] == 32 and kw["skip_pools"] == [4]
            assert kw["widths"] == sf.MODES[mode]["widths"] and kw["head"] == "gap"
            assert p.cfg.schedule.name == "cosine" and p.cfg.data.crop_padding == 0 and p.cfg.data.flip
            with torch.device("meta"):
                create_model(p.cfg.model.name, num_classes=10, **kw)
    assert [a.label for a in sf.setup("standard").tuning.arms] == list(sf.VARIANTS)
