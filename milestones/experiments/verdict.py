"""The one way an experiment decides its verdict: seeds, an honest test of noise, sub-claims, and five words.

Every experiment declares the sub-claims its paper makes (the paper's stated mechanism among them) and turns its
numbers into one :class:`SubClaim` each; :func:`decide` turns those into the verdict. A difference between two arms
counts only when a t-test over the seeds says so at 95% (:func:`compare`): paired by seed where the arms share data
and initialisation, pooled otherwise. At three seeds "two standard errors" would call about one tie in eight a
finding; the t-test's critical value (4.30 for a paired test at three seeds) does not. The test set's sampling error
may be shown beside it (:func:`sampling_error`), never instead of it.

The five verdicts:

- ``reproduced``: every sub-claim holds, in the paper's direction and beyond noise;
- ``partly reproduced``: some hold, the others do not or are inconclusive (the report names which);
- ``not reproduced``: none holds and at least one goes the opposite way beyond noise;
- ``inconclusive at this scale``: nothing beyond noise either way, or the claim's regime was not reached (training
  never got near the paper's threshold, or a run was capped before it :func:`converged`);
- ``not testable here``: the claim needs data or hardware we do not have.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive at this scale", "not testable here")

HOLDS = "holds"
OPPOSITE = "opposite"
WITHIN_NOISE = "within noise"
NOT_REACHED = "regime not reached"
NOT_TESTABLE = "not testable here"
STATUSES = (HOLDS, OPPOSITE, WITHIN_NOISE, NOT_REACHED, NOT_TESTABLE)

CONFIDENCE = 0.95
CONVERGED_POINTS = 2.0
"""A run has converged when the last quarter of its training improved training error by less than this (points)."""


@dataclass(frozen=True)
class Spread:
    """One arm's values over its seeds: mean, seed standard deviation (None for one seed) and count."""

    mean: float
    sd: float | None
    n: int

    def describe(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f}" + (f" ± {self.sd:.{digits}f}" if self.sd is not None else "")


