"""JSON views of endpoints exactly as the Databricks API shows them."""

from __future__ import annotations

from llmops_nb.workspace.runners.base import CREATING, READY, Runner
from llmops_nb.workspace.serving import legacy
from llmops_nb.workspace.serving.foundation import FOUNDATION_ENDPOINT, foundation_entity

TASK = "llm/v1/chat"
#: Where the workspace serves route-optimized endpoints (their data plane): only to a data-plane
#: OAuth token (api/oauth.py, api/guard.py); ``endpoint_url`` and ``data_plane_info`` point here.
DATA_PLANE_PREFIX = "/data-plane"


def authorization_details(endpoint_id: str) -> str:
    """The ``query_info.authorization_details`` of an endpoint, the JSON text the data-plane token
    exchange takes back (databricks/sdk/data_plane.py sends it as given)."""
    import json

    return json.dumps(
        [
            {
                "type": "workspace_permission",
                "object_type": "serving-endpoints",
                "object_path": f"/serving-endpoints/{endpoint_id}",
                "actions": ["query_inference_endpoint"],
            }
        ]
    )


def _entities(entities: list[dict], runners: dict[str, Runner], saved: dict | None, creator: str, ts: int) -> list[dict]:
    out = []
    for e in entities:
        r = runners.get(e["name"])
        if r is not None:
            state = r.state_view()
        elif saved and e["name"] in saved:
            state = saved[e["name"]]
        else:
            state = {"deployment": CREATING, "deployment_state_message": "Waiting to start."}
        out.append({**e, "creator": creator, "creation_timestamp": ts, "state": state})
    return out


def endpoint_view(rec: dict, active: dict[str, Runner], pending: dict[str, Runner], host: str) -> dict:
    """The ``ServingEndpointDetailed`` JSON of a stored record and its runners."""
    ready = bool(rec.get("config")) and bool(active) and all(r.state == READY for r in active.values())
    view = {
        "name": rec["name"],
        "id": rec["id"],
        "creator": rec["creator"],
        "creation_timestamp": rec["creation_timestamp"],
        "last_updated_timestamp": rec["last_updated_timestamp"],
        "state": {"ready": "READY" if ready else "NOT_READY", "config_update": rec["config_update"]},
        "tags": rec.get("tags") or [],
        "task": TASK,
        "permission_level": "CAN_MANAGE",
        # Always echoed, as the real backend does (CLI libs/testserver/serving_endpoints.go
        # force-sends both); budget_policy_id is never shown: GET does not populate it (CLI
        # bundle/direct/dresources/resources.yml, ignore_remote_changes).
        "route_optimized": bool(rec.get("route_optimized")),
        "description": rec.get("description") or "",
    }
    if rec.get("route_optimized"):
        # "Endpoint invocation url if route optimization is enabled for endpoint" (databricks-sdk-py
        # service/serving.py, ServingEndpointDetailed.endpoint_url): absent on every other endpoint
        # (the CLI's libs/testserver/serving_endpoints.go never sets it).
        # ... and it is the data-plane URL, the one data_plane_info.query_info names (the SDK's
        # ServingEndpointsDataPlaneAPI.query posts there with a token for its authorization_details)
        url = f"{host}{DATA_PLANE_PREFIX}/serving-endpoints/{rec['name']}/invocations"
        view["endpoint_url"] = url
        view["data_plane_info"] = {"query_info": {"endpoint_url": url, "authorization_details": authorization_details(rec["id"])}}
    for key in ("ai_gateway", "email_notifications"):
        if rec.get(key):
            view[key] = rec[key]
    if rec.get("config"):
        c = rec["config"]
        view["config"] = _config(
            c, _entities(c["served_entities"], active, None, rec["creator"], c.get("start_time", rec["creation_timestamp"]))
        )
    if rec.get("pending_config"):
        p = rec["pending_config"]
        view["pending_config"] = {
            **_config(p, _entities(p["served_entities"], pending, rec.get("pending_states"), rec["creator"], p["start_time"])),
            "start_time": p["start_time"],
        }
    return view


def _config(stored: dict, entities: list[dict]) -> dict:
    """``EndpointCoreConfigOutput`` (or the pending one) of a stored config."""
    out = {"served_entities": entities, "traffic_config": stored["traffic_config"], "config_version": stored["config_version"]}
    if stored.get("auto_capture_config"):
        out["auto_capture_config"] = stored["auto_capture_config"]
    if stored.get(legacy.MARK):
        out["served_models"] = legacy.served_models_view(entities)
        out["traffic_config"] = {"routes": legacy.routes_view(stored["traffic_config"]["routes"])}
    return out


def foundation_view(host: str, created: int) -> dict:
    """The always-READY pay-per-token foundation model endpoint."""
    entity = {
        **foundation_entity(),
        "state": {"deployment": READY, "deployment_state_message": "Pay-per-token foundation model."},
    }
    return {
        "name": FOUNDATION_ENDPOINT,
        "id": "foundation-smollm2-135m-instruct",
        "creator": "system",
        "creation_timestamp": created,
        "last_updated_timestamp": created,
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {
            "served_entities": [entity],
            "config_version": 1,
            "traffic_config": {"routes": [{"served_entity_name": FOUNDATION_ENDPOINT, "traffic_percentage": 100}]},
        },
        "tags": [],
        "task": TASK,
        "permission_level": "CAN_QUERY",
        # no endpoint_url: a pay-per-token endpoint is not route-optimized (see endpoint_view)
    }
