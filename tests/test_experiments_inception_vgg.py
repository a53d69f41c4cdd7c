"""The analyses of ``vgg-fc-heads``, ``inception-1x1`` and ``googlenet-aux`` on synthetic numbers whose answer is
known, and their counts against closed forms. (Each also runs end to end in smoke mode in test_experiments.py.)"""

from __future__ import annotations

import pytest

from milestones.experiments import googlenet_aux, inception_1x1, vgg_fc_heads


def _conv(c_in: int, c_out: int, k: int) -> int:
    return k * k * c_in * c_out + c_out


def test_module_costs_against_closed_form() -> None:
    """Inception 3a (192x28x28 in): 1x1 64; 1x1 96 -> 3x3 128; 1x1 16 -> 5x5 32; pool -> 1x1 32 (Table 1)."""
    rows = {r["module"]: r for r in inception_1x1.module_costs()}
    assert list(rows) == ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
    a = rows["3a"]
    paper = _conv(192, 64, 1) + _conv(192, 96, 1) + _conv(96, 128, 3) + _conv(192, 16, 1) + _conv(16, 32, 5) \
        + _conv(192, 32, 1)
    nored = _conv(192, 64, 1) + _conv(192, 128, 3) + _conv(192, 32, 5) + _conv(192, 32, 1)
    assert (a["params"], a["params_nored"], a["params_naive"]) == (paper, nored, nored - _conv(192, 32, 1))
    biases = 64 + 96 + 128 + 16 + 32 + 32
    assert a["macs"] == (paper - biases) * 28 * 28  # a convolution costs its weights once per output position
    assert (a["out"], a["out_naive"]) == (256, 64 + 128 + 32 + 192)
    assert rows["5b"]["input"] == "832x7x7" and rows["4a"]["input"] == "480x14x14"
    assert sum(r["params"] for r in rows.values()) < 6_998_552  # the modules, without stem and classifier


def test_network_costs() -> None:
    nets = inception_1x1.network_costs()
    assert nets["googlenet"]["params"] == 6_998_552 and nets["googlenet"]["layers"] == 22
    assert nets["vgg16"]["params"] == 138_357_544 and nets["alexnet"]["params"] == 60_965_224
    assert nets["googlenet, no 1x1 reductions"]["params"] == 25_305_944
    assert nets["googlenet, FC head"]["params"] == 6_998_552 + 7 * 7 * 1024 * 1024 + 1024


_GOOGLENET = {"params": 6_998_552, "macs": 1_582_671_872}
_NORED = {"params": 25_305_944, "macs": 4_430_000_000}


def _heads(gap: list[float], fc: list[float], converged: bool = True) -> tuple[dict, dict]:
    from milestones.experiments.verdict import Convergence

    conv = {a: [Convergence(converged, "ok" if converged else "training error still fell 9.0 points")] * len(gap)
            for a in inception_1x1.ARMS}
    return {"head-gap": gap, "head-fc": fc}, conv


@pytest.mark.parametrize(("alexnet", "gap", "fc", "converged", "verdict", "statuses"), [
    # our counts (8.7x): the reductions and "far fewer" hold, "12 times" does not; the heads tie -> partly
    (60_965_224, [40.0, 41.0, 39.5], [40.5, 40.0, 40.0], True, "partly reproduced",
     ["holds", "holds", "opposite", "within noise"]),
    # a 12x ratio and the average pool better beyond seed noise: everything holds
    (84e6, [42.0, 43.1, 41.9], [40.0, 41.0, 40.1], True, "reproduced", ["holds"] * 4),
    # the FC head better beyond noise: that sub-claim goes the opposite way
    (84e6, [38.0, 39.1, 37.9], [40.0, 41.0, 40.1], True, "partly reproduced", ["holds"] * 3 + ["opposite"]),
    # not converged: the heads are not compared, whatever the numbers say
    (84e6, [42.0, 43.1, 41.9], [40.0, 41.0, 40.1], False, "partly reproduced", ["holds"] * 3 + ["regime not reached"]),
])
def test_inception_claims_on_synthetic_runs(alexnet, gap, fc, converged, verdict, statuses) -> None:
    from milestones.experiments.verdict import decide

    acc, conv = _heads(gap, fc, converged)
    claims = inception_1x1.claims(_GOOGLENET, _NORED, alexnet, acc, conv)
    assert [c.status for c in claims] == statuses and decide(claims)[0] == verdict
    assert claims[0].mechanism and "1.58 GMACs with them, 4.43 without" in claims[0].evidence
    if alexnet < 70e6:
        assert "8.71x" in claims[2].evidence and "5.08M" in claims[2].evidence


