"""Conformance: the documented errors (status and error_code), and nothing created by a refused
request; a conflicting update; a failed update and its recovery."""

from __future__ import annotations

import pytest
from conformance_steps import API, ask, assert_chat_answer, assert_serves_only, create, entity_names
from conformance_targets import FAKE, LIVE, LOCAL, Target


def _error(r, status: int, code: str) -> str:
    """Assert a Databricks error body ``{error_code, message}``; return the message."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert body.get("error_code") == code, body
    assert body.get("message"), body
    return body["message"]


def _absent(target: Target, name: str) -> None:
    r = target.http("GET", f"{API}/{name}")
    assert r.status_code == 404, f"{name} exists after a refused request: {r.text[:200]}"


def test_unknown_endpoint_is_404_resource_does_not_exist(target: Target, names) -> None:
    name = names("missing")  # never created
    entity = target.external_entity()
    for method, path, body in [
        ("GET", f"{API}/{name}", None),
        ("PUT", f"{API}/{name}/config", {"served_entities": [entity]}),
        ("PUT", f"{API}/{name}/ai-gateway", {"usage_tracking_config": {"enabled": True}}),
        ("PATCH", f"{API}/{name}/tags", {"add_tags": [{"key": "k", "value": "v"}]}),
        ("DELETE", f"{API}/{name}", None),
    ]:
        # databricks/cli libs/testserver/serving_endpoints.go: 404 RESOURCE_DOES_NOT_EXIST
        _error(target.http(method, path, body), 404, "RESOURCE_DOES_NOT_EXIST")
    _absent(target, name)


@pytest.mark.parametrize("bad", ["has space", "dots.not.allowed", "x" * 64, "slash/name"])
def test_bad_endpoint_name_is_400_and_creates_nothing(target: Target, bad: str) -> None:
    # names: letters, digits, '-' and '_', at most 63 characters (Databricks serving docs;
    # bundle/schema/jsonschema.json model_serving_endpoint name)
    body = {"name": bad, "config": {"served_entities": [target.external_entity()]}}
    msg = _error(target.http("POST", API, body), 400, "INVALID_PARAMETER_VALUE")
    assert "\n" not in msg.strip()
    names_now = {e["name"] for e in target.http("GET", API).json().get("endpoints", [])}
    assert bad not in names_now


def test_bad_body_is_400_invalid_parameter_value_and_creates_nothing(target: Target, names) -> None:
    name = names("badbody")
    a, b = target.external_entity("a"), target.external_entity("b")
    bad_bodies = {
        "traffic does not sum to 100": {
            "served_entities": [a, b],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 30},
                    {"served_entity_name": "b", "traffic_percentage": 30},
                ]
            },
        },
        "route to an unknown entity": {
            "served_entities": [a],
            "traffic_config": {"routes": [{"served_entity_name": "nope", "traffic_percentage": 100}]},
        },
        "external model without a provider": {
            "served_entities": [{"name": "c", "external_model": {"name": "gpt", "task": "llm/v1/chat"}}]
        },
    }
    for why, config in bad_bodies.items():
        r = target.http("POST", API, {"name": name, "config": config})
        assert r.status_code == 400, (why, r.status_code, r.text[:300])
        assert r.json().get("error_code") == "INVALID_PARAMETER_VALUE", (why, r.json())
        _absent(target, name)


def test_a_refused_update_leaves_the_endpoint_as_it_was(target: Target, names) -> None:
    name = names("badupdate")
    before = create(target, name, target.external_entity("a"))
    bad = {
        "served_entities": [target.external_entity("a"), target.external_entity("b")],
        "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": 10}]},
    }
    _error(target.http("PUT", f"{API}/{name}/config", bad), 400, "INVALID_PARAMETER_VALUE")
    after = target.http("GET", f"{API}/{name}").json()
    assert after["state"]["config_update"] == "NOT_UPDATING" and "pending_config" not in after
    assert after["config"]["config_version"] == before["config"]["config_version"]
    assert entity_names(after) == ["a"]


def test_bad_ai_gateway_is_400_and_creates_nothing(target: Target, names) -> None:
    name = names("badgateway")
    bad_gateways = {
        # renewal_period is required (AiGatewayRateLimit docs, databricks-sdk serving.py)
        "rate limit without renewal_period": {"rate_limits": [{"calls": 10, "key": "endpoint"}]},
        "rate limit with an unknown key": {"rate_limits": [{"calls": 10, "key": "planet", "renewal_period": "minute"}]},
        "guardrail with an unknown behavior": {"guardrails": {"input": {"pii": {"behavior": "EXPLODE"}}}},
    }
    for why, gateway in bad_gateways.items():
        r = target.http(
            "POST", API, {"name": name, "ai_gateway": gateway, "config": {"served_entities": [target.external_entity()]}}
        )
        assert r.status_code == 400, (why, r.status_code, r.text[:300])
        _absent(target, name)


def test_duplicate_create_is_409_resource_already_exists(target: Target, names) -> None:
    name = names("dup")
    create(target, name, target.external_entity())
    body = {"name": name, "config": {"served_entities": [target.external_entity()]}}
    # databricks/cli libs/testserver/serving_endpoints.go ServingEndpointCreate: 409
    _error(target.http("POST", API, body), 409, "RESOURCE_ALREADY_EXISTS")
    assert target.http("GET", f"{API}/{name}").status_code == 200  # the first one is untouched


def test_update_while_one_is_in_progress_is_409_resource_conflict(target: Target, names) -> None:
    # an update takes time on every target: the fake is told to be slow, the local workspace
    # starts a scoring server for a new registered entity, Databricks rolls out the new config
    kind = "external" if target.kind == LIVE else "registered"
    name = names("conflict")
    create(target, name, target.entity(kind, "a"))
    if target.fake is not None:
        target.fake.set_faults(ready_seconds=3.0)
    first = {"served_entities": [target.entity(kind, "b")]}
    r = target.http("PUT", f"{API}/{name}/config", first)
    assert r.status_code == 200, r.text
    assert r.json()["state"]["config_update"] == "IN_PROGRESS"
    second = {"served_entities": [target.entity(kind, "c")]}
    _error(target.http("PUT", f"{API}/{name}/config", second), 409, "RESOURCE_CONFLICT")
    if target.fake is not None:
        target.fake.set_faults(ready_seconds=None)
    ep = target.wait_ready(name)
    assert entity_names(ep) == ["b"]  # the refused one left no trace


@pytest.mark.targets(
    FAKE,
    reason="a failed update is forced with the fake's fault injection "
    "(fail_next_update); a real workspace or model cannot be told to fail",
)
def test_failed_update_keeps_the_old_config_serving_then_recovers(target: Target, names) -> None:
    name = names("failed")
    create(target, name, target.registered_entity("a"))
    target.fake.set_faults(fail_next_update="b")
    r = target.http("PUT", f"{API}/{name}/config", {"served_entities": [target.registered_entity("b")]})
    assert r.status_code == 200, r.text
    ep = target.wait(name, lambda e: e["state"]["config_update"] == "UPDATE_FAILED", "UPDATE_FAILED")
    # the last good config keeps serving (state.ready stays READY, the old entity answers)
    assert ep["state"]["ready"] == "READY"
    assert entity_names(ep) == ["a"]
    r = ask(target, name)
    assert_chat_answer(r)
    assert r.served_model_name in (None, "a")
    # recovery: the same update again succeeds, and so does a tags change meanwhile
    assert target.http("PATCH", f"{API}/{name}/tags", {"add_tags": [{"key": "recovered", "value": "yes"}]}).status_code == 200
    r = target.http("PUT", f"{API}/{name}/config", {"served_entities": [target.registered_entity("b")]})
    assert r.status_code == 200, r.text
    assert_serves_only(target, name, "b")


@pytest.mark.targets(FAKE, LOCAL, reason="needs a registered model version; the live run creates external-model endpoints only")
def test_switching_between_registered_and_external_model_is_400(target: Target, names) -> None:
    # "an endpoint cannot switch between external and non-external entities" (ServedEntityInput
    # docs, databricks-sdk serving.py; the CLI's resources.yml recreates on this change)
    name = names("switch")
    create(target, name, target.external_entity("a"))
    r = target.http("PUT", f"{API}/{name}/config", {"served_entities": [target.registered_entity("b")]})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    ep = target.http("GET", f"{API}/{name}").json()
    assert ep["state"]["config_update"] == "NOT_UPDATING"
    assert entity_names(ep) == ["a"]


@pytest.mark.targets(
    FAKE, LOCAL, reason="inference tables on Databricks write to a Unity Catalog schema of the user's; the live run creates none"
)
def test_inference_table_location_change_while_enabled_is_400(target: Target, names) -> None:
    # "On update, you have to disable inference table first in order to change the catalog name /
    # schema name / prefix" (AiGatewayInferenceTableConfig, databricks-sdk serving.py)
    name = names("inftable")
    create(target, name, target.external_entity())
    table = {"catalog_name": "main", "schema_name": "conformance", "table_name_prefix": "one", "enabled": True}
    gateway = f"{API}/{name}/ai-gateway"
    assert target.http("PUT", gateway, {"inference_table_config": table}).status_code == 200
    moved = {**table, "table_name_prefix": "two"}
    _error(target.http("PUT", gateway, {"inference_table_config": moved}), 400, "INVALID_PARAMETER_VALUE")
    got = target.http("GET", f"{API}/{name}").json()["ai_gateway"]["inference_table_config"]
    assert got["table_name_prefix"] == "one"
    # disable, then set the new location: accepted
    assert target.http("PUT", gateway, {"inference_table_config": {**table, "enabled": False}}).status_code == 200
    r = target.http("PUT", gateway, {"inference_table_config": moved})
    assert r.status_code == 200, r.text
    got = target.http("GET", f"{API}/{name}").json()["ai_gateway"]["inference_table_config"]
    assert got["table_name_prefix"] == "two" and got["enabled"] is True
