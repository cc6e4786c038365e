"""Conformance: create (each endpoint kind), get, list, query, update config, AI gateway, tags,
removals and delete, through the real databricks-sdk, on every target."""

from __future__ import annotations

import time

import pytest
from conformance_steps import API, ask, assert_chat_answer, assert_serves_only, create, entity_names, routes_of
from conformance_targets import FAKE, LIVE, LOCAL, SECRET_VALUE, Target
from databricks.sdk.service.serving import (
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    EndpointTag,
    ServedEntityInput,
    TrafficConfig,
)


def _lifecycle(target: Target, name: str, entity: dict) -> dict:
    """create -> GET -> list -> query -> delete -> 404; returns the GET JSON after create."""
    ep = create(target, name, entity)
    assert ep["name"] == name and ep["id"] and ep["creator"] and ep["creation_timestamp"] > 0
    served = ep["config"]["served_entities"]
    assert len(served) == 1 and served[0]["name"]
    # one entity and no traffic_config: the backend routes 100% to it and echoes that
    # (databricks/cli libs/testserver/serving_endpoints.go, defaultTrafficConfig)
    assert routes_of(ep["config"]) == {served[0]["name"]: 100}
    assert "pending_config" not in ep
    # always echoed by the backend (libs/testserver ServingEndpointCreate: ForceSendFields
    # PermissionLevel, RouteOptimized, Description); the creator can manage its endpoint
    assert ep["permission_level"] == "CAN_MANAGE"
    assert "route_optimized" in ep and "description" in ep, sorted(ep)
    # "Endpoint invocation url if route optimization is enabled for endpoint" (databricks-sdk-py
    # service/serving.py, ServingEndpointDetailed.endpoint_url): not on this one
    assert ep["route_optimized"] is False and "endpoint_url" not in ep, ep.get("endpoint_url")
    listed = {e.name for e in target.client().serving_endpoints.list()}
    assert name in listed
    assert_chat_answer(ask(target, name))
    target.client().serving_endpoints.delete(name)
    r = target.http("GET", f"{API}/{name}")
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert name not in {e.name for e in target.client().serving_endpoints.list()}
    return ep


@pytest.mark.targets(
    FAKE,
    LOCAL,
    reason="a custom-model endpoint on Databricks needs a registered "
    "UC model and provisions billed compute for many minutes; the live run "
    "creates external-model endpoints only",
)
def test_registered_model_endpoint_lifecycle(target: Target, names) -> None:
    entity = target.registered_entity()
    ep = _lifecycle(target, names("custom"), entity)
    served = ep["config"]["served_entities"][0]
    assert served["entity_name"] == entity["entity_name"]
    assert served["entity_version"] == entity["entity_version"]
    assert served["state"]["deployment"] == "DEPLOYMENT_READY"


def test_external_model_endpoint_lifecycle(target: Target, names, provider) -> None:
    name = names("external")
    ep = _lifecycle(target, name, target.external_entity())
    ext = ep["config"]["served_entities"][0]["external_model"]
    assert ext["provider"] == "openai" and ext["task"] == "llm/v1/chat"
    # the secret reference is echoed; a plaintext key never is (libs/testserver clearExternalModelSecrets)
    assert ext["openai_config"]["openai_api_key"] == target.secret_ref
    assert "openai_api_key_plaintext" not in ext["openai_config"]
    if target.kind != LIVE:
        assert provider.authorizations() == [f"Bearer {SECRET_VALUE}"]  # the key reached the provider
        assert provider.requests[0]["body"]["model"] == target.external_model


def test_create_accepts_every_documented_top_level_field(target: Target, names) -> None:
    """POST body fields of the serving API (databricks-sdk serving.py create(); issue 14 point 10)."""
    name = names("fields")
    body = {
        "name": name,
        "config": {"served_entities": [target.external_entity()]},
        "description": "conformance: every field",
        "route_optimized": False,
        "email_notifications": {"on_update_failure": ["nobody@example.com"]},
        "tags": [{"key": "suite", "value": "conformance"}],
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    if target.kind != LIVE:  # a real workspace only takes a budget policy that exists there
        body["budget_policy_id"] = "conformance-policy"
    r = target.http("POST", API, body)
    assert r.status_code == 200, r.text[:300]
    ep = target.wait_ready(name)
    assert ep["description"] == body["description"] and ep["route_optimized"] is False
    assert ep["email_notifications"] == body["email_notifications"]
    # accepted on create, never populated by GET (the API shows effective_budget_policy_id):
    # databricks/cli bundle/direct/dresources/resources.yml, ignore_remote_changes
    assert not ep.get("budget_policy_id")
    assert ep["ai_gateway"]["usage_tracking_config"] == {"enabled": True}
    assert {t["key"]: t["value"] for t in ep["tags"]} == {"suite": "conformance"}


def test_foundation_model_endpoint_is_listed_ready_and_answers(target: Target) -> None:
    """The workspace's pay-per-token endpoint (local: SmolLM2; live: a Databricks-hosted model)."""
    name = target.foundation()
    ep = target.http("GET", f"{API}/{name}").json()
    assert ep["name"] == name and ep["state"]["ready"] == "READY", ep
    assert ep["config"]["served_entities"][0].get("foundation_model"), ep["config"]
    r = target.http("GET", API)
    assert name in {e["name"] for e in r.json()["endpoints"]}
    assert_chat_answer(ask(target, name, "What is 2 + 2?"))


def test_update_config_adds_then_removes_a_served_entity(target: Target, names) -> None:
    name = names("update")
    first = create(target, name, target.external_entity("a"))
    w = target.client()
    w.serving_endpoints.update_config(
        name=name,
        served_entities=[
            ServedEntityInput.from_dict(target.external_entity("a")),
            ServedEntityInput.from_dict(target.external_entity("b")),
        ],
        traffic_config=TrafficConfig.from_dict(
            {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 50},
                    {"served_entity_name": "b", "traffic_percentage": 50},
                ]
            }
        ),
    )
    ep = target.wait_ready(name)
    assert entity_names(ep) == ["a", "b"]
    assert routes_of(ep["config"]) == {"a": 50, "b": 50}
    assert ep["config"]["config_version"] > first["config"]["config_version"]
    # removal: an update without "a" removes it, and the single entity gets 100% again
    w.serving_endpoints.update_config(name=name, served_entities=[ServedEntityInput.from_dict(target.external_entity("b"))])
    assert_serves_only(target, name, "b")