def test_inception_counts_that_miss_the_paper_are_not_reproduced() -> None:
    """A net over its budget and hardly smaller than AlexNet, with the FC head ahead beyond noise: nothing holds."""
    from milestones.experiments.verdict import decide

    acc, conv = _heads([38.0, 39.1, 37.9], [40.0, 41.0, 40.1])
    claims = inception_1x1.claims({"params": 40e6, "macs": 3e9}, {"params": 80e6, "macs": 9e9}, 60e6, acc, conv)
    assert decide(claims)[0] == "not reproduced"
    one = inception_1x1.claims(_GOOGLENET, _NORED, 84e6, *_heads([42.0], [40.0]))
    assert one[-1].status == "within noise"  # one seed: the seed noise is unmeasured
    missing = inception_1x1.claims(_GOOGLENET, _NORED, 84e6, {"head-gap": [42.0]}, {})
    assert missing[-1].status == "not testable here"


def test_inception_params_finding_traces_5_million_and_12x() -> None:
    nets = inception_1x1.network_costs()
    assert nets["googlenet"]["classifier"] == 1024 * 1000 + 1000
    fc = inception_1x1.alexnet_fc()
    assert fc == {"fc": 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000, "classifier": 4096 * 1000 + 1000}
    text = inception_1x1._params_finding(nets, fc)
    assert "6,998,552" in text and "8.7x" in text and "60/5 = 12" in text and "5.97M" in text
    assert "9.5x with both nets' 1000-way classifiers removed" in text  # (60.97M - 4.10M) / 5.97M
    mods = inception_1x1.module_costs()
    acc, conv = _heads([40.0, 41.0, 39.5], [40.5, 40.0, 40.0])
    claims = inception_1x1.claims(nets["googlenet"], nets["googlenet, no 1x1 reductions"], nets["alexnet"]["params"],
                                  acc, conv)
    answer = inception_1x1._answer(mods, nets, acc, claims, fc)
    assert answer.startswith("**Answer.**") and "not 12 times" in answer and "within seed noise" in answer
    assert "fully connected layers hold 58.6M of its 61.0M" in answer  # the head, not the 1x1s, is AlexNet's bulk
    reason = inception_1x1._reason(nets["googlenet"], nets["googlenet, no 1x1 reductions"], nets["alexnet"]["params"],
                                   acc, claims)
    assert "8.7 times fewer parameters than AlexNet" in reason and "factor of 12 is overstated" in reason


def test_inception_standard_mode_trains_half_width_with_three_seeds() -> None:
    setup = inception_1x1.setup("standard")
    assert setup.seeds == [0, 1, 2] and [r.label for r in setup.runs] == list(inception_1x1.ARMS)
    assert all(r.overrides["model.kwargs.width"] == 0.5 and r.overrides["model.kwargs.stem"] == "cifar16"
               for r in setup.runs)
    assert setup.runs[1].overrides["model.kwargs.head"] == "fc" and "Shrunk" in " ".join(setup.notes)


def test_vgg_head_costs() -> None:
    """VGG-16 at 224 with each head: the counts of Table 2 and Keras, the head's MACs in closed form, and the
    activations of one image the same for the three heads up to the head itself."""
    costs = vgg_fc_heads.head_costs()
    conv = 14_714_688  # VGG-16's conv stages (Keras include_top=False)
    assert costs["fc@224"]["params"] == 138_357_544 and costs["fc@224"]["conv"] == conv
    assert costs["gap@224"]["params"] == conv + 512 * 1000 + 1000
    assert costs["gap_fc@224"]["params"] == conv + 512 * 4096 + 4096 + 4096 * 1000 + 1000
    assert costs["fc@224"]["conv_macs"] == costs["gap@224"]["conv_macs"]  # same stages
    assert costs["fc@224"]["macs"] - costs["fc@224"]["conv_macs"] == 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    convs = [(64, 224), (64, 224), (128, 112), (128, 112), (256, 56), (256, 56), (256, 56), (512, 28), (512, 28),
             (512, 28), (512, 14), (512, 14), (512, 14)]
    pools = [(64, 112), (128, 56), (256, 28), (512, 14), (512, 7)]
    maps = sum(c * s * s for c, s in convs + pools)
    assert costs["fc@224"]["activations"] == maps + 4096 + 4096 + 1000
    assert costs["gap@224"]["activations"] == maps + 1000


