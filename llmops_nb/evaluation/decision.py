"""The deployment decision: promote (a winner), keep (the champion stays) or inconclusive, with the reason.

The rule is the config's ``evaluation.decision`` (:class:`llmops_nb.config.project.DecisionConfig`):

- every threshold must hold at its interval's bound (a rate's lower bound >= its minimum, a
  latency's upper bound <= its maximum), not at the point estimate: a bound that straddles the
  threshold is inconclusive, an interval wholly on the wrong side fails;
- against the baseline on the same rows, the paired difference on ``primary`` with its
  interval at ``confidence``: ``non_inferiority`` promotes when the interval's worse end is
  above ``-margin`` and keeps when its better end is below it; ``superiority`` promotes when
  the worse end is above ``+margin`` and keeps when the better end is at or below it. The
  margin is absolute for a 0/1 metric and a fraction of the baseline's value otherwise. A
  lower-is-better metric (``error_rate``, latency) counts a decrease as a gain;
- never promote on too few rows (fewer than an exact paired test needs to reach the
  confidence at all, :func:`~llmops_nb.evaluation.statistics.min_rows`, or ``min_rows``), nor
  against a champion scored on other rows;
- a challenger that scores as the baseline on every row is kept out (nothing to gain);
- ``inconclusive`` says about how many rows would resolve the observed difference
  (:func:`~llmops_nb.evaluation.statistics.rows_to_resolve`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_nb.config.project import DecisionConfig, is_upper_bound
from llmops_nb.evaluation.statistics import Difference, Estimate, min_rows, rows_to_resolve

DECISION_ARTIFACT = "decision.json"
PROMOTE, KEEP, INCONCLUSIVE = "promote", "keep", "inconclusive"


@dataclass(frozen=True)
class Check:
    """One threshold of one candidate at its interval's bound: ``verdict`` pass, fail or unsure.

    ``bound`` is the interval's worse end for this threshold (the upper end for a maximum);
    ``low`` and ``high`` the interval (both the value for a figure without one).
    """

    candidate: str
    metric: str
    threshold: float
    direction: str  # "<=" or ">="
    value: float | None
    bound: float | None
    verdict: str
    low: float | None = None
    high: float | None = None

    def line(self) -> str:
        if self.value is None or math.isnan(self.value):
            return f"FAIL {self.candidate}: {self.metric} missing, needs {self.direction} {self.threshold:g}"
        shown = f"{self.value:.4g}"
        if self.low is not None and self.high is not None and self.low != self.high:
            shown += f" [{self.low:.4g}, {self.high:.4g}]"
        word = {"pass": "ok  ", "fail": "FAIL", "unsure": "??  "}[self.verdict]
        return f"{word} {self.candidate}: {self.metric} = {shown}, needs {self.direction} {self.threshold:g}"


def check_threshold(candidate: str, metric: str, threshold: float, value: Estimate | float | None) -> Check:
    """A threshold at the interval's bound: pass when the worse bound meets it, fail when the better one does not."""
    upper = is_upper_bound(metric)
    direction = "<=" if upper else ">="
    if value is None:
        return Check(candidate, metric, float(threshold), direction, None, None, "fail")
    if isinstance(value, Estimate):
        point, low, high = value.value, value.ci_low, value.ci_high
    else:
        point = low = high = float(value)
    if math.isnan(point):
        return Check(candidate, metric, float(threshold), direction, None, None, "fail")
    if math.isnan(low) or math.isnan(high):
        low = high = point
    worse, better = (high, low) if upper else (low, high)
    meets = (lambda x: x <= threshold) if upper else (lambda x: x >= threshold)
    verdict = "pass" if meets(worse) else "unsure" if meets(better) else "fail"
    return Check(candidate, metric, float(threshold), direction, point, worse, verdict, low, high)


@dataclass(frozen=True)
class Verdict:
    """One challenger against the baseline: pass, fail or unsure, why, and rows that might resolve it."""

    candidate: str
    verdict: str
    reason: str
    rows_needed: int | None = None
    gain: float | None = None  # the primary metric's improvement over the baseline (point)


