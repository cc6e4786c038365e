"""Promotion: gate metrics on thresholds, compare with the champion, move the alias.

Threshold directions follow :func:`llmops_nb.config.is_upper_bound`: a metric ending in
``_ms`` or ``_seconds``, or a lower-is-better name such as ``error_rate``, must be <= its
threshold; every other metric must be >= its threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmops_nb.config.project import is_upper_bound
from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

EVAL_RUN_TAG = "llmops_nb.eval_run_id"


def _ok(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass(frozen=True)
class GateCheck:
    """One threshold: ``direction`` is ``<=`` (upper bound) or ``>=`` (lower bound)."""

    metric: str
    value: float | None
    threshold: float
    direction: str
    ok: bool
    shortfall: float

    def line(self) -> str:
        shown = "missing" if not _ok(self.value) else f"{self.value:.4g}"
        if self.ok:
            return f"ok   {self.metric} = {shown} {self.direction} {self.threshold:g}"
        how = "over" if self.direction == "<=" else "short"
        by = f" ({how} by {self.shortfall:.4g})" if _ok(self.value) else ""
        return f"FAIL {self.metric} = {shown}, needs {self.direction} {self.threshold:g}{by}"


@dataclass(frozen=True)
class GateDecision:
    """Whether every threshold is met, and each check."""

    passed: bool
    checks: list[GateCheck]

    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> list[str]:
        """One line per threshold, saying which metric fell short and by how much."""
        if not self.checks:
            return ["no thresholds set: the gate passes"]
        return [c.line() for c in self.checks]


def gate(metrics: Mapping[str, float], thresholds: Mapping[str, float]) -> GateDecision:
    """Check ``metrics`` against ``thresholds``; a threshold on an unknown metric is a ConfigError."""
    checks = []
    for metric, threshold in thresholds.items():
        if metric not in metrics:
            raise ConfigError(f"thresholds.{metric}", metric, f"known metrics: {', '.join(sorted(metrics))}")
        value = metrics[metric]
        value = None if value is None else float(value)
        upper = is_upper_bound(metric)
        if not _ok(value):
            ok, shortfall = False, math.inf
        else:
            shortfall = max(0.0, value - threshold) if upper else max(0.0, threshold - value)
            ok = value <= threshold if upper else value >= threshold
        checks.append(GateCheck(metric, value, float(threshold), "<=" if upper else ">=", ok, shortfall))
    return GateDecision(all(c.ok for c in checks), checks)


@dataclass(frozen=True)
class ComparisonRow:
    metric: str
    champion: float | None
    candidate: float | None
    delta: float | None
    ok: bool


@dataclass(frozen=True)
class Comparison:
    """Candidate vs champion on each compared metric, within ``margin``."""

    rows: list[ComparisonRow]
    margin: float
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def table(self) -> pd.DataFrame:
        """Side by side: metric, champion, candidate, delta, ok."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows], columns=["metric", "champion", "candidate", "delta", "ok"])

    def summary(self) -> list[str]:
        lines = []
        for r in self.rows:
            if r.champion is None:
                lines.append(f"ok   {r.metric}: the champion has no value to compare with")
            elif r.ok:
                lines.append(f"ok   {r.metric} = {r.candidate:.4g} vs champion {r.champion:.4g}")
            else:
                lines.append(
                    f"FAIL {r.metric} = {r.candidate:.4g} trails champion {r.champion:.4g} "
                    f"by {abs(r.delta or 0):.4g} (margin {self.margin:g})"
                )
        return lines + self.notes


def compare(
    candidate_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float],
    margin: float,
    metrics: Sequence[str] = ("contains_match", "exact_match"),
    *,
    candidate_digest: str | None = None,
    champion_digest: str | None = None,
) -> Comparison:
    """The candidate is ok on a metric when at least as good as the champion within ``margin``.

    Higher-is-better metrics (match rates) allow an absolute ``margin``; lower-is-better
    metrics (latency, error_rate) allow ``margin`` as a fraction of the champion's value.
    """
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not 0 <= margin <= 1:
        raise ConfigError("margin", margin, "expected a number between 0 and 1")
    rows = []
    for metric in metrics:
        if metric not in candidate_metrics:
            raise ConfigError("compare metric", metric, f"known metrics: {', '.join(sorted(candidate_metrics))}")
        cand = float(candidate_metrics[metric])
        champ = champion_metrics.get(metric)
        if champ is None or not _ok(float(champ)):
            rows.append(ComparisonRow(metric, None, cand, None, True))
            continue
        champ = float(champ)
        ok = cand <= champ * (1 + margin) if is_upper_bound(metric) else cand >= champ - margin
        rows.append(ComparisonRow(metric, champ, cand, cand - champ, _ok(cand) and ok))
    notes = []
    if candidate_digest and champion_digest and candidate_digest != champion_digest:
        notes.append("note: the champion was evaluated on a different dataset")
    return Comparison(rows, float(margin), notes)


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: list[str]


