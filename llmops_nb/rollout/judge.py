"""A canary step's decision: the challenger against the champion over the same window.

Figures, as reported (each with its two-sided interval at ``rollout.confidence``,
:mod:`llmops_nb.evaluation.statistics`): each error rate (5xx answers) with Wilson's interval, the
difference challenger - champion with Newcombe's hybrid score interval for independent
proportions, each p95 latency with its order-statistic interval.

The rule, with ``max_error_rate`` = m, ``max_latency_p95_ratio`` = r, alpha = 1 - ``confidence``:

- **roll back** on evidence alone, at any number of calls (``min_requests`` gates the promotion
  only): when the challenger's error rate is shown above m *and* above the champion's, or its p95
  latency is shown above r times the champion's. "Shown" is a one-sided test per look at
  ``alpha_look`` = alpha / ``looks``, split between the two rules: the error rule rolls back when
  the exact binomial test of "rate <= m" (``scipy.stats.binomtest(k, n, m, alternative="greater")``,
  i.e. Clopper-Pearson's one-sided bound above m) and Fisher's exact test of "rate <= the
  champion's" (``scipy.stats.fisher_exact(alternative="greater")``, conditional on the window's
  errors: it needs no large champion sample; a champion with no calls cannot take the blame) both
  give p <= alpha_look / 2 (an intersection-union test: each at that level, so the pair is too;
  Berger, Technometrics 24, 1982, 295-300); the latency rule when the challenger's p95 one-sided
  lower bound is over r times the champion's one-sided upper bound (``scipy.stats.quantile_test``
  order statistics, each side at alpha_look / 4).
- **advance** when the challenger had at least ``min_requests`` calls, its error rate is at most
  m above the champion's (the difference's upper bound <= m; with no champion calls, Wilson's
  upper bound <= m), and its p95 is not shown over r times the champion's;
- otherwise **wait** for more traffic; a step still undecided after ``max_wait_s`` rolls back.

Repeated looks. The rollout reads the traffic every ``interval_s`` and judges each read, over
the step's window and over recent windows alone (:func:`watch`: the last 1, 2, 4, ... reads, so a
challenger that starts failing mid-step is not hidden by the step's healthy start). A test at
level alpha at every look rolls back a challenger as good as the champion far more often than
alpha: on a growing window five looks at a nominal 5% reject 14% of the time, ten 19%, a hundred
37% (Armitage, McPherson and Rowe, J. R. Stat. Soc. A 132, 1969, 235-244), and the recent
windows are nearly fresh samples, so their looks add up almost like independent tests (the old
rule, Wilson's two-sided bound and Newcombe's difference at 95% per look, rolled back a
challenger at the limit in 52-71% of seeded 30-read watches, ``tests/rollout/test_judge.py``).
The number of looks is fixed in advance by the config (:func:`looks`: the windows per read x
``ceil(max_wait_s / interval_s)`` reads x the watched steps) and each is tested at
alpha / looks (Bonferroni: the union bound needs no independence), so the chance that a rollout
rolls back, on evidence, a challenger within the limit or no worse than the champion is at most
alpha over all its looks. The price is evidence, growing with log(looks): a challenger failing 30%
of its calls against m = 0.05 (the champion failing none, 9 calls per challenger call) is rolled
back at its 10th call at a single look at 5%, its 30th at the default config's 840 looks
(``interval_s`` 10, ``max_wait_s`` 600, two watched steps), its 40th at 28,800 looks
(``interval_s`` 0.5). A bound alone is not evidence at small n: one failed call out of one has
Wilson's 95% lower bound 20.7%, over a 5% limit, which a challenger at exactly 5% shows 5% of the
time; the exact test's p is then 0.05. The promotion's looks are not corrected (two-sided
intervals at ``confidence`` per look, behind ``min_requests``): a challenger just over the limit
can advance more often than alpha / 2 over many looks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from llmops_nb.evaluation import statistics
from llmops_nb.rollout.traffic import Call

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.config.rollout import RolloutConfig

ADVANCE: Final = "advance"
WAIT: Final = "wait"
ROLLBACK: Final = "rollback"
Action = Literal["advance", "wait", "rollback"]


@dataclass(frozen=True)
class EntityFigures:
    """One served entity over a window: calls, 5xx answers, error rate and p95 latency with intervals."""

    name: str
    role: str  # champion | challenger
    requests: int
    errors: int
    error_rate: statistics.Estimate
    latency_p95_ms: statistics.Estimate

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_rate"] = self.error_rate.as_dict()
        out["latency_p95_ms"] = self.latency_p95_ms.as_dict()
        return out


@dataclass(frozen=True)
class Verdict:
    """What a step does now, why (one line with the figures), and the figures."""

    action: Action
    reason: str
    challenger: EntityFigures
    champion: EntityFigures
    diff: tuple[float, float, float]  # error rate challenger - champion, its interval
    evidence: ErrorEvidence | None = None  # the error rule's tests


@dataclass(frozen=True)
class ErrorEvidence:
    """The error rule's one-sided exact tests at one look: p-values and the level each must reach."""

    p_limit: float  # H0: challenger's rate <= max_error_rate (exact binomial)
    p_champion: float  # H0: challenger's rate <= champion's (Fisher's exact); NaN without champion calls
    alpha: float  # each p-value's level at this look: (1 - confidence) / looks / 2

    @property
    def rollback(self) -> bool:
        champion_ok = math.isnan(self.p_champion) or self.p_champion <= self.alpha
        return self.p_limit <= self.alpha and champion_ok


