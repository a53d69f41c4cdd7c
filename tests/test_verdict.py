"""The shared verdict function on synthetic records: every verdict word from the case that should give it, and the
t-test against an independent recompute."""

from __future__ import annotations

import math
import statistics

import pytest

from milestones.experiments.verdict import (
    HOLDS,
    NOT_REACHED,
    NOT_TESTABLE,
    OPPOSITE,
    WITHIN_NOISE,
    SubClaim,
    compare,
    converged,
    decide,
    judge,
    sampling_error,
    spread,
)


def test_paired_t_test_matches_a_recompute():
    a, b = [30.1, 31.0, 29.4], [27.0, 28.2, 26.9]
    c = compare(a, b, paired=True)
    d = [x - y for x, y in zip(a, b)]
    se = statistics.stdev(d) / math.sqrt(3)
    assert c.diff == pytest.approx(statistics.fmean(d))
    # t critical value at 2 degrees of freedom, 95% two-sided: 4.302652729...
    assert c.high - c.diff == pytest.approx(4.302652729911275 * se, rel=1e-9)
    assert c.beyond_noise and c.paired and c.n == 3


def test_pooled_t_test_matches_scipy():
    from scipy import stats

    a, b = [10.0, 11.5, 9.0, 10.2], [12.0, 13.1, 12.4]
    c = compare(a, b, paired=False)
    ref = stats.ttest_ind(a, b, equal_var=True)
    assert c.p == pytest.approx(float(ref.pvalue), rel=1e-9)


def test_two_standard_errors_is_not_enough_at_three_seeds():
    # a mean difference of 2.5 seed standard errors: "beyond 2 s.e.", but a paired t-test at 3 seeds says tie
    d = [1.0, 2.0, 3.0]  # mean 2, s.e. 0.577: 3.46 s.e.; t(2) critical value 4.30
    c = compare([x + 10 for x in d], [10.0] * 3, paired=True)
    assert c.diff / (statistics.stdev(d) / math.sqrt(3)) > 2 and not c.beyond_noise


def test_one_seed_is_never_beyond_noise():
    c = compare([40.0], [20.0], paired=True)
    assert not c.measured and not c.beyond_noise
    assert "not measured" in c.describe()
    assert judge("x", c, expect=1, evidence="e").status == WITHIN_NOISE


def test_judge_directions_and_regime():
    up = compare([5.0, 5.2, 5.1], [1.0, 1.1, 0.9], paired=True)
    assert judge("x", up, expect=1, evidence="e").status == HOLDS
    assert judge("x", up, expect=-1, evidence="e").status == OPPOSITE
    assert judge("x", up, expect=1, evidence="e", reached=False, why_not_reached="never got to 25%").status == \
        NOT_REACHED


@pytest.mark.parametrize(("statuses", "verdict"), [
    ([HOLDS, HOLDS], "reproduced"),
    ([HOLDS, WITHIN_NOISE], "partly reproduced"),
    ([HOLDS, OPPOSITE], "partly reproduced"),
    ([HOLDS, NOT_TESTABLE], "partly reproduced"),
    ([OPPOSITE, WITHIN_NOISE], "not reproduced"),
    ([OPPOSITE], "not reproduced"),
    ([WITHIN_NOISE, WITHIN_NOISE], "inconclusive at this scale"),
    ([NOT_REACHED], "inconclusive at this scale"),
    ([WITHIN_NOISE, NOT_REACHED], "inconclusive at this scale"),
    ([NOT_TESTABLE], "not testable here"),
])
def test_decide(statuses, verdict):
    claims = [SubClaim(f"claim {i}", s, "evidence") for i, s in enumerate(statuses)]
    word, reason = decide(claims)
    assert word == verdict
    assert all(c.name in reason.lower() for c in claims)


def test_a_missing_mechanism_forbids_reproduced():
    claims = [SubClaim("deeper plain nets train worse", HOLDS, "e"),
              SubClaim("gradients vanish", OPPOSITE, "e", mechanism=True)]
    assert decide(claims)[0] == "partly reproduced"


def test_converged():
    lrs = [0.1] * 15 + [0.01] * 3 + [0.0]
    flat = [50 - 2 * i for i in range(14)] + [19.8, 19.5, 19.2, 19.0, 18.9]
    assert converged(flat, lrs, planned_epochs=19, base_lr=0.1).converged
    still_falling = [50 - 2 * i for i in range(19)]
    assert "still fell" in converged(still_falling, lrs, planned_epochs=19, base_lr=0.1).why
    assert "capped" in converged(flat[:10], lrs[:10], planned_epochs=19, base_lr=0.1).why
    assert "not decayed" in converged(flat, [0.1] * 19, planned_epochs=19, base_lr=0.1).why


def test_spread_and_sampling_error():
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)
    assert spread([4.0]).sd is None
    assert sampling_error(50, 1000) == pytest.approx(100 * math.sqrt(0.5 / 1000))