def test_vgg_modes_train_a_2x2_map_on_the_same_grid_within_budget(tmp_path) -> None:
    """Every mode's runs are valid configs and models whose last map is 2x2 (GAP is not the identity); every head
    runs the same learning-rate grid; standard fits 45 minutes with margin by the brief's estimate, with 3 seeds."""
    import torch

    from milestones.compare import Suite, SuiteRun, plan
    from milestones.models import create_model

    assert vgg_fc_heads.budget_minutes("standard") < 41 and vgg_fc_heads.budget_minutes("quick") < 10
    assert vgg_fc_heads.MODES["standard"]["seeds"] == [0, 1, 2] and len(vgg_fc_heads.MODES["standard"]["grid"]) == 3
    for mode in ("smoke", "quick", "standard", "full"):
        setup = vgg_fc_heads.setup(mode)
        assert setup.runs == [] and setup.tuning is not None and setup.overrides["data.val_split"] > 0
        assert [a.label for a in setup.tuning.arms] == ["head-fc", "head-gap", "head-gap_fc"]
        arms = [SuiteRun(a.model, a.label, a.recipe, {**a.overrides, "optim.lr": v})
                for a in setup.tuning.arms for v in setup.tuning.grid]
        suite = Suite(name="x", runs=arms, data=setup.data, seeds=setup.seeds, overrides=dict(setup.overrides))
        for p in plan(suite, tmp_path / mode):
            kw = p.cfg.model.kwargs
            assert kw["skip_pools"] == [5] and kw["img_size"] == 32 and p.cfg.schedule.name == "cosine"
            assert p.cfg.data.crop_padding == 0 and p.cfg.data.flip  # fit the subset: judged at convergence
            with torch.device("meta"):
                model = create_model(p.cfg.model.name, num_classes=10, **kw)
                assert model.stages(torch.empty(1, 3, 32, 32)).shape[-2:] == (2, 2)


def _vgg_runs(gap: float, fc: float, *, fc_overfits: float = 4.0, late: bool = False) -> tuple[dict, dict, dict]:
    """Three seeds per head (the same seed pattern, a little noise in the differences), training errors that leave
    the FC head's test error ``fc_overfits`` points further above its training error than GAP's."""
    from milestones.experiments.verdict import Convergence

    test = {"fc": [fc, fc + 1.0, fc - 0.6], "gap": [gap, gap + 1.2, gap - 0.6], "gap_fc": [fc, fc + 0.5, fc - 0.2]}
    train = {"fc": [t - 10 - fc_overfits for t in test["fc"]], "gap": [t - 10 for t in test["gap"]],
             "gap_fc": [t - 12 for t in test["gap_fc"]]}
    train["gap"][1] += 0.3
    done = Convergence(not late, "training error still fell 3.0 points in the last quarter" if late else "ok")
    return test, train, {h: [done] * 3 for h in test}