def decide(gate_decision: GateDecision, comparison: Comparison | None) -> PromotionDecision:
    """Promote only when the gate passes and the candidate is not worse than the champion."""
    reasons = [c.line() for c in gate_decision.failures()]
    if comparison is not None:
        reasons += [line for line, r in zip(comparison.summary(), comparison.rows, strict=False) if not r.ok]
    if reasons:
        return PromotionDecision(False, reasons)
    passed = [f"all {len(gate_decision.checks)} thresholds met"] if gate_decision.checks else ["no thresholds set"]
    versus = (
        ["no champion to compare with"]
        if comparison is None
        else [f"at least as good as the champion within margin {comparison.margin:g}"]
    )
    return PromotionDecision(True, passed + versus + (comparison.notes if comparison else []))


def _client(tracking_uri: str | None, registry_uri: str | None) -> Any:
    from llmops_nb.tracking.client import mlflow_client

    return mlflow_client(tracking_uri, registry_uri or tracking_uri)


#: the evaluation run's tags that carry the decision (written by :func:`record_decision`; the
#: model's name and version by :mod:`llmops_nb.evaluation.orchestrate`)
TAG_PROMOTED = "llmops_nb.promoted"
TAG_ALIAS = "llmops_nb.promote_alias"
TAG_CANDIDATE = "llmops_nb.candidate_version"
TAG_DECISION = "llmops_nb.decision"
TAG_MODEL_NAME = "llmops_nb.model_name"
TAG_MODEL_VERSION = "llmops_nb.model_version"


def record_decision(
    run_id: str,
    decision: PromotionDecision,
    *,
    alias: str,
    version: str | None,
    tracking_uri: str | None = None,
) -> None:
    """Write the decision as tags on the evaluation run."""
    client = _client(tracking_uri, None)
    client.set_tag(run_id, TAG_PROMOTED, str(decision.promote).lower())
    client.set_tag(run_id, TAG_ALIAS, alias)
    if version is not None:
        client.set_tag(run_id, TAG_CANDIDATE, str(version))
    client.set_tag(run_id, TAG_DECISION, "; ".join(decision.reasons)[:4900])


def decision_report(
    run_id: str, thresholds: dict[str, float], default_alias: str, tracking_uri: str | None, registry_uri: str | None
) -> list[str]:
    """The gate's decision as 04_evaluate shows it, read back from MLflow: each threshold with the
    run's value and ok/FAIL, the decision the run's tags record, and the version the alias points
    to now (the registry)."""
    from llmops_nb.models.registry import get_version_by_alias

    run = _client(tracking_uri, registry_uri).get_run(run_id)
    metrics = {**dict.fromkeys(thresholds), **run.data.metrics}  # a missing metric: a FAIL line, not an error
    tags = run.data.tags
    lines = ["Gate:", *(f"  {line}" for line in gate(metrics, thresholds).summary())]
    model = tags.get(TAG_MODEL_NAME)
    version = tags.get(TAG_CANDIDATE) or tags.get(TAG_MODEL_VERSION)
    alias = tags.get(TAG_ALIAS) or default_alias
    target_name = f"{model} version {version}" if model and version else "this model"
    reasons = [r for r in (tags.get(TAG_DECISION) or "").split("; ") if r]
    if tags.get(TAG_PROMOTED) == "true":
        lines.append(f"PROMOTED: alias '{alias}' -> {target_name}")
    elif reasons[:1] == ["not applied"]:
        reasons = reasons[1:]
        lines.append(f"promotion allowed, but not applied (promote=False or no version) for {target_name}")
    else:
        lines.append(f"NOT promoted: {target_name} keeps its aliases")
    lines += [f"  {r}" for r in reasons]
    if model:
        now = get_version_by_alias(model, alias, tracking_uri=tracking_uri, registry_uri=registry_uri)
        lines.append(f"alias '{alias}' of {model} now points to " + (f"version {now}" if now else "no version (not set yet)"))
    return lines


def promote(
    model_name: str,
    version: str | int,
    *,
    alias: str = "champion",
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    run_id: str | None = None,
    decision: PromotionDecision | None = None,
) -> None:
    """Move ``alias`` to ``version``; link the version to its eval run and tag the run."""
    client = _client(tracking_uri, registry_uri)
    client.set_registered_model_alias(model_name, alias, str(version))
    if run_id:
        client.set_model_version_tag(model_name, str(version), EVAL_RUN_TAG, run_id)
        decision = decision or PromotionDecision(True, ["promoted by hand"])
        record_decision(run_id, decision, alias=alias, version=str(version), tracking_uri=tracking_uri)


@dataclass(frozen=True)
class Champion:
    """The version an alias points at and the metrics of the evaluation that promoted it."""

    version: str
    run_id: str
    metrics: dict[str, float]
    dataset_digest: str | None


def find_champion(
    model_name: str, *, alias: str = "champion", tracking_uri: str | None = None, registry_uri: str | None = None
) -> Champion | None:
    """The current champion, or None (no alias, or a version promoted without an eval run)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri, registry_uri)
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    run_id = (mv.tags or {}).get(EVAL_RUN_TAG)
    if not run_id:
        return None
    run = client.get_run(run_id)
    return Champion(str(mv.version), run_id, dict(run.data.metrics), run.data.params.get("dataset_digest"))
