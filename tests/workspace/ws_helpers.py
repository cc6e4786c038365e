"""Small helpers shared by the workspace tests: bodies, polling, raw HTTP."""

from __future__ import annotations

import time

import requests
from databricks.sdk.service.serving import EndpointCoreConfigInput, Route, ServedEntityInput, TrafficConfig


def entity(model: str, version: str = "1", name: str | None = None) -> ServedEntityInput:
    return ServedEntityInput(entity_name=model, entity_version=version, name=name)


def core(name: str, *entities: ServedEntityInput, routes: dict[str, int] | None = None) -> EndpointCoreConfigInput:
    traffic = None
    if routes:
        traffic = TrafficConfig(routes=[Route(served_entity_name=k, traffic_percentage=v) for k, v in routes.items()])
    return EndpointCoreConfigInput(name=name, served_entities=list(entities), traffic_config=traffic)


def wait_until(w, name: str, predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        ep = w.serving_endpoints.get(name)
        if predicate(ep):
            return ep
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: condition not met; state {ep.state}")
        time.sleep(0.05)


def ready(ep) -> bool:
    return ep.state.ready.value == "READY" and ep.state.config_update.value == "NOT_UPDATING"


def post(ws, path: str, body=None, raw: str | None = None, token: str | None = None, user: str | None = None):
    """POST with the workspace's token (``token`` instead, or ``<token>:<user>`` for a requester)."""
    sent = token or (f"{ws.token}:{user}" if user else ws.token)
    headers = {"Authorization": f"Bearer {sent}", "Content-Type": "application/json"}
    if raw is not None:
        return requests.post(ws.host + path, data=raw, headers=headers, timeout=10)
    return requests.post(ws.host + path, json=body, headers=headers, timeout=10)


def chat(text: str = "hello", **kw) -> dict:
    return {"messages": [{"role": "user", "content": text}], **kw}


def serve_fake(ws, name: str, entity_name: str = "m-1"):
    """A ready endpoint ``name`` serving model ``m`` version 1 as ``entity_name``; returns ``ws``."""
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient(host=ws.host, token=ws.token)
    w.serving_endpoints.create(name=name, config=core(name, entity("m", "1", name=entity_name)))
    wait_until(w, name, ready)
    return ws