def spread(values: Sequence[float]) -> Spread:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("spread() needs at least one value")
    return Spread(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` over seeds: the mean difference ``a - b``, its 95% confidence interval and the t-test's
    p-value (None where one seed leaves the noise unmeasured)."""

    diff: float
    low: float | None
    high: float | None
    p: float | None
    n: int
    paired: bool

    @property
    def measured(self) -> bool:
        return self.p is not None

    @property
    def beyond_noise(self) -> bool:
        return self.p is not None and self.p < 1 - CONFIDENCE

    def describe(self, unit: str = " points", digits: int = 1) -> str:
        """``+3.1 points (95% CI +0.4 to +5.8, paired t-test over 3 seeds, p = 0.04)``."""
        if not self.measured:
            return f"{self.diff:+.{digits}f}{unit} (one seed: the seed noise is not measured)"
        test = "paired t-test" if self.paired else "t-test"
        return (f"{self.diff:+.{digits}f}{unit} (95% CI {self.low:+.{digits}f} to {self.high:+.{digits}f}, {test} over "
                f"{self.n} seeds, p = {self.p:.2g})")


def compare(a: Sequence[float], b: Sequence[float], *, paired: bool) -> Comparison:
    """``a`` against ``b`` by a two-sided t-test at 95%: paired (``a[i]`` and ``b[i]`` share seed ``i``: the same data
    order and initialisation) or pooled-variance (independent arms). With fewer than two seeds on a side, or two
    identical samples, the difference is returned without a test (``p`` None), which no verdict counts as beyond
    noise."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if not a or not b:
        raise ValueError("compare() needs values on both sides")
    if paired:
        if len(a) != len(b):
            raise ValueError(f"a paired comparison needs as many values on each side, got {len(a)} and {len(b)}")
        d = [x - y for x, y in zip(a, b)]
        n, diff = len(d), statistics.fmean(d)
        if n < 2:
            return Comparison(diff, None, None, None, n, True)
        se, dof = statistics.stdev(d) / math.sqrt(n), n - 1
    else:
        n, diff = min(len(a), len(b)), statistics.fmean(a) - statistics.fmean(b)
        if len(a) < 2 or len(b) < 2:
            return Comparison(diff, None, None, None, n, False)
        dof = len(a) + len(b) - 2
        pooled = ((len(a) - 1) * statistics.variance(a) + (len(b) - 1) * statistics.variance(b)) / dof
        se = math.sqrt(pooled * (1 / len(a) + 1 / len(b)))
    if se == 0:  # identical samples: nothing to test (a difference of exactly zero, or a constant shift)
        return Comparison(diff, diff, diff, None if diff == 0 else 0.0, n, paired)
    t = diff / se
    p = 2 * float(stats.t.sf(abs(t), dof))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * se
    return Comparison(diff, diff - half, diff + half, p, n, paired)


def sampling_error(error_pct: float, n_images: int) -> float:
    """One standard error, in points, of the difference between two test errors near ``error_pct`` % measured on
    ``n_images`` each: what the test set's sampling alone contributes (shown beside the seed test, never instead)."""
    p = min(max(error_pct / 100, 0.0), 1.0)
    return 100 * math.sqrt(2 * p * (1 - p) / n_images)


@dataclass(frozen=True)
class SubClaim:
    """One thing the paper claims, and how it fared here. ``mechanism`` marks the paper's stated reason (a report
    cannot say *reproduced* where its numbers show the mechanism absent: every sub-claim must hold)."""

    name: str
    status: str
    evidence: str
    mechanism: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def line(self) -> str:
        return f"{self.name}{' (the paper’s mechanism)' if self.mechanism else ''}: {self.status} — {self.evidence}"


def judge(name: str, comparison: Comparison, *, expect: int, evidence: str, mechanism: bool = False,
          reached: bool = True, why_not_reached: str = "") -> SubClaim:
    """The sub-claim ``name`` that ``comparison``'s difference has the sign ``expect`` (+1 or -1) beyond noise.

    ``reached`` False (the claim's regime was not reached: a threshold never crossed, a capped run) makes it
    *regime not reached* whatever the numbers say, with ``why_not_reached`` as its evidence."""
    if expect not in (1, -1):
        raise ValueError("expect is +1 (a > b) or -1 (a < b)")
    if not reached:
        return SubClaim(name, NOT_REACHED, why_not_reached or evidence, mechanism)
    if comparison.beyond_noise:
        status = HOLDS if comparison.diff * expect > 0 else OPPOSITE
    else:
        status = WITHIN_NOISE
    return SubClaim(name, status, evidence, mechanism)


def decide(claims: Sequence[SubClaim]) -> tuple[str, str]:
    """The verdict word and one sentence naming what held and what did not (see the module docstring)."""
    if not claims:
        return "not testable here", "The experiment measured no sub-claim."
    by = {s: [c.name for c in claims if c.status == s] for s in STATUSES}
    testable = [c for c in claims if c.status != NOT_TESTABLE]

    def named(status: str, verb: str) -> str:
        return f"{_join(by[status])} {verb}" if by[status] else ""

    if not testable:
        return "not testable here", f"{_join(by[NOT_TESTABLE])} cannot be tested here."
    if len(by[HOLDS]) == len(claims):
        return "reproduced", f"Every sub-claim holds beyond seed noise: {_join(by[HOLDS])}."
    if by[HOLDS]:
        rest = "; ".join(x for x in (named(OPPOSITE, "did not hold"), named(WITHIN_NOISE, "stayed within "
                                     "noise"), named(NOT_REACHED, "never reached its regime"),
                                     named(NOT_TESTABLE, "cannot be tested here")) if x)
        return "partly reproduced", f"{_join(by[HOLDS])} {'holds' if len(by[HOLDS]) == 1 else 'hold'}; {rest}."
    if by[OPPOSITE]:
        rest = "; ".join(x for x in (named(WITHIN_NOISE, "stayed within noise"),
                                     named(NOT_REACHED, "never reached its regime")) if x)
        return "not reproduced", (f"{_join(by[OPPOSITE])} did not hold (the opposite, beyond noise)"
                                  + (f"; {rest}" if rest else "") + ".")
    rest = "; ".join(x for x in (named(WITHIN_NOISE, "stayed within seed noise"),
                                 named(NOT_REACHED, "never reached the regime of the claim")) if x)
    return "inconclusive at this scale", f"{rest[0].upper()}{rest[1:]}."


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Convergence:
    converged: bool
    why: str


def converged(train_errors: Sequence[float], lrs: Sequence[float], *, planned_epochs: int, base_lr: float,
              points: float = CONVERGED_POINTS) -> Convergence:
    """Whether a run converged by the project's definition: its schedule ran to the end (``planned_epochs`` epoch
    records), its learning rate decayed (the last at most a tenth of ``base_lr``) and the last quarter of training
    improved training error (``train_errors``, %, one per epoch) by less than ``points``. A run that stopped at a
    threshold (``train.stop_at_train_error``) is judged by its threshold, not by this."""
    done = len(train_errors)
    if done < planned_epochs:
        return Convergence(False, f"capped after {done} of {planned_epochs} epochs")
    if not lrs or lrs[-1] > 0.1 * base_lr:
        last = lrs[-1] if lrs else float("nan")
        return Convergence(False, f"the learning rate ended at {last:.3g}, not decayed below a tenth of {base_lr:g}")
    quarter = max(1, done // 4)
    gain = train_errors[-quarter - 1] - train_errors[-1] if done > quarter else float("inf")
    if gain >= points:
        return Convergence(False, f"training error still fell {gain:.1f} points in the last quarter "
                                  f"({train_errors[-quarter - 1]:.1f}% -> {train_errors[-1]:.1f}%)")
    return Convergence(True, f"the last quarter improved training error by {gain:.1f} points "
                             f"(to {train_errors[-1]:.1f}%), the learning rate decayed to {lrs[-1]:.3g}")
