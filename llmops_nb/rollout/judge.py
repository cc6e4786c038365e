"""A canary step's decision: the challenger against the champion over the same window.

Figures, as reported (each with its two-sided interval at ``rollout.confidence``,
:mod:`llmops_nb.evaluation.statistics`): each error rate (5xx answers) with Wilson's interval, the
difference challenger - champion with Newcombe's hybrid score interval for independent
proportions, each p95 latency with its order-statistic interval. The decision does not read those
intervals: it reads tests that stay valid however often the rollout looks.

The guarantee, with alpha = 1 - ``confidence``, over any number of reads (of any interval, stopped
whenever): a rollout rolls back, on errors, a challenger whose error rate is at most
``max_error_rate`` (m) or no higher than the champion's with probability at most alpha / 2; on
latency, one whose p95 is at most ``max_latency_p95_ratio`` (r) times the champion's with
probability at most alpha / 2 (so at most alpha in all); and it advances, at some step, a
challenger whose error rate is above m with probability at most alpha. (The traffic of a step is
taken as calls independent given their entity, as every rule below assumes.)

The tool: e-processes, tests by betting (Ville's inequality: a nonnegative supermartingale that
starts at 1 ever reaches 1 / a with probability at most a, at whatever time it is stopped;
Ramdas, Ruf, Larsson and Koolen, "Game-theoretic statistics and safe anytime-valid inference",
Statistical Science 38, 2023, 576-601). For k failures in n calls and a null rate p0, the
mixture likelihood ratio (Robbins' mixture SPRT; the always-valid p-values of Johari, Pekelis
and Walsh, "Always Valid Inference", arXiv 1512.04922, Operations Research 70, 2022, 1806-1821,
there with a normal mixture) with a uniform mixing density over the alternative side has a
closed form (:func:`mixture_e`): for "rate <= p0" against rates in [p0, 1],

    E = integral_{p0}^{1} p^k (1 - p)^(n - k) dp / ((1 - p0) p0^k (1 - p0)^(n - k))
      = B(k + 1, n - k + 1) P(Beta(k + 1, n - k + 1) > p0) / ((1 - p0) p0^k (1 - p0)^(n - k))

(scipy.special.betaln, betaincc), and for "rate >= p0" the same over [0, p0].
Each mixed ratio (p / p0)^k ((1 - p) / (1 - p0))^(n - k) with p on the alternative side is a
supermartingale under every rate of the null side, so E is too; ``min(1, 1 / E)`` is an
always-valid p-value. Wald's SPRT is the one-point mixture (a fixed alternative); the mixture
needs no guess of the bad rate. (Packages doing this: ``confseq``, ``expectation``, ``savvi`` on
PyPI, none in the venv; the closed form is a few lines of scipy.)

The rule:

- **roll back on errors** when both are shown: the challenger's rate above m (:func:`mixture_e`
  on its k of n), and above the champion's: of the window's failures, each is the challenger's
  with probability s p_ch / (s p_ch + (1 - s) p_cp) at a challenger traffic share s, at most s
  when p_ch <= p_cp, so the same e-process on the failures alone (the challenger's among all) with
  null rate s (the step's percent; a conditional binomial, needing no large champion sample;
exact when calls are routed at random with that share, close to it under the fake's smooth
round robin). An
  intersection-union test: under either null, its own e-process must cross, so the pair is at
  the level of each (Berger, Technometrics 24, 1982, 295-300). A step is judged over its whole
  window and over recent windows (:func:`watch`: those starting 1, 2, 4, ... reads back, so a
  challenger that starts failing mid-step is not hidden by the step's healthy start); the window
  starting at read j of the step (0: the whole step) is one e-process, tested at the level
  alpha / 2 / steps x w_j with w_j = 1 / ((j + 1)(j + 2)), which sum to 1 over j = 0, 1, 2, ...:
  by Ville and the union bound the false-rollback rate over every window, every read and every
  watched step is at most alpha / 2, with no horizon. The price: a change j reads into the step
  needs log((j + 1)(j + 2)) more evidence than one at its start.
- **roll back on latency** when the challenger's p95 one-sided lower bound is over r times the
  champion's one-sided upper bound (``scipy.stats.quantile_test`` order statistics). Quantiles
  have no simple e-process: this rule keeps the Bonferroni split, each bound at
  alpha / 4 / :func:`looks` (looks fixed by the config: the windows per read x
  ``ceil(max_wait_s / interval_s)`` reads x the watched steps), sound by the union bound at a
  cost of log(looks) in evidence.
- **advance** when the challenger had at least ``min_requests`` calls, its error rate is shown
  at most m (:func:`mixture_e` of "rate >= m", always-valid p <= alpha / steps over the step's
  window), and its p95 is not shown over r times the champion's;
- otherwise **wait** for more traffic; a step still undecided after ``max_wait_s`` rolls back.

What it costs, in challenger calls (m = 0.05, confidence 0.95, two watched steps): a challenger
failing 30% of its calls (the champion none) is rolled back at its 20th call when it fails from
the step's start (17th at a single rule at 5%), its ~27th when it starts failing two reads in
(the Bonferroni rule over the 28,800 looks of ``interval_s`` 0.5 needed 40, over the default
840 looks 30); one failing every call at its 3rd. A challenger failing none advances after 105
calls at m = 0.05 (88 at one watched step; 19 at m = 0.25): showing a rate below 5% takes that
many, where the old rule's per-look intervals advanced after ``min_requests`` without that
guarantee.
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
Side = Literal["above", "below"]


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
    """The error rule's always-valid p-values (``min(1, 1 / E)``, :func:`mixture_e`) at one look
    over one window, and the level each must reach there."""

    p_limit: float  # H0: challenger's rate <= max_error_rate
    p_champion: float  # H0: challenger's rate <= champion's (on the failures); NaN when untestable
    alpha: float  # each p-value's level in this window: (1 - confidence) / 2 / steps x window weight
    p_within: float = math.nan  # H0: challenger's rate >= max_error_rate (the promotion's test)

    @property
    def rollback(self) -> bool:
        champion_ok = math.isnan(self.p_champion) or self.p_champion <= self.alpha
        return self.p_limit <= self.alpha and champion_ok


def log_mixture_e(k: Any, n: Any, p0: float, side: Side) -> Any:
    """log :func:`mixture_e`, elementwise over arrays of ``k`` and ``n`` (numpy), for 0 < p0 < 1."""
    import numpy as np
    from scipy import special

    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    a, b = k + 1, n - k + 1
    with np.errstate(divide="ignore"):  # a tail below 1e-308: log 0, E = 0 (never shown), as it should
        tail = np.log(special.betaincc(a, b, p0) if side == "above" else special.betainc(a, b, p0))
    width = 1 - p0 if side == "above" else p0
    return special.betaln(a, b) + tail - math.log(width) - k * math.log(p0) - (n - k) * math.log1p(-p0)


def mixture_e(k: int, n: int, p0: float, side: Side) -> float:
    """The uniform-mixture e-value of k successes in n Bernoulli trials against "rate <= p0"
    (``side="above"``: the mixture over rates in [p0, 1]) or "rate >= p0" (``"below"``: over
    [0, p0]); module docstring. A nonnegative supermartingale under the null, 1 at n = 0."""
    if not 0 <= k <= n:
        raise ValueError(f"k: {k} outside 0..n ({n})")
    if n == 0:
        return 1.0
    if (side == "above" and p0 >= 1) or (side == "below" and p0 <= 0):
        return 0.0  # the alternative side is empty: nothing is ever shown
    if side == "above" and p0 <= 0:
        return math.inf if k else 1.0 / (n + 1)  # one failure disproves a rate of 0
    if side == "below" and p0 >= 1:
        return math.inf if k < n else 1.0 / (n + 1)
    return math.exp(min(float(log_mixture_e(k, n, p0, side)), 700.0))


def always_valid_p(k: int, n: int, p0: float, side: Side) -> float:
    """``min(1, 1 / mixture_e)``: P(it is ever <= a | null) <= a, at every look."""
    e = mixture_e(k, n, p0, side)
    return 1.0 if e <= 1 else 1.0 / e


def window_weight(start_read: int) -> float:
    """The share of the error rule's level given to the window that starts ``start_read`` reads
    into the step (0: the whole step): 1 / ((j + 1)(j + 2)), summing to 1 over j >= 0."""
    return 1.0 / ((start_read + 1) * (start_read + 2))


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


def watched_steps(rollout: RolloutConfig) -> int:
    """The steps a rollout watches (each below 100): its error rates are split over them."""
    return max(1, sum(1 for s in rollout.steps if s < 100))


def looks(rollout: RolloutConfig) -> int:
    """The latency rule's looks at most, fixed by its config: ``ceil(max_wait_s / interval_s)``
    reads per watched step (a step stops at ``max_wait_s``), and at each read the step's window
    and its :func:`recent_spans`."""
    reads = math.ceil(rollout.max_wait_s / rollout.interval_s - 1e-9)
    return max(1, (1 + len(recent_spans(reads))) * reads * watched_steps(rollout))


def error_evidence(errors: int, requests: int, champion_errors: int, champion_requests: int, *,
                   max_error_rate: float, alpha: float, share: float | None = None) -> ErrorEvidence:  # fmt: skip
    """The error rule's always-valid p-values (module docstring); ``alpha``: this window's level.
    ``share``: the challenger's traffic share (the step's percent / 100); None: the window's
    observed share (a plug-in: exact only when it equals the routed share). The champion test
    is untestable (NaN) when the share is 0 or 1."""
    p_limit = always_valid_p(errors, requests, max_error_rate, "above")
    p_within = always_valid_p(errors, requests, max_error_rate, "below")
    calls = requests + champion_requests
    s = share if share is not None else (requests / calls if calls else math.nan)
    p_champion = math.nan
    if 0 < s < 1:
        p_champion = always_valid_p(errors, errors + champion_errors, s, "above")
    return ErrorEvidence(p_limit, p_champion, alpha, p_within)


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
    steps: int = 1,
    start_read: int = 0,
    share: float | None = None,
) -> Verdict:
    """The step's decision over ``calls`` (see the module's rule). ``steps``: the watched steps
    the error rates are split over (:func:`watched_steps`); ``start_read``: the read of the step
    this window starts at (0: the whole step; :func:`window_weight`); ``looks``: the latency
    rule's looks (:func:`looks`); ``share``: the challenger's traffic share (:func:`error_evidence`).
    Only the whole step (``start_read`` 0) can advance."""
    ch = figures(calls, challenger, "challenger", confidence)
    cp = figures(calls, champion, "champion", confidence)
    have_champion = cp.requests > 0
    if ch.requests and have_champion:
        diff = newcombe_unpaired(ch.error_rate, cp.error_rate)
    else:
        diff = (math.nan, math.nan, math.nan)
    alpha = 1 - confidence
    steps = max(1, steps)
    level = alpha / 2 / steps * window_weight(start_read)
    evidence = error_evidence(ch.errors, ch.requests, cp.errors, cp.requests, max_error_rate=max_error_rate, alpha=level,
                              share=share)  # fmt: skip
    said = (
        f"challenger {challenger}: {ch.errors}/{ch.requests} errors ({_pct(ch.error_rate.value)}, "
        f"{confidence:.0%} CI {_pct(ch.error_rate.ci_low)}-{_pct(ch.error_rate.ci_high)}), champion {champion}: "
        f"{cp.errors}/{cp.requests} ({_pct(cp.error_rate.value)}); difference {_pct(diff[0])} "
        f"[{_pct(diff[1])}, {_pct(diff[2])}]; limit {_pct(max_error_rate)}"
    )
    tested = (
        f"; always-valid p {evidence.p_limit:.2g} over the limit, {evidence.p_champion:.2g} over the champion "
        f"(each <= {evidence.alpha:.2g} to roll back: {alpha:g} / 2 rules / {steps} step{'s' * (steps != 1)}"
        f" x window weight 1/{round(1 / window_weight(start_read))})"
    )

    def verdict(action: Action, why: str, more: str = "") -> Verdict:
        return Verdict(action, f"{why}: {said}{more}", ch, cp, diff, evidence)

    if evidence.rollback:
        return verdict(ROLLBACK, "error rate above the limit", tested)
    ch_p95, cp_p95 = ch.latency_p95_ms, cp.latency_p95_ms
    latencies = {e: [c.latency_ms for c in calls if c.entity == e and not c.failed] for e in (challenger, champion)}
    bound_alpha = alpha / 4 / max(1, looks)
    ch_low = _p95_bound(latencies[challenger], "low", bound_alpha)
    cp_high = _p95_bound(latencies[champion], "high", bound_alpha)
    if not math.isnan(ch_low) and not math.isnan(cp_high) and ch_low > max_latency_p95_ratio * cp_high:
        return Verdict(
            ROLLBACK,
            f"p95 latency above {max_latency_p95_ratio:g}x the champion's: challenger {ch_p95.value:.0f} ms "
            f"(one-sided bound {ch_low:.0f}), champion {cp_p95.value:.0f} ms (one-sided bound {cp_high:.0f}), "
            f"each at {bound_alpha:.2g} ({alpha:g} / 2 rules over {looks} look{'s' * (looks != 1)}, 2 bounds)",
            ch,
            cp,
            diff,
            evidence,
        )
    within = alpha / steps
    if start_read == 0 and ch.requests >= min_requests and evidence.p_within <= within:
        return verdict(
            ADVANCE, "within the limits", f"; always-valid p {evidence.p_within:.2g} of a rate >= the limit (<= {within:.2g})"
        )
    if waited_s >= max_wait_s:
        few = f" (fewer than min_requests {min_requests})" if ch.requests < min_requests else ""
        return verdict(ROLLBACK, f"undecided after max_wait_s {max_wait_s:g} s{few}")
    return verdict(WAIT, "waiting for more traffic", tested + f"; p {evidence.p_within:.2g} of a rate >= the limit")


def watch(calls: Sequence[Call], *, read: int, interval_s: float, start: float | None = None, **judged: Any) -> Verdict:
    """The decision at a step's ``read``-th read: :func:`judge` over the step's window, and over
    each recent window alone, starting :func:`recent_spans` reads back, so a challenger that
    starts failing mid-step is not hidden by the step's healthy start. ``start``: the step's
    start (the clock of the calls): the recent windows start on its read grid, start + j x
    ``interval_s`` for read j (each window one e-process, :func:`window_weight`); without it, j
    x ``interval_s`` before the newest call read (an inference table's rows land late; not on a
    fixed grid, so only approximately at the level). ``judged``: :func:`judge`'s keywords."""
    verdict = judge(calls, **judged)
    if verdict.action == ROLLBACK or not calls:
        return verdict
    newest = max(c.at for c in calls)
    for span in recent_spans(read):
        j = read - span
        since = start + j * interval_s if start is not None else newest - span * interval_s
        recent = judge([c for c in calls if c.at >= since],
                       **{**judged, "waited_s": 0.0, "max_wait_s": math.inf, "start_read": j})  # fmt: skip
        if recent.action == ROLLBACK:
            return replace(recent, reason=f"over the last {span * interval_s:g} s, {recent.reason}")
    return verdict