def recent_spans(read: int) -> list[int]:
    """The recent windows judged alone at a step's ``read``-th read, in reads: the last 1, 2, 4, ...
    reads, each shorter than the step's whole window (judged too). A geometric grid of lengths
    (as ADWIN's exponential histogram, Bifet and Gavalda, SDM 2007): whenever the challenger
    started failing, one window holds between half and all of the failing part and little else."""
    spans, span = [], 1
    while span < read:
        spans.append(span)
        span *= 2
    return spans


def looks(rollout: RolloutConfig) -> int:
    """The judgements a rollout makes at most, fixed by its config: ``ceil(max_wait_s / interval_s)``
    reads per watched step (a step stops at ``max_wait_s``; each step below 100 is watched), and at
    each read the step's window and its :func:`recent_spans`."""
    reads = math.ceil(rollout.max_wait_s / rollout.interval_s - 1e-9)
    watched = sum(1 for s in rollout.steps if s < 100)
    return max(1, (1 + len(recent_spans(reads))) * reads * watched)


def error_evidence(errors: int, requests: int, champion_errors: int, champion_requests: int, *,
                   max_error_rate: float, alpha: float) -> ErrorEvidence:  # fmt: skip
    """The error rule's two one-sided exact tests (module docstring); ``alpha`` is this rule's
    level at this look. No challenger calls: no evidence (p = 1)."""
    from scipy import stats

    if requests == 0:
        return ErrorEvidence(1.0, math.nan, alpha)
    p_limit = float(stats.binomtest(errors, requests, max_error_rate, alternative="greater").pvalue)
    p_champion = math.nan
    if champion_requests:
        table = [[errors, requests - errors], [champion_errors, champion_requests - champion_errors]]
        p_champion = float(stats.fisher_exact(table, alternative="greater").pvalue)
    return ErrorEvidence(p_limit, p_champion, alpha)


def _p95_bound(latencies: Sequence[float], side: str, alpha: float) -> float:
    """The one-sided ``side`` ("low" | "high") order-statistic bound of the p95 at level 1 - alpha
    (``scipy.stats.quantile_test``); NaN when too few calls reach that level."""
    import numpy as np
    from scipy import stats

    x = np.asarray(latencies, dtype=float)
    if len(x) == 0:
        return math.nan
    ci = stats.quantile_test(x, q=float(np.quantile(x, 0.95)), p=0.95).confidence_interval(1 - 2 * alpha)
    bound = float(ci.low if side == "low" else ci.high)
    return bound if math.isfinite(bound) else math.nan


def figures(calls: Sequence[Call], name: str, role: str, confidence: float) -> EntityFigures:
    """The figures of entity ``name`` among ``calls``."""
    mine = [c for c in calls if c.entity == name]
    errors = sum(c.failed for c in mine)
    latencies = [c.latency_ms for c in mine if not c.failed]
    return EntityFigures(
        name,
        role,
        len(mine),
        errors,
        statistics.proportion(errors, len(mine), confidence),
        statistics.quantile(latencies, 0.95, confidence),
    )