@dataclass
class Decision:
    """What the evaluation decided: ``action`` promote / keep / inconclusive, the winner, the reason."""

    action: str
    winner: str | None
    reason: str
    rows: int
    rule: DecisionConfig
    checks: list[Check] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    rows_needed: int | None = None
    baseline: str | None = None

    @property
    def promote(self) -> bool:
        return self.action == PROMOTE

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "winner": self.winner,
            "reason": self.reason,
            "rows_needed": self.rows_needed,
            "baseline": self.baseline,
            "rule": self.rule.model_dump(),
            "checks": [c.__dict__ for c in self.checks],
            "verdicts": [v.__dict__ for v in self.verdicts],
        }

    def summary(self) -> dict[str, Any]:
        """What the evaluate step publishes as ``decision``: action, winner, reason, rows, rows_needed."""
        return {
            "action": self.action,
            "winner": self.winner or "",
            "reason": self.reason,
            "rows": self.rows,
            "rows_needed": self.rows_needed,
        }

    def paragraph(self) -> str:
        """The decision in one short paragraph (``llmops-nb run`` prints it)."""
        r = self.rule
        rule = f"{r.mode.replace('_', '-')} on {r.primary} (margin {r.margin:g}, confidence {r.confidence:g})"
        head = {
            PROMOTE: f"Decision: PROMOTE {self.winner}",
            KEEP: "Decision: KEEP" + (f" {self.baseline}" if self.baseline else " the champion"),
            INCONCLUSIVE: "Decision: INCONCLUSIVE",
        }[self.action]
        more = f" About {self.rows_needed} rows would resolve it." if self.rows_needed else ""
        return f"{head} ({self.rows} rows, {rule}): {self.reason}.{more}"


def _primary(name: str, diff: Difference | None, base_value: float | None, binary: bool, rule: DecisionConfig) -> Verdict:
    """``name`` against the baseline on the primary metric under ``rule``."""
    if diff is None or diff.n == 0 or math.isnan(diff.diff):
        return Verdict(name, "unsure", f"no paired {rule.primary} against the baseline")
    if diff.identical:
        return Verdict(
            name, "fail", f"{name} scores as {diff.baseline} on every one of the {diff.n} rows: nothing to gain", gain=0.0
        )
    lower_better = is_upper_bound(rule.primary)
    sign = -1.0 if lower_better else 1.0
    gain, worse, better = (
        sign * diff.diff,
        sign * (diff.ci_high if lower_better else diff.ci_low),
        sign * (diff.ci_low if lower_better else diff.ci_high),
    )
    margin = rule.margin if binary or base_value is None else rule.margin * abs(base_value)
    boundary = -margin if rule.mode == "non_inferiority" else margin
    shown = f"{rule.primary} {diff.diff:+.4g} [{diff.ci_low:+.4g}, {diff.ci_high:+.4g}] vs {diff.baseline}, p={diff.p_value:.3g}"
    if worse > boundary:
        what = "not worse than" if rule.mode == "non_inferiority" else "better than"
        return Verdict(name, "pass", f"{name} is {what} {diff.baseline} beyond the margin: {shown}", gain=gain)
    if (rule.mode == "non_inferiority" and better < boundary) or (rule.mode == "superiority" and better <= boundary):
        what = "worse than" if rule.mode == "non_inferiority" else "not better than"
        return Verdict(name, "fail", f"{name} is {what} {diff.baseline} by the margin: {shown}", gain=gain)
    need = rows_to_resolve(diff.n, gain, min(worse, better), max(worse, better), boundary)
    return Verdict(name, "unsure", f"the interval straddles the margin: {shown}", need, gain)


