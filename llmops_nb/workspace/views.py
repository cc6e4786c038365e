"""JSON views of endpoints exactly as the Databricks API shows them."""

from __future__ import annotations

from .entities import CREATING, READY, Runner
from .foundation import FOUNDATION_ENDPOINT, foundation_entity

TASK = "llm/v1/chat"


def _entities(entities: list[dict], runners: dict[str, Runner], saved: dict | None,
              creator: str, ts: int) -> list[dict]:
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


def endpoint_view(rec: dict, active: dict[str, Runner], pending: dict[str, Runner],
                  host: str) -> dict:
    """The ``ServingEndpointDetailed`` JSON of a stored record and its runners."""
    ready = bool(rec.get("config")) and bool(active) and all(
        r.state == READY for r in active.values())
    view = {
        "name": rec["name"], "id": rec["id"], "creator": rec["creator"],
        "creation_timestamp": rec["creation_timestamp"],
        "last_updated_timestamp": rec["last_updated_timestamp"],
        "state": {"ready": "READY" if ready else "NOT_READY",
                  "config_update": rec["config_update"]},
        "tags": rec.get("tags") or [], "task": TASK, "permission_level": "CAN_MANAGE",
        "endpoint_url": f"{host}/serving-endpoints/{rec['name']}/invocations",
        "route_optimized": False,
    }
    for key in ("ai_gateway", "description", "budget_policy_id", "email_notifications"):
        if rec.get(key) is not None:
            view[key] = rec[key]
    if rec.get("config"):
        c = rec["config"]
        view["config"] = {
            "served_entities": _entities(c["served_entities"], active, None, rec["creator"],
                                         c.get("start_time", rec["creation_timestamp"])),
            "traffic_config": c["traffic_config"], "config_version": c["config_version"]}
    if rec.get("pending_config"):
        p = rec["pending_config"]
        view["pending_config"] = {
            "served_entities": _entities(p["served_entities"], pending, rec.get("pending_states"),
                                         rec["creator"], p["start_time"]),
            "traffic_config": p["traffic_config"], "config_version": p["config_version"],
            "start_time": p["start_time"]}
    return view


def foundation_view(host: str, created: int) -> dict:
    """The always-READY pay-per-token foundation model endpoint."""
    entity = {**foundation_entity(), "state": {
        "deployment": READY, "deployment_state_message": "Pay-per-token foundation model."}}
    return {
        "name": FOUNDATION_ENDPOINT, "id": "foundation-smollm2-135m-instruct",
        "creator": "system", "creation_timestamp": created, "last_updated_timestamp": created,
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {"served_entities": [entity], "config_version": 1,
                   "traffic_config": {"routes": [{"served_entity_name": FOUNDATION_ENDPOINT,
                                                  "traffic_percentage": 100}]}},
        "tags": [], "task": TASK, "permission_level": "CAN_QUERY",
        "endpoint_url": f"{host}/serving-endpoints/{FOUNDATION_ENDPOINT}/invocations",
    }
