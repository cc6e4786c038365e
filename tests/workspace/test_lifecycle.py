"""Endpoint lifecycle over HTTP with the real databricks-sdk: create, update, fail, delete."""

from __future__ import annotations

import pytest
from databricks.sdk.errors import NotFound, OperationFailed, ResourceConflict
from databricks.sdk.service.serving import (
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    ChatMessage,
    ChatMessageRole,
    EndpointTag,
    ServingEndpointDetailed,
)
from ws_helpers import core, entity, ready, wait_until


def _ask(w, name: str) -> str:
    r = w.serving_endpoints.query(
        name=name, messages=[ChatMessage(role=ChatMessageRole.USER, content="which one?")], max_tokens=16
    )
    return r.served_model_name


def test_create_is_in_progress_then_ready(w, ws):
    ep = w.serving_endpoints.create(
        name="life-create", config=core("life-create", entity("m", "1")), tags=[EndpointTag(key="team", value="x")]
    ).response
    assert ep.state.config_update.value == "IN_PROGRESS"
    assert ep.state.ready.value == "NOT_READY"
    assert ep.pending_config.served_entities[0].name == "m-1"
    assert ep.config is None
    ep = wait_until(w, "life-create", ready)
    assert ep.pending_config is None
    assert ep.config.config_version == 1
    e = ep.config.served_entities[0]
    assert e.state.deployment.value == "DEPLOYMENT_READY"
    assert e.state.deployment_state_message == "Fake served entity m-1 is ready."
    assert ep.config.traffic_config.routes[0].traffic_percentage == 100
    # filled only for route-optimized endpoints (databricks-sdk-py serving.py, ServingEndpointDetailed.endpoint_url)
    assert ep.endpoint_url is None
    assert ep.task == "llm/v1/chat" and ep.permission_level.value == "CAN_MANAGE"
    assert ep.tags == [EndpointTag(key="team", value="x")]
    # the JSON round-trips through the SDK's dataclasses
    assert ServingEndpointDetailed.from_dict(ep.as_dict()) == ep
    names = [e.name for e in w.serving_endpoints.list()]
    assert "life-create" in names and "databricks-smollm2-135m-instruct" in names


def test_endpoint_url_only_for_a_route_optimized_endpoint(w, ws):
    w.serving_endpoints.create_and_wait(name="life-plain", config=core("life-plain", entity("m", "1")))
    w.serving_endpoints.create_and_wait(name="life-ro", config=core("life-ro", entity("m", "1")), route_optimized=True)
    assert w.serving_endpoints.get("life-plain").endpoint_url is None
    assert w.serving_endpoints.get("databricks-smollm2-135m-instruct").endpoint_url is None
    ro = w.serving_endpoints.get("life-ro")
    assert ro.route_optimized is True and ro.endpoint_url and ro.endpoint_url.endswith("/serving-endpoints/life-ro/invocations")
    listed = {e["name"]: e for e in w.api_client.do("GET", "/api/2.0/serving-endpoints")["endpoints"]}
    assert "endpoint_url" not in listed["life-plain"]


def test_create_and_wait_and_duplicate(w):
    ep = w.serving_endpoints.create_and_wait(name="life-dup", config=core("life-dup", entity("m", "2")))
    assert ep.state.config_update.value == "NOT_UPDATING"
    with pytest.raises(Exception) as err:
        w.serving_endpoints.create(name="life-dup", config=core("life-dup", entity("m", "2")))
    assert getattr(err.value, "error_code", "") == "RESOURCE_ALREADY_EXISTS"


def test_update_keeps_old_config_serving_and_conflicts(w, ws):
    ws.set_faults(ready_seconds=0.3)
    w.serving_endpoints.create_and_wait(name="life-upd", config=core("life-upd", entity("m", "1", "a")))
    ws.set_faults(ready_seconds=2.0)
    ep = w.serving_endpoints.update_config(name="life-upd", served_entities=[entity("m", "2", "b")]).response
    assert ep.state.config_update.value == "IN_PROGRESS"
    ep = w.serving_endpoints.get("life-upd")
    assert ep.pending_config.served_entities[0].name == "b"
    assert ep.pending_config.served_entities[0].state.deployment.value == "DEPLOYMENT_CREATING"
    assert ep.config.served_entities[0].name == "a"
    assert ep.state.ready.value == "READY"
    assert _ask(w, "life-upd") == "a"  # the old config serves meanwhile
    with pytest.raises(ResourceConflict):
        w.serving_endpoints.update_config(name="life-upd", served_entities=[entity("m", "3")])
    ep = wait_until(w, "life-upd", ready)
    assert [e.name for e in ep.config.served_entities] == ["b"]
    assert ep.config.config_version == 2
    assert _ask(w, "life-upd") == "b"
    logs = w.serving_endpoints.logs("life-upd", "b").logs
    assert "ready" in logs