@pytest.mark.parametrize(("gap", "fc", "kw", "verdict", "statuses", "answer"), [
    (38.0, 41.0, {}, "reproduced", ["holds", "holds"], "Not on them"),
    (41.0, 41.1, {}, "partly reproduced", ["within noise", "holds"], "Hardly, as far as 3 seeds can tell"),
    (41.0, 41.1, {"fc_overfits": 0.1}, "inconclusive at this scale", ["within noise", "within noise"], "Hardly"),
    (44.0, 40.0, {"fc_overfits": -3.0}, "not reproduced", ["opposite", "opposite"], "Here it does"),
    (38.0, 41.0, {"late": True}, "inconclusive at this scale", ["regime not reached"] * 2,
     "This run cannot say yet"),
])
def test_vgg_claims_on_synthetic_seeds(gap, fc, kw, verdict, statuses, answer) -> None:
    """GAP better beyond seed noise and the FC head overfitting more: reproduced; a tie: the accuracy claim within
    noise, with the 95% bounds in the answer; the FC head better: not reproduced; unconverged runs: inconclusive."""
    from milestones.experiments.verdict import decide

    test, train, conv = _vgg_runs(gap, fc, **kw)
    claims = vgg_fc_heads.claims(test, train, conv)
    assert [c.status for c in claims] == statuses and [c.mechanism for c in claims] == [False, True]
    assert decide(claims)[0] == verdict
    costs = vgg_fc_heads.head_costs()
    text = vgg_fc_heads.answer(test, claims, costs, {"fc": 400.0, "gap": 420.0}, "standard")
    assert text.startswith(f"**Answer.** {answer}")
    assert "FC6-FC8 hold 89% of VGG-16's 138M parameters but do 0.8% of its multiply-adds" in text
    assert "400 img/s with the FC head and 420 with GAP" in text
    if statuses[0] == "within noise":
        assert "At 95% the data allow the FC head to be at most" in text


def test_vgg_one_seed_or_a_missing_head_decides_nothing() -> None:
    from milestones.experiments.verdict import decide

    test, train, conv = _vgg_runs(38.0, 41.0)
    one = vgg_fc_heads.claims({h: v[:1] for h, v in test.items()}, {h: v[:1] for h, v in train.items()}, conv)
    assert decide(one)[0] == "inconclusive at this scale"
    del test["fc"]
    claims = vgg_fc_heads.claims(test, train, conv)
    assert [c.status for c in claims] == ["regime not reached"] * 2 and "FC head" in claims[0].evidence
    assert "cannot answer" in vgg_fc_heads.answer(test, claims, vgg_fc_heads.head_costs(), {}, "standard")


def _steps(errors: list[float]) -> list[dict[str, float]]:
    return [{"step": i + 1, "error": e} for i, e in enumerate(errors)]


def _grads(first: float, n: int = 10) -> list[dict[str, float]]:
    return [{"step": i + 1, googlenet_aux.FIRST: first, googlenet_aux.TOP: 1.0} for i in range(n)]


def test_run_stats() -> None:
    s = googlenet_aux.run_stats(_steps([0.9] * 5 + [0.5] * 5), _grads(0.2))
    assert s["early_err"] == pytest.approx(90.0) and s["late_err"] == pytest.approx(50.0)
    assert s["first_grad"] == s["first_grad_early"] == pytest.approx(0.2) and s["top_grad"] == 1.0


def _aux_runs(*, grad: float = 5.0, nobn: tuple[float, float] = (30.0, 10.0),
              early: tuple[float, float] = (70.0, 70.2), bn: tuple[float, float] = (61.0, 59.0),
              converged: bool = True, seeds: int = 3) -> dict:
    """Per arm and seed, what ``analyse`` collects: the heads' gradient factor without BN, the no-BN test accuracies
    (with, without), the BN pair's first-half training errors and test accuracies (with, without). Each seed adds a
    small wobble so that the t-tests have a spread to measure."""
    from milestones.experiments.verdict import Convergence

    conv = Convergence(converged, "ok" if converged else "capped after 6 of 10 epochs")
    wob = [0.0, 0.4, -0.3][:seeds]
    return {
        "nobn-aux": {s: {"grad_early": grad * (1 + w / 10), "test_acc": nobn[0] + w, "early_err": 85.0,
                         "converged": conv} for s, w in enumerate(wob)},
        "nobn-noaux": {s: {"grad_early": 1.0, "test_acc": nobn[1] - w / 2, "early_err": 89.0, "converged": conv}
                       for s, w in enumerate(wob)},
        "bn-aux": {s: {"grad_early": 1.2, "test_acc": bn[0] + w, "early_err": early[0] + w, "converged": conv}
                   for s, w in enumerate(wob)},
        "bn-noaux": {s: {"grad_early": 1.0, "test_acc": bn[1] - w / 3, "early_err": early[1] - w / 2,
                         "converged": conv} for s, w in enumerate(wob)},
    }