def newcombe_unpaired(a: statistics.Estimate, b: statistics.Estimate) -> tuple[float, float, float]:
    """``a - b`` of two independent proportions with Newcombe's hybrid score interval (his
    method 10, Statistics in Medicine 17, 1998, 873-890), from their Wilson intervals
    (:func:`llmops_nb.evaluation.statistics.proportion`); scipy has none for a difference."""
    diff = a.value - b.value
    low = diff - math.sqrt((a.value - a.ci_low) ** 2 + (b.ci_high - b.value) ** 2)
    high = diff + math.sqrt((a.ci_high - a.value) ** 2 + (b.value - b.ci_low) ** 2)
    return diff, max(-1.0, low), min(1.0, high)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def judge(
    calls: Sequence[Call],
    *,
    challenger: str,
    champion: str,
    min_requests: int,
    max_error_rate: float,
    max_latency_p95_ratio: float,
    confidence: float = 0.95,
    waited_s: float = 0.0,
    max_wait_s: float = math.inf,
    looks: int = 1,
) -> Verdict:
    """The step's decision over ``calls`` (see the module's rule); ``looks``: how many looks the
    rollout's false-rollback rate is spread over (:func:`looks`; 1 = this look alone at alpha)."""
    ch = figures(calls, challenger, "challenger", confidence)
    cp = figures(calls, champion, "champion", confidence)
    have_champion = cp.requests > 0
    if ch.requests and have_champion:
        diff = newcombe_unpaired(ch.error_rate, cp.error_rate)
    else:
        diff = (math.nan, math.nan, math.nan)
    alpha_look = (1 - confidence) / max(1, looks)
    evidence = error_evidence(ch.errors, ch.requests, cp.errors, cp.requests, max_error_rate=max_error_rate, alpha=alpha_look / 2)
    said = (
        f"challenger {challenger}: {ch.errors}/{ch.requests} errors ({_pct(ch.error_rate.value)}, "
        f"{confidence:.0%} CI {_pct(ch.error_rate.ci_low)}-{_pct(ch.error_rate.ci_high)}), champion {champion}: "
        f"{cp.errors}/{cp.requests} ({_pct(cp.error_rate.value)}); difference {_pct(diff[0])} "
        f"[{_pct(diff[1])}, {_pct(diff[2])}]; limit {_pct(max_error_rate)}"
    )
    tested = (
        f"; one-sided exact p {evidence.p_limit:.2g} over the limit, {evidence.p_champion:.2g} over the champion "
        f"(each <= {evidence.alpha:.2g} to roll back: {1 - confidence:g} over {looks} look{'s' * (looks != 1)}, 2 rules)"
    )

    def verdict(action: Action, why: str, more: str = "") -> Verdict:
        return Verdict(action, f"{why}: {said}{more}", ch, cp, diff, evidence)

    if evidence.rollback:
        return verdict(ROLLBACK, "error rate above the limit", tested)
    ch_p95, cp_p95 = ch.latency_p95_ms, cp.latency_p95_ms
    latencies = {e: [c.latency_ms for c in calls if c.entity == e and not c.failed] for e in (challenger, champion)}
    ch_low = _p95_bound(latencies[challenger], "low", alpha_look / 4)
    cp_high = _p95_bound(latencies[champion], "high", alpha_look / 4)
    if not math.isnan(ch_low) and not math.isnan(cp_high) and ch_low > max_latency_p95_ratio * cp_high:
        return Verdict(
            ROLLBACK,
            f"p95 latency above {max_latency_p95_ratio:g}x the champion's: challenger {ch_p95.value:.0f} ms "
            f"(one-sided bound {ch_low:.0f}), champion {cp_p95.value:.0f} ms (one-sided bound {cp_high:.0f}), "
            f"each at {alpha_look / 4:.2g} ({1 - confidence:g} over {looks} looks, 2 rules)",
            ch,
            cp,
            diff,
            evidence,
        )
    bound = diff[2] if have_champion else ch.error_rate.ci_high
    if ch.requests >= min_requests and bound <= max_error_rate:
        return verdict(ADVANCE, "within the limits")
    if waited_s >= max_wait_s:
        few = f" (fewer than min_requests {min_requests})" if ch.requests < min_requests else ""
        return verdict(ROLLBACK, f"undecided after max_wait_s {max_wait_s:g} s{few}")
    return verdict(WAIT, "waiting for more traffic", tested)


def watch(calls: Sequence[Call], *, read: int, interval_s: float, **judged: Any) -> Verdict:
    """The decision at a step's ``read``-th read: :func:`judge` over the step's window, and each of
    its :func:`recent_spans` alone (up to the newest call read: an inference table's rows land
    late), so a challenger that starts failing mid-step is not hidden by the step's healthy start.
    ``judged``: :func:`judge`'s keywords (``looks`` counting every window, :func:`looks`)."""
    verdict = judge(calls, **judged)
    if verdict.action == ROLLBACK or not calls:
        return verdict
    newest = max(c.at for c in calls)
    for span in recent_spans(read):
        since = newest - span * interval_s
        recent = judge([c for c in calls if c.at >= since], **{**judged, "waited_s": 0.0, "max_wait_s": math.inf})
        if recent.action == ROLLBACK:
            return replace(recent, reason=f"over the last {span * interval_s:g} s, {recent.reason}")
    return verdict