def decide(
    estimates: Mapping[str, Mapping[str, Estimate | float]],
    comparisons: Sequence[Difference],
    *,
    rule: DecisionConfig,
    thresholds: Mapping[str, float],
    challengers: Sequence[str],
    baseline: str | None,
    rows: int,
    rows_differ: str = "",
) -> Decision:
    """The decision over ``challengers`` (the candidates that may take the alias) against ``baseline``.

    ``estimates``: candidate -> metric -> estimate (or a plain value without interval).
    ``comparisons``: paired differences against ``baseline``. ``rows_differ``: why the
    baseline's rows are not these (then nothing is promoted).
    """
    checks = [
        check_threshold(name, metric, limit, estimates.get(name, {}).get(metric))
        for name in challengers
        for metric, limit in thresholds.items()
    ]

    def done(
        action: str, reason: str, winner: str | None = None, verdicts: Sequence[Verdict] = (), need: int | None = None
    ) -> Decision:
        return Decision(action, winner, reason, rows, rule, checks, list(verdicts), need, baseline)

    fewest = max(rule.min_rows or 0, min_rows(rule.confidence))
    if rows < fewest:
        return done(
            INCONCLUSIVE,
            f"{rows} rows are too few to decide at confidence {rule.confidence:g} (at least {fewest})",
            need=fewest,
        )
    if not challengers:
        return done(KEEP, "no candidate may take the alias (none is a registered version of the model)")
    if rows_differ:
        return done(INCONCLUSIVE, f"not compared with {baseline}: {rows_differ}")
    verdicts: list[Verdict] = []
    for name in challengers:
        mine = [c for c in checks if c.candidate == name]
        failed = [c for c in mine if c.verdict == "fail"]
        unsure = [c for c in mine if c.verdict == "unsure"]
        if failed:
            verdicts.append(Verdict(name, "fail", f"threshold not met: {failed[0].line()[5:]}"))
            continue
        if baseline is None or baseline == name:
            if unsure:
                verdicts.append(Verdict(name, "unsure", f"threshold not met at the interval's bound: {unsure[0].line()[5:]}"))
            else:
                met = f"all {len(mine)} thresholds met at the interval's bound" if mine else "no thresholds set"
                verdicts.append(Verdict(name, "pass", f"{met}, no champion to compare with"))
            continue
        diff = next((d for d in comparisons if d.candidate == name and d.metric == rule.primary), None)
        base = estimates.get(baseline, {}).get(rule.primary)
        binary = isinstance(base, Estimate) and base.method == "wilson"
        verdict = _primary(name, diff, base.value if isinstance(base, Estimate) else base, binary, rule)
        if verdict.verdict == "pass" and unsure:
            verdict = Verdict(name, "unsure", f"threshold not met at the interval's bound: {unsure[0].line()[5:]}")
        verdicts.append(verdict)
    passing = [v for v in verdicts if v.verdict == "pass"]
    if passing:
        best = max(passing, key=lambda v: -math.inf if v.gain is None else v.gain)
        return done(PROMOTE, best.reason, best.candidate, verdicts)
    unsure_ones = [v for v in verdicts if v.verdict == "unsure"]
    if unsure_ones:
        first = min(unsure_ones, key=lambda v: math.inf if v.rows_needed is None else v.rows_needed)
        return done(INCONCLUSIVE, first.reason, verdicts=verdicts, need=first.rows_needed)
    return done(KEEP, "; ".join(v.reason for v in verdicts), verdicts=verdicts)


def decision_record(
    decision: Decision,
    estimates: Mapping[str, Mapping[str, Estimate]],
    comparisons: Sequence[Difference],
    *,
    cost_per_1k: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """``decision.json``: candidates with their metrics and intervals, comparisons, the decision, rows."""
    return {
        "candidates": [
            {
                "name": name,
                "metrics": {m: e.as_dict() for m, e in metrics.items()},
                "cost_per_1k": (cost_per_1k or {}).get(name),
            }
            for name, metrics in estimates.items()
        ],
        "comparisons": [d.as_dict() for d in comparisons],
        "decision": decision.as_dict(),
        "rows": decision.rows,
    }


def write_decision(record: Mapping[str, Any], folder: Path) -> Path:
    """Write ``decision.json`` into ``folder``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DECISION_ARTIFACT
    path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
