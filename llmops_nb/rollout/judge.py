"""A canary step's decision: the challenger against the champion over the same window.

Every figure carries its interval at ``rollout.confidence`` (:mod:`llmops_nb.evaluation.statistics`):
each error rate (5xx answers) with Wilson's interval, the difference challenger - champion with
Newcombe's hybrid score interval for independent proportions, each p95 latency with its
order-statistic interval. The rule, with ``max_error_rate`` = m and ``max_latency_p95_ratio`` = r:

- **roll back** when the challenger's error rate is above m (Wilson's lower bound > m) and above
  the champion's (the difference's lower bound > 0; a champion with no calls in the window cannot
  take the blame), or when its p95 latency is above r times the champion's (its lower bound over
  r times the champion's upper bound);
- **advance** when the challenger had at least ``min_requests`` calls, its error rate is at most
  m above the champion's (the difference's upper bound <= m; with no champion calls, Wilson's
  upper bound <= m), and its p95 is not shown over r times the champion's;
- otherwise **wait** for more traffic; a step still undecided after ``max_wait_s`` rolls back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from llmops_nb.evaluation import statistics
from llmops_nb.rollout.traffic import Call

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
) -> Verdict:
    """The step's decision over ``calls`` (see the module's rule)."""
    ch = figures(calls, challenger, "challenger", confidence)
    cp = figures(calls, champion, "champion", confidence)
    have_champion = cp.requests > 0
    if ch.requests and have_champion:
        diff = newcombe_unpaired(ch.error_rate, cp.error_rate)
    else:
        diff = (math.nan, math.nan, math.nan)
    said = (
        f"challenger {challenger}: {ch.errors}/{ch.requests} errors ({_pct(ch.error_rate.value)}, "
        f"{confidence:.0%} CI {_pct(ch.error_rate.ci_low)}-{_pct(ch.error_rate.ci_high)}), champion {champion}: "
        f"{cp.errors}/{cp.requests} ({_pct(cp.error_rate.value)}); difference {_pct(diff[0])} "
        f"[{_pct(diff[1])}, {_pct(diff[2])}]; limit {_pct(max_error_rate)}"
    )

    def verdict(action: Action, why: str) -> Verdict:
        return Verdict(action, f"{why}: {said}", ch, cp, diff)

    over = ch.requests > 0 and ch.error_rate.ci_low > max_error_rate
    if over and (not have_champion or diff[1] > 0):
        return verdict(ROLLBACK, "error rate above the limit")
    ch_p95, cp_p95 = ch.latency_p95_ms, cp.latency_p95_ms
    slow = (
        not math.isnan(ch_p95.ci_low)
        and not math.isnan(cp_p95.ci_high)
        and ch_p95.ci_low > max_latency_p95_ratio * cp_p95.ci_high
    )
    if slow:
        return Verdict(
            ROLLBACK,
            f"p95 latency above {max_latency_p95_ratio:g}x the champion's: challenger {ch_p95.value:.0f} ms "
            f"(CI {ch_p95.ci_low:.0f}-{ch_p95.ci_high:.0f}), champion {cp_p95.value:.0f} ms "
            f"(CI {cp_p95.ci_low:.0f}-{cp_p95.ci_high:.0f})",
            ch,
            cp,
            diff,
        )
    bound = diff[2] if have_champion else ch.error_rate.ci_high
    if ch.requests >= min_requests and bound <= max_error_rate:
        return verdict(ADVANCE, "within the limits")
    if waited_s >= max_wait_s:
        few = f" (fewer than min_requests {min_requests})" if ch.requests < min_requests else ""
        return verdict(ROLLBACK, f"undecided after max_wait_s {max_wait_s:g} s{few}")
    return verdict(WAIT, "waiting for more traffic")
