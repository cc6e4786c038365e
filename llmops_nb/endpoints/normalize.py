"""Normalized endpoint bodies: what the user asked for and what GET reports, in one shape.

The Databricks CLI's direct deploy (github databricks/cli,
``bundle/direct/dresources/model_serving_endpoint.go`` and ``resources.yml``) maps the
``GET`` view back onto the create body (``newModelServingEndpointRemote``/``RemapState``:
only the input fields of each served entity, no ``config.name``, no ``served_models``,
no top-level ``rate_limits``) and compares it with the config, ignoring fields the backend
fills in (``backend_defaults``) and fields GET never returns (``ignore_remote_changes``).
Both sides here go through the same steps:

- only the fields of the SDK's *input* dataclasses are kept (output-only ``state``,
  ``creator``, ``config_version``... drop out);
- Go's zero values count as absent (the CLI compares Go structs: ``false``, ``0``, ``""``,
  ``{}`` and ``[]`` are omitted unless forced), so ``{"enabled": false}`` equals nothing;
- ``entity_version`` is a string, integral floats are ints, routes name their entity by
  ``served_entity_name`` (``served_model_name`` is the legacy spelling), entities, routes
  and rate limits are sorted;
- server-filled values the config did not set are taken as they are (entity ``name``,
  ``workload_type``, ``auto_capture_config.enabled``, the default 100 % route), and
  defaults some workspaces omit from GET (``workload_type: CPU`` where there is no GPU
  serving) are not a difference.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any

# resources.yml backend_defaults: set by the server when the config leaves them out.
SERVER_FILLED_ENTITY_FIELDS = ("name", "workload_type")
# Defaults a workspace may leave out of GET although the request set them.
OMITTED_ENTITY_DEFAULTS: dict[str, Any] = {"workload_type": "CPU", "scale_to_zero_enabled": False}
# resources.yml ignore_remote_changes / input_only: accepted on write, never returned by GET.
INPUT_ONLY_ENTITY_FIELDS = ("burst_scaling_enabled",)
# resources.yml ignore_local_changes / ignore_remote_changes: never compared.
IGNORED_TOP_FIELDS = ("budget_policy_id", "rate_limits", "name")
# The sections of the create body a GET reports back (newModelServingEndpointRemote).
REMOTE_TOP_FIELDS = ("ai_gateway", "config", "description", "email_notifications", "route_optimized", "tags", "telemetry_config")


@cache
def input_fields(class_name: str) -> frozenset[str]:
    """The field names of a ``databricks.sdk.service.serving`` input dataclass."""
    from databricks.sdk.service import serving

    return frozenset(f.name for f in dataclasses.fields(getattr(serving, class_name)))


def _zero(value: Any) -> bool:
    return (
        value is None
        or value is False
        or value == ""
        or value == {}
        or value == []
        or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)
    )


def compact(value: Any) -> Any:
    """Go zero values dropped, recursively; integral floats as ints."""
    if isinstance(value, dict):
        out = {k: compact(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if not _zero(v)}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sorted(items: list[Any], key: str | None = None) -> list[Any]:
    if key is None:
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return sorted(items, key=lambda v: str(v.get(key, "")) if isinstance(v, dict) else "")


def _entity(raw: dict[str, Any]) -> dict[str, Any]:
    keep = input_fields("ServedEntityInput") - set(INPUT_ONLY_ENTITY_FIELDS)
    entity = {k: v for k, v in raw.items() if k in keep and not k.endswith("_plaintext")}
    if entity.get("entity_version") is not None:
        entity["entity_version"] = str(entity["entity_version"])
    return compact(entity)


def _route(raw: dict[str, Any]) -> dict[str, Any]:
    route = dict(raw)
    name = route.pop("served_entity_name", None) or route.pop("served_model_name", None)
    route.pop("served_model_name", None)
    return compact({**route, "served_entity_name": name})


# The deprecated served_models spelling of a served entity's fields.
LEGACY_MODEL_FIELDS = {"model_name": "entity_name", "model_version": "entity_version"}


def _entities(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """``served_entities``, or the deprecated ``served_models`` renamed to entity fields."""
    if raw.get("served_entities"):
        return list(raw["served_entities"])
    return [{LEGACY_MODEL_FIELDS.get(k, k): v for k, v in m.items()} for m in raw.get("served_models") or []]


def core_config(raw: dict[str, Any] | None) -> dict[str, Any]:
    """``config`` as an input body: entities (sorted by name), routes, auto capture; no name."""
    raw = raw or {}
    keep = input_fields("EndpointCoreConfigInput") - {"name", "served_models"}
    config = {k: v for k, v in raw.items() if k in keep}
    config["served_entities"] = _sorted([_entity(e) for e in _entities(raw)], "name")
    routes = ((raw.get("traffic_config") or {}).get("routes")) or []
    config["traffic_config"] = {"routes": _sorted([_route(r) for r in routes], "served_entity_name")}
    return compact(config)


def ai_gateway(raw: dict[str, Any] | None) -> dict[str, Any]:
    """``ai_gateway`` with only the gateway's input fields, rate limits sorted; {} when absent."""
    raw = raw or {}
    gateway = compact({k: v for k, v in raw.items() if k in input_fields("AiGatewayConfig")})
    if gateway.get("rate_limits"):
        gateway["rate_limits"] = _sorted(gateway["rate_limits"])
    return gateway


