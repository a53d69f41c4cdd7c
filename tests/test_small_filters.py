"""The ``small-filters`` experiment: §2.3's weight arithmetic against the nets as built, receptive fields, the verdict
on synthetic results whose answer is known, and that every mode's runs are valid configs and models."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from milestones import count_params
from milestones.compare import Suite, SuiteRun, plan
from milestones.experiments import small_filters as sf
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


def test_closed_form_equals_the_built_nets() -> None:
    """The count the report shows is the built model's, for every variant, at the quick and the paper's widths; and
    the whole quick net is conv weights + one bias and two batch-norm parameters per map and layer + the head."""
    for widths, head in (([16, 32, 64, 128, 128], "gap"), ([64, 128, 256, 512, 512], "fc")):
        for ks, _ in sf.VARIANTS.values():
            kwargs = {"img_size": 32, "widths": widths, "head": head, "kernels": [list(ks)] * sf.STAGES}
            closed = sf.conv_weights([ks] * sf.STAGES, widths)
            assert sf.built_conv_weights(kwargs) == closed, (ks, widths)
            if head == "gap":
                with torch.device("meta"):
                    model = create_model(sf.MODEL, num_classes=10, **kwargs)
                per_map = 3 * len(ks) * sum(widths)  # bias, BN gamma, BN beta
                assert count_params(model) == closed + per_map + widths[-1] * 10 + 10
    b = sf.conv_weights([(3, 3)] * 5, [64, 128, 256, 512, 512])
    with torch.device("meta"):
        vgg13 = create_model("vgg13")
    assert b == sum(m.weight.numel() for m in vgg13.modules() if isinstance(m, nn.Conv2d))


def err(pair: float, five: float, triple: float, seven: float, single: float = 50.0) -> list[dict]:
    names = ("3x3-pair", "5x5", "3x3-triple", "7x7", "3x3-single")
    return [{"variant": n, "status": "ok", "test err %": e} for n, e in zip(names, (pair, five, triple, seven,
                                                                                     single), strict=True)]


NOISE = {"measured": None, "pairs": 0, "sampling": 0.8, "n_test": 2000, "threshold": 1.0}


def test_both_pairs_ahead_is_reproduced() -> None:
    verdict, reason, findings = sf._verdict(err(30, 34, 29, 35), NOISE, "quick")
    assert verdict == "reproduced"
    assert any("3x3-pair vs 5x5" in f and "+4.0 points in favour of the stack)" in f for f in findings)
    rows = err(30, 34, 29, 35)
    rows[0]["conv weights"], rows[1]["conv weights"] = "18,000", "25,000"
    findings = sf._verdict(rows, NOISE, "quick")[2]
    assert any("+4.0 points in favour of the stack, which has 28% fewer conv weights" in f for f in findings)
    assert any(f.startswith("Control") and "extra depth +4.0 points" in f for f in findings)


def test_one_pair_ahead_is_partly_reproduced() -> None:
    verdict, reason, _ = sf._verdict(err(30, 34, 30, 30.5), NOISE, "quick")
    assert verdict == "partly reproduced"
    assert reason.startswith("3x3-pair vs 5x5: +4.0 points for the stack; 3x3-triple vs 7x7: +0.5 points for the stack "
                             "(within the noise, 1.0) at this small scale.")


def test_large_filters_ahead_or_a_tie_is_not_reproduced() -> None:
    verdict, reason, _ = sf._verdict(err(34, 30, 35, 29), NOISE, "quick")
    assert verdict == "not reproduced" and "3x3-triple vs 7x7: -6.0 points for the stack, against the paper" in reason
    verdict, reason, _ = sf._verdict(err(30, 30.5, 30, 29.5), NOISE, "quick")
    assert verdict == "not reproduced" and "-0.5 points for the stack (within the noise, 1.0)" in reason
    # the same gaps are a result when the noise is smaller, and noise when it is larger
    assert sf._verdict(err(30, 32, 30, 32), {**NOISE, "measured": 2.5, "threshold": 2.5}, "quick")[0] == \
        "not reproduced"
    assert sf._verdict(err(30, 32, 30, 32), NOISE, "quick")[0] == "reproduced"


def test_a_deep_stack_still_behind_in_training_is_flagged() -> None:
    rows = err(30, 34, 37, 33)
    train = {"3x3-pair": 20.0, "5x5": 21.0, "3x3-triple": 30.0, "7x7": 22.0, "3x3-single": 25.0}
    for r in rows:
        r["train err %"] = train[r["variant"]]
    verdict, reason, findings = sf._verdict(rows, NOISE, "quick")
    assert verdict == "partly reproduced"
    assert "its training error still 8.0 points higher" in reason
    assert any(f.startswith("3x3-triple vs 7x7") and "still behind in training" in f for f in findings)
    assert not any(f.startswith("3x3-pair vs 5x5") and "still behind" in f for f in findings)


def test_no_pair_is_not_testable() -> None:
    only = [r for r in err(30, 34, 29, 35) if r["variant"] in ("3x3-pair", "7x7")]
    assert sf._verdict(only, NOISE, "quick")[0] == "not testable here"


def test_every_mode_resolves_to_valid_configs_and_models(tmp_path: Path) -> None:
    for mode in ("quick", "full", "smoke"):
        setup = sf.setup(mode)
        suite = Suite(name="x", runs=[SuiteRun(r.model, r.label, r.recipe, dict(r.overrides)) for r in setup.runs],
                      data=setup.data, seeds=setup.seeds, overrides=dict(setup.overrides))
        for p in plan(suite, tmp_path):
            assert p.cfg.model.name == "vgg13_bn" and p.cfg.model.kwargs["img_size"] == 32
            with torch.device("meta"):
                create_model(p.cfg.model.name, num_classes=10, **p.cfg.model.kwargs)
    quick = {r.label: r for r in sf.setup("quick").runs}
    assert quick[sf.REFERENCE].seeds == [0, 1] and sum(r.seeds is None for r in quick.values()) == 4