def test_ai_gateway_put_then_removed(target: Target, names) -> None:
    name = names("gateway")
    create(target, name, target.external_entity())
    w = target.client()
    limit = AiGatewayRateLimit(
        calls=100, key=AiGatewayRateLimitKey.ENDPOINT, renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE
    )
    out = w.serving_endpoints.put_ai_gateway(
        name, rate_limits=[limit], usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True)
    )
    assert out.rate_limits == [limit] and out.usage_tracking_config.enabled is True
    gw = target.http("GET", f"{API}/{name}").json()["ai_gateway"]
    assert gw["rate_limits"] == [{"calls": 100, "key": "endpoint", "renewal_period": "minute"}]
    assert gw["usage_tracking_config"] == {"enabled": True}
    assert_chat_answer(ask(target, name))  # 1 call of 100: not limited
    # removal: an empty PUT clears the gateway (databricks/cli libs/testserver
    # ServingEndpointPutAiGateway: no fields -> AiGateway nil; the CLI's direct deploy sends it)
    w.serving_endpoints.put_ai_gateway(name)
    ep = target.http("GET", f"{API}/{name}").json()
    assert "ai_gateway" not in ep, ep["ai_gateway"]
    assert w.serving_endpoints.get(name).ai_gateway is None


def test_ai_gateway_rate_limit_is_enforced_with_429(target: Target, names) -> None:
    name = names("limited")
    create(target, name, target.external_entity())
    target.client().serving_endpoints.put_ai_gateway(
        name,
        rate_limits=[
            AiGatewayRateLimit(calls=1, key=AiGatewayRateLimitKey.ENDPOINT, renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE)
        ],
    )
    body = {"messages": [{"role": "user", "content": "one"}], "max_tokens": 4}
    statuses = []
    for _ in range(5):  # a live gateway may take a moment to apply the limit
        statuses.append(target.http("POST", f"/serving-endpoints/{name}/invocations", body).status_code)
        if statuses[-1] == 429:
            break
        time.sleep(target.poll_seconds)
    assert statuses[0] == 200 and statuses[-1] == 429, statuses


def test_tags_patch_adds_and_deletes(target: Target, names) -> None:
    name = names("tags")
    create(
        target, name, target.external_entity(), tags=[EndpointTag(key="team", value="ml"), EndpointTag(key="stage", value="dev")]
    )
    w = target.client()
    out = w.serving_endpoints.patch(
        name,
        add_tags=[EndpointTag(key="stage", value="prod"), EndpointTag(key="owner", value="conformance")],
        delete_tags=["team"],
    )
    expected = {"stage": "prod", "owner": "conformance"}
    assert {t.key: t.value for t in out.tags} == expected
    tags = target.http("GET", f"{API}/{name}").json()["tags"]
    assert {t["key"]: t.get("value") for t in tags} == expected


def test_query_answers_the_openai_chat_shape_over_raw_http(target: Target, names) -> None:
    name = names("query")
    create(target, name, target.external_entity())
    r = target.http(
        "POST",
        f"/serving-endpoints/{name}/invocations",
        {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 8, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.targets(
    FAKE,
    LOCAL,
    reason="the suite never sends a plaintext API key to a real workspace (Databricks would store it as a managed secret)",
)
def test_a_plaintext_key_is_never_echoed(target: Target, names, provider) -> None:
    name = names("plain")
    entity = target.external_entity()
    config = entity["external_model"]["openai_config"]
    del config["openai_api_key"]
    config["openai_api_key_plaintext"] = SECRET_VALUE
    create(target, name, entity)
    # the backend keeps *_plaintext keys as secrets and never returns them
    # (databricks/cli libs/testserver/serving_endpoints.go clearExternalModelSecrets)
    for path in (f"{API}/{name}", API):
        assert SECRET_VALUE not in target.http("GET", path).text
    assert_chat_answer(ask(target, name))
    assert provider.authorizations() == [f"Bearer {SECRET_VALUE}"]


@pytest.mark.targets(
    FAKE,
    reason="body parsing is shared by both workspaces: the fake checks the "
    "legacy form without starting another scoring server; live would need a "
    "registered UC model",
)
def test_legacy_served_models_are_accepted(target: Target, names) -> None:
    """``served_models`` (deprecated, still accepted: EndpointCoreConfigInput.served_models)."""
    name = names("legacy")
    entity = target.registered_entity()
    r = target.http(
        "POST",
        API,
        {
            "name": name,
            "config": {
                "served_models": [
                    {
                        "model_name": entity["entity_name"],
                        "model_version": entity["entity_version"],
                        "workload_size": "Small",
                        "scale_to_zero_enabled": True,
                    }
                ]
            },
        },
    )
    assert r.status_code == 200, r.text[:300]
    target.wait_ready(name)
    assert_chat_answer(ask(target, name))