def test_failed_update_keeps_previous_config(w, ws):
    w.serving_endpoints.create_and_wait(name="life-fail", config=core("life-fail", entity("m", "1", "good")))
    ws.set_faults(fail_next_update="bad")
    with pytest.raises(OperationFailed):
        w.serving_endpoints.update_config_and_wait(name="life-fail", served_entities=[entity("m", "2", "bad")])
    ep = w.serving_endpoints.get("life-fail")
    assert ep.state.config_update.value == "UPDATE_FAILED"
    assert ep.state.ready.value == "READY"
    bad = ep.pending_config.served_entities[0]
    assert bad.state.deployment.value == "DEPLOYMENT_FAILED"
    assert "failed to start" in bad.state.deployment_state_message
    assert "failed to start" in w.serving_endpoints.build_logs("life-fail", "bad").logs
    assert [e.name for e in ep.config.served_entities] == ["good"]
    assert _ask(w, "life-fail") == "good"
    # a failed update does not block the next one
    ep = w.serving_endpoints.update_config_and_wait(name="life-fail", served_entities=[entity("m", "3", "fixed")])
    assert [e.name for e in ep.config.served_entities] == ["fixed"]


def test_failed_create_is_not_ready(w, ws):
    ws.set_faults(fail_next_update="m-9")
    w.serving_endpoints.create(name="life-fcreate", config=core("life-fcreate", entity("m", "9")))
    ep = wait_until(w, "life-fcreate", lambda e: e.state.config_update.value != "IN_PROGRESS")
    assert ep.state.config_update.value == "UPDATE_FAILED"
    assert ep.state.ready.value == "NOT_READY"
    assert ep.config is None


def test_unchanged_entity_is_reused(w, ws):
    w.serving_endpoints.create_and_wait(name="life-reuse", config=core("life-reuse", entity("m", "1", "keep")))
    ws.set_faults(fail_next_update="keep")  # would fail if "keep" were restarted
    ep = w.serving_endpoints.update_config_and_wait(
        name="life-reuse",
        served_entities=[entity("m", "1", "keep"), entity("m", "2", "new")],
        traffic_config=core("x", routes={"keep": 50, "new": 50}).traffic_config,
    )
    assert sorted(e.name for e in ep.config.served_entities) == ["keep", "new"]


def test_ai_gateway_tags_and_delete(w):
    w.serving_endpoints.create_and_wait(name="life-gw", config=core("life-gw", entity("m")))
    gw = w.serving_endpoints.put_ai_gateway(
        name="life-gw",
        rate_limits=[
            AiGatewayRateLimit(
                renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE, calls=100, key=AiGatewayRateLimitKey.ENDPOINT
            )
        ],
        usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True),
    )
    assert gw.rate_limits[0].calls == 100 and gw.usage_tracking_config.enabled
    assert w.serving_endpoints.get("life-gw").ai_gateway.rate_limits[0].calls == 100
    tags = w.serving_endpoints.patch("life-gw", add_tags=[EndpointTag(key="a", value="1"), EndpointTag(key="b", value="2")])
    assert {t.key for t in tags.tags} == {"a", "b"}
    tags = w.serving_endpoints.patch("life-gw", delete_tags=["a"])
    assert [t.key for t in tags.tags] == ["b"]
    w.serving_endpoints.delete("life-gw")
    with pytest.raises(NotFound):
        w.serving_endpoints.get("life-gw")
    with pytest.raises(NotFound):
        w.serving_endpoints.delete("life-gw")


def test_system_endpoint_cannot_be_changed(w):
    fm = "databricks-smollm2-135m-instruct"
    assert w.serving_endpoints.get(fm).state.ready.value == "READY"
    with pytest.raises(Exception) as err:
        w.serving_endpoints.delete(fm)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(Exception) as err:
        w.serving_endpoints.update_config(name=fm, served_entities=[entity("m")])
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    r = w.serving_endpoints.query(name=fm, messages=[ChatMessage(role=ChatMessageRole.USER, content="hi")], max_tokens=8)
    assert r.choices[0].message.content and r.served_model_name == fm


def test_write_calls_are_recorded(w, ws):
    w.serving_endpoints.create_and_wait(name="life-rec", config=core("life-rec", entity("m")))
    w.serving_endpoints.get("life-rec")
    calls = ws.write_calls()
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/api/2.0/serving-endpoints")]
    assert calls[0]["body"]["name"] == "life-rec"
