"""Request-body validation of the serving-endpoints API, and normalisation into stored form.

The schema lives in :class:`llmops_nb.config.EndpointConfig` (``from_databricks_body``); this
module turns its ConfigError into a 400 INVALID_PARAMETER_VALUE with the same one-line
message and builds the stored form (entity names and traffic routes filled in). Legacy
forms (``served_models``, routes by ``served_model_name``) are converted first
(:mod:`.legacy`); the rules on changing an existing endpoint are in :mod:`.rules`.
"""

from __future__ import annotations

from typing import Any

from llmops_nb.workspace.apierror import ApiError, invalid
from llmops_nb.workspace.serving import legacy, rules

AI_GATEWAY_FIELDS = ("rate_limits", "usage_tracking_config", "inference_table_config", "guardrails", "fallback_config")


def _parse(body: Any, was_legacy: bool = False):
    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.errors import ConfigError

    try:
        return EndpointConfig.from_databricks_body(body)
    except ConfigError as e:
        message = str(e)
        raise invalid(legacy.legacy_message(message) if was_legacy else message) from None


def validate_create(body: Any) -> dict:
    """A checked, normalised ``POST /api/2.0/serving-endpoints`` body."""
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    body = dict(body)
    was_legacy = False
    if "config" in body:
        body["config"], was_legacy = legacy.to_entities(body["config"])
    parsed = _parse(body, was_legacy)
    out = parsed.to_databricks_body()
    config = {k: v for k, v in out.get("config", {}).items() if k != "name"}
    config.update(parsed.core_config_body())
    config["traffic_config"] = {"routes": parsed.routes()}
    for entity in config["served_entities"]:
        if entity.get("entity_version") is not None:
            entity["entity_version"] = str(entity["entity_version"])
    if was_legacy:
        config[legacy.MARK] = True
    out["config"] = config
    return out


def validate_update(name: str, body: Any, current: dict) -> dict:
    """Check a ``PUT .../config`` body as the endpoint it would make; return the stored config.

    ``current`` is the endpoint's record: the new config may not switch the kind of its
    entities nor move an enabled legacy inference table (:mod:`.rules`).
    """
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    full = {"name": name, "config": {k: v for k, v in body.items() if k != "name"}}
    if current.get("ai_gateway"):
        full["ai_gateway"] = current["ai_gateway"]
    config = validate_create(full)["config"]
    old = rules.current_config(current)
    rules.check_same_kind(name, old, config)
    rules.check_table_location(
        "config.auto_capture_config", (old or {}).get("auto_capture_config"), config.get("auto_capture_config")
    )
    return config


def validate_ai_gateway(name: str, body: Any, current: dict) -> dict:
    """Check a ``PUT .../ai-gateway`` body against the endpoint's config; return it normalised.

    An enabled inference table keeps its location until it is disabled (:mod:`.rules`).
    """
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    config = rules.current_config(current) or {}
    full = {
        "name": name,
        "ai_gateway": body,
        "config": {k: config[k] for k in ("served_entities", "traffic_config") if k in config},
    }
    gateway = validate_create(full).get("ai_gateway") or {}
    rules.check_table_location(
        "ai_gateway.inference_table_config",
        (current.get("ai_gateway") or {}).get("inference_table_config"),
        gateway.get("inference_table_config"),
    )
    return gateway


def validate_notifications(name: str, body: Any, current: dict) -> dict | None:
    """Check a ``PATCH .../notifications`` body; return its ``email_notifications`` (or None)."""
    if not isinstance(body, dict) or set(body) - {"name", "email_notifications"}:
        raise invalid("request body: an object with email_notifications {on_update_failure, on_update_success}")
    config = rules.current_config(current) or {}
    full = {
        "name": name,
        "email_notifications": body.get("email_notifications"),
        "config": {k: config[k] for k in ("served_entities", "traffic_config") if k in config},
    }
    return validate_create(full).get("email_notifications")


def check_not_system(name: str, system_names: set[str], action: str) -> None:
    if name in system_names:
        raise ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            f"Endpoint {name} is a system (pay-per-token foundation model) endpoint and cannot be {action}.",
        )
