"""The deploy plan: which write calls bring the endpoint GET reports to the desired config.

As the Databricks CLI's direct deploy plans a serving endpoint (github databricks/cli,
``bundle/direct/dresources/model_serving_endpoint.go``, ``resources.yml``):

- normalized bodies are compared (:mod:`llmops_nb.endpoints.normalize`), so a removal is a
  change (a dropped AI gateway section is cleared with an empty ``PUT .../ai-gateway``, a
  dropped tag is deleted) and server-filled values are not;
- writes come in the CLI's order: ``tags``, then ``ai_gateway``, then ``config``, then
  ``email_notifications`` and ``telemetry_config`` (``DoUpdate``);
- an inference-table location change while the table is enabled is two PUTs, disable then
  set (databricks-sdk ``AiGatewayInferenceTableConfig`` docstrings);
- an immutable field (``description``, ``route_optimized``, the legacy ``auto_capture_config``
  location: ``resources.yml`` ``recreate_on_changes``; an entity switching between a
  registered and an external model: the serving API refuses it) can only change by
  deleting and recreating the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmops_nb.endpoints import normalize
from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.config.endpoint import EndpointConfig

CREATE, CONFIG, AI_GATEWAY, TAGS = "create", "config", "ai_gateway", "tags"
DISABLE_INFERENCE_TABLE, DELETE = "ai_gateway_disable", "delete"
EMAIL_NOTIFICATIONS, TELEMETRY = "email_notifications", "telemetry_config"
#: The CLI's DoUpdate order.
UPDATE_ORDER = (TAGS, DISABLE_INFERENCE_TABLE, AI_GATEWAY, CONFIG, EMAIL_NOTIFICATIONS, TELEMETRY)
IMMUTABLE_TOP = ("description", "route_optimized")
CAPTURE_LOCATION = ("catalog_name", "schema_name", "table_name_prefix")
TABLE_LOCATION = CAPTURE_LOCATION


class ImmutableChange(ConfigError):
    """The config changes a field the endpoint cannot change in place."""


@dataclass(frozen=True)
class Plan:
    """What a deploy has to write, in order, and what it cannot write in place."""

    writes: tuple[str, ...]
    immutable: tuple[tuple[str, Any, Any], ...] = field(default=())  # (field, current, desired)

    def __bool__(self) -> bool:
        return bool(self.writes)

    def refusal(self, name: str) -> ImmutableChange:
        """The one-line error for the first immutable change."""
        path, current, desired = self.immutable[0]
        more = f" (+{len(self.immutable) - 1} more)" if len(self.immutable) > 1 else ""
        return ImmutableChange(
            path,
            desired,
            f"cannot change on an existing endpoint (endpoint {name} has "
            f"{current!r}){more}; deploy with --recreate to delete and recreate it",
        )


def _kind(entities: list[dict[str, Any]]) -> str | None:
    kinds = {"external" if e.get("external_model") else "registered" for e in entities}
    return "/".join(sorted(kinds)) or None


def immutable_changes(desired: dict[str, Any], remote: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, current, desired)`` for each immutable field that differs (normalized inputs)."""
    changes = [(k, remote.get(k), desired.get(k)) for k in IMMUTABLE_TOP if desired.get(k) != remote.get(k)]
    d_capture = desired["config"].get("auto_capture_config") or {}
    r_capture = remote["config"].get("auto_capture_config") or {}
    changes += [
        (f"config.auto_capture_config.{k}", r_capture.get(k), d_capture.get(k))
        for k in CAPTURE_LOCATION
        if d_capture.get(k) != r_capture.get(k)
    ]
    d_kind = _kind(desired["config"].get("served_entities", []))
    r_kind = _kind(remote["config"].get("served_entities", []))
    if r_kind and d_kind != r_kind:
        changes.append(("served_entities", r_kind, d_kind))
    return changes


def needs_disable_first(desired_gateway: dict[str, Any], remote_gateway: dict[str, Any]) -> bool:
    """An enabled inference table whose catalog/schema/prefix changes while it stays enabled.

    Normalized inputs: an omitted ``enabled`` is false (Go's zero value, as the API reads it).
    """
    current = remote_gateway.get("inference_table_config") or {}
    wanted = desired_gateway.get("inference_table_config") or {}
    if not current.get("enabled") or not wanted.get("enabled"):
        return False
    return any(wanted.get(k) != current.get(k) for k in TABLE_LOCATION)


def tag_changes(desired: dict[str, str], current: Any) -> tuple[dict[str, str], list[str]]:
    """Tags to add (or change) and tag keys to delete (the CLI's ``diffTags``)."""
    have, want = normalize.tags(current), normalize.tags(desired)  # the rollout's own tags left alone
    add = {k: v for k, v in want.items() if have.get(k) != v}
    delete = sorted(k for k in have if k not in want)
    return add, delete


def compare(cfg: EndpointConfig, current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(desired, remote)`` normalized and reconciled, for an endpoint that exists."""
    desired = normalize.endpoint(cfg.to_databricks_body())
    remote = normalize.endpoint(normalize.remote_body(current))
    return normalize.reconcile(desired, remote)


def make_plan(cfg: EndpointConfig, current: dict[str, Any] | None) -> Plan:
    """The write calls needed to bring ``current`` (a GET view as a dict, or None) to ``cfg``."""
    if current is None:
        return Plan((CREATE,))
    desired, remote = compare(cfg, current)
    writes: list[str] = []
    if desired["tags"] != remote["tags"]:
        writes.append(TAGS)
    if desired["ai_gateway"] != remote["ai_gateway"]:
        if needs_disable_first(desired["ai_gateway"], remote["ai_gateway"]):
            writes.append(DISABLE_INFERENCE_TABLE)
        writes.append(AI_GATEWAY)
    if desired["config"] != remote["config"]:
        writes.append(CONFIG)
    if desired.get("email_notifications") != remote.get("email_notifications"):
        writes.append(EMAIL_NOTIFICATIONS)
    # resources.yml backend_defaults: telemetry the config does not manage is left alone.
    if desired.get("telemetry_config") and desired["telemetry_config"] != remote.get("telemetry_config"):
        writes.append(TELEMETRY)
    return Plan(tuple(writes), tuple(immutable_changes(desired, remote)))


def plan_changes(cfg: EndpointConfig, current: dict[str, Any] | None) -> list[str]:
    """The write calls, in order (``create``, or ``tags``/``ai_gateway``/``config``)."""
    return list(make_plan(cfg, current).writes)


def config_matches(desired_core: dict[str, Any], current_config: dict[str, Any] | None) -> bool:
    """Whether a served config (GET ``config``) equals a desired core config body."""
    if not current_config:
        return False
    desired = {"config": normalize.core_config(desired_core), "ai_gateway": {}, "tags": {}}
    remote = {"config": normalize.core_config(current_config), "ai_gateway": {}, "tags": {}}
    desired, remote = normalize.reconcile(desired, remote)
    return desired["config"] == remote["config"]