#: The tag naming the endpoint's latest rollout run (:mod:`llmops_nb.rollout.mlflow_store`): the
#: rollout keeps it, so a deploy neither compares nor deletes it (a config cannot set it either).
ROLLOUT_RUN_TAG = "llmops_rollout_run"
STATE_TAGS = frozenset({ROLLOUT_RUN_TAG})


def tags(raw: Any) -> dict[str, str]:
    """Tags as ``{key: value}`` from the REST list (or a mapping), without :data:`STATE_TAGS`."""
    if isinstance(raw, dict):
        found = {str(k): "" if v is None else str(v) for k, v in raw.items()}
    else:
        found = {str(t["key"]): "" if t.get("value") is None else str(t["value"]) for t in raw or []}
    return {k: v for k, v in found.items() if k not in STATE_TAGS}


def endpoint(body: dict[str, Any]) -> dict[str, Any]:
    """A create body (desired) or a GET view (remote) in the normalized, comparable shape.

    ``config``, ``ai_gateway`` and ``tags`` are always present (empty when absent).
    """
    sections = ("config", "ai_gateway", "tags")
    out = compact({k: v for k, v in body.items() if k not in IGNORED_TOP_FIELDS and k not in sections})
    out.update(config=core_config(body.get("config")), ai_gateway=ai_gateway(body.get("ai_gateway")), tags=tags(body.get("tags")))
    if isinstance(out.get("telemetry_config"), dict):
        # resources.yml ignore_remote_changes: telemetry_config.table_names is input only.
        out["telemetry_config"] = compact({k: v for k, v in out["telemetry_config"].items() if k != "table_names"})
    return out


def remote_body(view: dict[str, Any]) -> dict[str, Any]:
    """The create body a GET view stands for (``newModelServingEndpointRemote``)."""
    return {k: view[k] for k in REMOTE_TOP_FIELDS if k in view}


def reconcile(desired: dict[str, Any], remote: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(desired, remote)`` normalized, with server-filled values and omitted defaults matched.

    Both arguments are outputs of :func:`endpoint`; returns new dicts.
    """
    desired, remote = json.loads(json.dumps(desired)), json.loads(json.dumps(remote))
    d_cfg, r_cfg = desired.get("config", {}), remote.get("config", {})
    r_entities = r_cfg.get("served_entities", [])
    by_name = {r.get("name"): r for r in r_entities}
    for i, d in enumerate(d_cfg.get("served_entities", [])):
        # An entity without a name is matched by position: its name is the server's to fill.
        r = by_name.get(d["name"]) if d.get("name") else (r_entities[i] if i < len(r_entities) else None)
        if r is None:
            continue
        for key in SERVER_FILLED_ENTITY_FIELDS:
            if key not in d and key in r:
                d[key] = r[key]
        for key, default in OMITTED_ENTITY_DEFAULTS.items():
            if d.get(key) == default and key not in r:
                del d[key]
    if "served_entities" in d_cfg:
        d_cfg["served_entities"] = _sorted(d_cfg["served_entities"], "name")
    if not d_cfg.get("traffic_config"):
        # resources.yml: the backend routes 100 % to the entity when traffic_config is omitted.
        r_cfg.pop("traffic_config", None)
    d_capture, r_capture = d_cfg.get("auto_capture_config"), r_cfg.get("auto_capture_config")
    if isinstance(d_capture, dict) and isinstance(r_capture, dict) and "enabled" not in d_capture:
        r_capture.pop("enabled", None)
    return desired, remote