@pytest.mark.parametrize(("kw", "verdict", "statuses"), [
    ({}, "reproduced", ["holds"] * 4),
    # not converged: the regulariser claim is not judged
    ({"converged": False}, "partly reproduced", ["holds"] * 3 + ["regime not reached"]),
    # the heads speed early training up by 5 points, less gradient without BN, and end lower everywhere
    ({"grad": 0.5, "nobn": (10.0, 30.0), "early": (65.0, 70.0), "bn": (57.0, 60.0)}, "not reproduced",
     ["opposite"] * 4),
    # no effect of the heads anywhere, and the early difference too noisy to rule a speed-up out
    ({"grad": 1.0, "nobn": (10.0, 10.0), "early": (70.0, 71.0), "bn": (59.0, 59.0)}, "inconclusive at this scale",
     ["within noise"] * 4),
])
def test_aux_claims_on_synthetic_runs(kw, verdict, statuses) -> None:
    from milestones.experiments.verdict import decide

    claims = googlenet_aux.claims(_aux_runs(**kw))
    assert [c.status for c in claims] == statuses and decide(claims)[0] == verdict
    assert claims[0].mechanism and not any(c.mechanism for c in claims[1:])


def test_aux_claims_with_one_seed_or_missing_runs() -> None:
    one = googlenet_aux.claims(_aux_runs(seeds=1))
    assert [c.status for c in one] == ["within noise"] * 4  # one seed measures no noise
    runs = _aux_runs()
    del runs["nobn-noaux"], runs["bn-aux"]
    assert [c.status for c in googlenet_aux.claims(runs)] == ["regime not reached"] * 4
    stuck = googlenet_aux.claims(_aux_runs())[1].evidence
    assert "3 of 3 seed(s) without the heads still at chance, <= 14%" in stuck
    assert googlenet_aux.chance_bound(10.0, 500) == pytest.approx(14.02, abs=0.01)


def test_aux_answer_follows_the_numbers() -> None:
    from types import SimpleNamespace

    ctx = SimpleNamespace(setup=SimpleNamespace(overrides={"data.test_subset": 500}))
    costs = {"params": 6_998_552, "head_params": 6_379_728, "macs": 1.58e9, "head_macs": 8.4e6}
    runs = _aux_runs()
    text = googlenet_aux._answer(runs, googlenet_aux.claims(runs), costs, ctx, 10.0)
    assert text.startswith("**Answer.** They helped because") and "but reached 30.0% with them" in text
    assert "5.0 times as large" in text and "do not speed early training up" in text and "91% more" in text
    runs = _aux_runs(grad=1.0, nobn=(10.0, 10.0), early=(70.0, 71.0), bn=(59.0, 59.0), converged=False)
    text = googlenet_aux._answer(runs, googlenet_aux.claims(runs), costs, ctx, 10.0)
    assert "do not show the fix beyond seed noise" in text and "with the heads (10.0% test accuracy) or without" in text
    assert "had not converged" in text


def test_aux_tuning_score_is_the_last_validation_error() -> None:
    from milestones.experiments.measures import validation_error

    class Ctx:
        def records(self, outcome, kind):
            return outcome

    assert validation_error(Ctx(), [{"val_acc": 0.5}, {"val_acc": 0.62}]) == pytest.approx(38.0)
    assert validation_error(Ctx(), [{"test_acc": 0.9}]) == float("inf")  # never the test set
    setup = googlenet_aux.setup("standard")
    assert [a.label for a in setup.tuning.arms] == ["nobn-noaux", "nobn-aux"] and setup.tuning.grid == (0.01, 0.03, 0.1)
    assert setup.overrides["data.val_split"] > 0 and setup.seeds == [0, 1, 2]
    assert all(r.overrides["model.kwargs.width"] == 0.5 for r in [*setup.runs, *setup.tuning.arms])
    aux = setup.tuning.arms[1].overrides
    assert aux["model.kwargs.aux_logits"] and aux["train.aux_loss_weight"] == 0.3 and "optim.lr" not in aux
