"""Promotion: threshold names checked up front, the decision recorded on the run, the alias moved.

The decision itself (thresholds at the interval's bound, the paired comparison with the
baseline) is :mod:`llmops_nb.evaluation.decision`. Threshold directions follow
:func:`llmops_nb.config.is_upper_bound`: a metric ending in ``_ms`` or ``_seconds``, or a
lower-is-better name such as ``error_rate``, must be <= its threshold; every other metric
must be >= its threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmops_nb.errors import ConfigError

EVAL_RUN_TAG = "llmops_nb.eval_run_id"


def check_threshold_names(thresholds: Mapping[str, float], known: Iterable[str]) -> None:
    """A threshold on a metric the evaluation does not report is one ConfigError line, before any request."""
    names = sorted(set(known))
    for metric in thresholds:
        if metric not in names:
            raise ConfigError(f"thresholds.{metric}", metric, f"known metrics: {', '.join(names)}")


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
TAG_ACTION = "llmops_nb.decision_action"
TAG_WINNER = "llmops_nb.decision_winner"


@dataclass(frozen=True)
class PromotionDecision:
    """What is recorded on the run: whether the alias moved, the decision's action, winner and reason."""

    promote: bool
    reasons: list[str]
    action: str = ""
    winner: str | None = None


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
    if decision.action:
        client.set_tag(run_id, TAG_ACTION, decision.action)
    if decision.winner:
        client.set_tag(run_id, TAG_WINNER, decision.winner)
    client.set_tag(run_id, TAG_DECISION, "; ".join(decision.reasons)[:4900])


def decision_report(run_id: str, default_alias: str, tracking_uri: str | None, registry_uri: str | None) -> list[str]:
    """The decision as ``llmops-nb run`` shows it, read back from MLflow: the decision's paragraph
    (the run's tags), whether the alias moved, and the version the alias points to now."""
    from llmops_nb.models.registry import get_version_by_alias

    tags = _client(tracking_uri, registry_uri).get_run(run_id).data.tags
    model = tags.get(TAG_MODEL_NAME)
    version = tags.get(TAG_CANDIDATE) or tags.get(TAG_MODEL_VERSION)
    alias = tags.get(TAG_ALIAS) or default_alias
    target_name = f"{model} version {version}" if model and version else "this model"
    reasons = [r for r in (tags.get(TAG_DECISION) or "").split("; ") if r]
    applied = reasons[:1] != ["not applied"]
    lines = reasons if applied else reasons[1:]  # the decision's paragraph first
    if tags.get(TAG_PROMOTED) == "true":
        lines.append(f"PROMOTED: alias '{alias}' -> {target_name}")
    elif not applied:
        lines.append(f"promotion allowed, but not applied (promote=False or no version) for {target_name}")
    else:
        lines.append(f"NOT promoted: {target_name} keeps its aliases")
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
