"""Request-body validation of the serving-endpoints API, and normalisation into stored form.

The schema lives in :class:`llmops_nb.config.EndpointConfig` (``from_databricks_body``); this
module turns its ConfigError into a 400 INVALID_PARAMETER_VALUE with the same one-line
message and builds the stored form (entity names and traffic routes filled in).
"""

from __future__ import annotations

from typing import Any

from .apierror import ApiError, invalid

AI_GATEWAY_FIELDS = ("rate_limits", "usage_tracking_config", "inference_table_config",
                     "guardrails", "fallback_config")


def _parse(body: Any):
    from llmops_nb.config import EndpointConfig
    from llmops_nb.errors import ConfigError

    try:
        return EndpointConfig.from_databricks_body(body)
    except ConfigError as e:
        raise invalid(str(e)) from None


def validate_create(body: Any) -> dict:
    """A checked, normalised ``POST /api/2.0/serving-endpoints`` body."""
    parsed = _parse(body)
    out = parsed.to_databricks_body()
    config = parsed.core_config_body()
    config["traffic_config"] = {"routes": parsed.routes()}
    for entity in config["served_entities"]:
        if entity.get("entity_version") is not None:
            entity["entity_version"] = str(entity["entity_version"])
    out["config"] = config
    return out


def validate_update(name: str, body: Any, current: dict) -> dict:
    """Check a ``PUT .../config`` body as the endpoint it would make; return the stored config."""
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    full = {"name": name, "config": {k: v for k, v in body.items() if k != "name"}}
    if current.get("ai_gateway"):
        full["ai_gateway"] = current["ai_gateway"]
    return validate_create(full)["config"]


def validate_ai_gateway(name: str, body: Any, current: dict) -> dict:
    """Check a ``PUT .../ai-gateway`` body against the endpoint's config; return it normalised."""
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    config = current.get("config") or current.get("pending_config") or {}
    full = {"name": name, "ai_gateway": body,
            "config": {k: config[k] for k in ("served_entities", "traffic_config") if k in config}}
    return validate_create(full).get("ai_gateway") or {}


def check_not_system(name: str, system_names: set[str], action: str) -> None:
    if name in system_names:
        raise ApiError(400, "INVALID_PARAMETER_VALUE",
                       f"Endpoint {name} is a system (pay-per-token foundation model) endpoint "
                       f"and cannot be {action}.")
