"""An OpenAPI 3.1 spec of the workspace's serving-endpoints control plane, built from the config models.

Nothing in the bodies is written by hand: each request body is the JSON schema pydantic derives
from :class:`llmops_nb.config.EndpointConfig` and its parts (``model_json_schema``), arranged in
the REST form of ``POST /api/2.0/serving-endpoints`` (the core fields under ``config``, tags as a
list of ``{key, value}``: ``EndpointConfig.to_databricks_body``). The routes are those
llmops_nb/workspace/api/app.py serves: create, list, get, delete, PUT config, PUT ai-gateway, PATCH
notifications, PATCH tags, the logs. (Serving-endpoint permissions are not served there.)

Endpoint names are drawn mostly from ``names`` (endpoints a fuzz run creates, so that reads and
updates find them), else any valid name. Used by tests/workspace/test_fuzz_control_plane.py and
bench/fuzz.py with schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from llmops_nb.config.endpoint import CORE_FIELDS, EmailNotifications, EndpointConfig, EndpointTag
from llmops_nb.config.errors import NAME_RE
from llmops_nb.config.served_entities import ENTITY_NAME_RE

API = "/api/2.0/serving-endpoints"
REF = "#/components/schemas/{model}"


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """EndpointConfig's properties and every model schema they refer to, refs into components."""
    endpoint = EndpointConfig.model_json_schema(ref_template=REF)
    defs = endpoint.pop("$defs")
    for model in (EndpointTag, EmailNotifications):
        schema = model.model_json_schema(ref_template=REF)
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return endpoint["properties"], defs


def _name_schema(names: tuple[str, ...]) -> dict[str, Any]:
    valid = {"type": "string", "pattern": NAME_RE.pattern}
    return {"anyOf": [{"enum": list(names)}, valid]} if names else valid


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = {"description": "an answer", "content": {"application/json": {"schema": {"type": "object"}}}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": answer, "400": answer, "404": answer, "409": answer},
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _narrowed(props: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The core config reduced to what passes the rules JSON schema cannot say (model validators).

    One registered entity with a digits version (``from_databricks_body``), no legacy
    served_models beside it, no traffic routes to match, no config.name to equal the endpoint's;
    entity names by ENTITY_NAME_RE. Only optional properties are left out: what is generated
    is still what the models accept.
    """
    entity = copy.deepcopy(defs["ServedEntity"])
    keep = ("name", "entity_name", "entity_version", "workload_size", "scale_to_zero_enabled")
    entity["properties"] = {k: v for k, v in entity["properties"].items() if k in keep}
    entity["properties"]["name"] = {"type": "string", "pattern": ENTITY_NAME_RE.pattern}
    entity["properties"]["entity_version"] = {"type": "string", "pattern": "^[0-9]{1,3}$"}
    entity["required"] = ["entity_name", "entity_version"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["served_entities"],
        "properties": {
            "served_entities": {"type": "array", "items": entity, "minItems": 1, "maxItems": 1},
            "auto_capture_config": copy.deepcopy(props["auto_capture_config"]),
        },
    }


def control_plane_spec(names: tuple[str, ...] = (), narrow: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a dict for ``schemathesis.openapi.from_dict``).

    ``narrow``: the core config of :func:`_narrowed`, so that generated creates and updates
    often succeed (the full schema mostly breaks a cross-field rule and gets a 400).
    """
    props, defs = _schemas()
    name = _name_schema(names)
    core = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": name, **{k: copy.deepcopy(props[k]) for k in CORE_FIELDS}},
    }
    if narrow:
        core = _narrowed(props, defs)
    top = {k: copy.deepcopy(v) for k, v in props.items() if k not in (*CORE_FIELDS, "name", "tags")}
    create = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "config"],
        "properties": {
            "name": name,
            "config": core,
            "tags": {"type": "array", "items": {"$ref": REF.format(model="EndpointTag")}},
            **top,
        },
    }
    gateway = {"$ref": REF.format(model="AiGatewayConfig")}
    notifications = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": name, "email_notifications": {"$ref": REF.format(model="EmailNotifications")}},
    }
    tags = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "add_tags": {"type": "array", "items": {"$ref": REF.format(model="EndpointTag")}},
            "delete_keys": {"type": "array", "items": {"type": "string"}},
        },
    }
    path_param = [{"name": "name", "in": "path", "required": True, "schema": name}]
    entity_param = [*path_param, {"name": "entity", "in": "path", "required": True, "schema": {"type": "string"}}]
    one = f"{API}/{{name}}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "llmops-nb local workspace: serving-endpoints control plane", "version": "1"},
        "paths": {
            API: {
                "post": _operation("create an endpoint", _body(create)),
                "get": _operation("list endpoints"),
            },
            one: {
                "parameters": path_param,
                "get": _operation("get an endpoint"),
                "delete": _operation("delete an endpoint"),
            },
            f"{one}/config": {"parameters": path_param, "put": _operation("update the config", _body(core))},
            f"{one}/ai-gateway": {"parameters": path_param, "put": _operation("put the AI gateway", _body(gateway))},
            f"{one}/notifications": {
                "parameters": path_param,
                "patch": _operation("patch the notifications", _body(notifications)),
            },
            f"{one}/tags": {"parameters": path_param, "patch": _operation("patch the tags", _body(tags))},
            f"{one}/served-models/{{entity}}/build-logs": {"parameters": entity_param, "get": _operation("build logs")},
            f"{one}/served-models/{{entity}}/logs": {"parameters": entity_param, "get": _operation("logs")},
        },
        "components": {"schemas": defs},
    }
