"""Point 11 of issue 14: what the local workspace cannot do it says; what it can do it does.

Warnings come back in the write's answer (``warnings``, one line per field), in the served
entities' build logs and state message; GET stays Databricks-shaped. Token limits and the
``user`` key are enforced, with 429 and Retry-After.
"""

from __future__ import annotations

import requests
from databricks.sdk.service.serving import (
    AiGatewayGuardrailParameters,
    AiGatewayGuardrails,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    FallbackConfig,
)
from ws_helpers import chat, core, entity, post, ready, wait_until

API = "/api/2.0/serving-endpoints"
MINUTE = AiGatewayRateLimitRenewalPeriod.MINUTE


def _headers(ws) -> dict:
    return {"Authorization": f"Bearer {ws.token}"}


def test_create_says_what_is_not_applied_one_line_per_field(w, ws):
    r = post(
        ws,
        API,
        {
            "name": "note-all",
            "route_optimized": True,
            "budget_policy_id": "p-1",
            "email_notifications": {"on_update_failure": ["ops@example.com"]},
            "config": {
                "served_entities": [
                    {
                        "entity_name": "m",
                        "entity_version": "1",
                        "workload_type": "GPU_SMALL",
                        "workload_size": "Large",
                        "scale_to_zero_enabled": True,
                        "min_provisioned_throughput": 0,
                        "max_provisioned_throughput": 100,
                    }
                ]
            },
            "ai_gateway": {
                "guardrails": {"input": {"safety": True}},
                "inference_table_config": {"catalog_name": "c", "schema_name": "s", "enabled": True},
                "rate_limits": [{"calls": 5, "key": "user_group", "principal": "team", "renewal_period": "minute"}],
            },
        },
    )
    assert r.status_code == 200, r.text
    warnings = r.json()["warnings"]
    fields = [line.split(":", 1)[0].split("=", 1)[0] for line in warnings]
    assert fields == [
        "config.served_entities[0].workload_type",
        "config.served_entities[0].workload_size",
        "config.served_entities[0].scale_to_zero_enabled",
        "config.served_entities[0].min_provisioned_throughput",
        "config.served_entities[0].max_provisioned_throughput",
        "ai_gateway.rate_limits[0].key",
        "ai_gateway.guardrails",
        # inference tables are written locally now (workspace/inference_table.py): no line
        "route_optimized",
        "email_notifications",
        "budget_policy_id",
    ]
    assert all("\n" not in line for line in warnings)
    assert "GPU_SMALL" in warnings[0] and "CPU" in warnings[0]
    # GET is Databricks-shaped: the fields are echoed, no warnings key
    got = requests.get(f"{ws.host}{API}/note-all", headers=_headers(ws), timeout=10).json()
    assert "warnings" not in got
    assert got["ai_gateway"]["guardrails"] == {"input": {"safety": True}}
    # the entity's state message and build logs say it too
    ep = wait_until(w, "note-all", ready)
    message = ep.config.served_entities[0].state.deployment_state_message
    assert "not applied by the local workspace: workload_type, workload_size" in message
    logs = w.serving_endpoints.build_logs("note-all", "m-1").logs
    assert "WARNING (local workspace): config.served_entities[0].workload_type" in logs
    assert "ai_gateway.guardrails" in logs


def test_a_config_the_workspace_fully_applies_has_no_warnings(ws):
    r = post(
        ws,
        API,
        {
            "name": "note-none",
            "config": {
                "served_entities": [
                    {"entity_name": "m", "entity_version": "1", "workload_type": "CPU", "scale_to_zero_enabled": False}
                ]
            },
            "ai_gateway": {
                "usage_tracking_config": {"enabled": True},
                "rate_limits": [{"calls": 5, "key": "user", "renewal_period": "minute"}],
            },
        },
    )
    assert r.status_code == 200 and "warnings" not in r.json()


def test_gateway_and_config_updates_warn_too(w, ws):
    w.serving_endpoints.create_and_wait(name="note-upd", config=core("note-upd", entity("m")))
    r = requests.put(
        f"{ws.host}{API}/note-upd/ai-gateway",
        headers=_headers(ws),
        timeout=10,
        json={
            "fallback_config": {"enabled": True},
            "rate_limits": [{"tokens": 10, "key": "service_principal", "renewal_period": "minute"}],
        },
    )
    assert r.status_code == 200
    assert [x.split("=")[0].split(":")[0] for x in r.json()["warnings"]] == [
        "ai_gateway.rate_limits[0].key"
    ]  # fallbacks are applied (workspace/fallback.py)
    r = requests.put(
        f"{ws.host}{API}/note-upd/config",
        headers=_headers(ws),
        timeout=10,
        json={"served_entities": [{"entity_name": "m", "entity_version": "2", "workload_type": "GPU_LARGE"}]},
    )
    assert r.status_code == 200
    assert r.json()["warnings"][0].startswith("config.served_entities[0].workload_type='GPU_LARGE'")
    # the SDK reads the same answers (the extra key is ignored by its dataclasses)
    w.serving_endpoints.put_ai_gateway(
        "note-upd",
        guardrails=AiGatewayGuardrails(input=AiGatewayGuardrailParameters(safety=True)),
        fallback_config=FallbackConfig(enabled=False),
    )


def test_token_limit_answers_429_with_retry_after(w, ws):
    w.serving_endpoints.create_and_wait(name="note-tok", config=core("note-tok", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        "note-tok", rate_limits=[AiGatewayRateLimit(renewal_period=MINUTE, tokens=20, key=AiGatewayRateLimitKey.ENDPOINT)]
    )
    path = "/serving-endpoints/note-tok/invocations"
    used, statuses = 0, []
    for _ in range(6):
        r = post(ws, path, chat("one two three four five"))
        statuses.append(r.status_code)
        if r.status_code == 200:
            used += r.json()["usage"]["total_tokens"]
        else:
            break
    assert statuses[-1] == 429 and used >= 20 and statuses.count(200) == len(statuses) - 1
    assert r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "20 tokens per minute" in r.json()["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_user_limit_with_a_principal_counts_only_that_requester(w, ws):
    w.serving_endpoints.create_and_wait(name="note-who", config=core("note-who", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        "note-who",
        rate_limits=[
            AiGatewayRateLimit(renewal_period=MINUTE, calls=1, key=AiGatewayRateLimitKey.USER, principal="alice"),
            AiGatewayRateLimit(renewal_period=MINUTE, tokens=1000, key=AiGatewayRateLimitKey.USER),
        ],
    )
    path = "/serving-endpoints/note-who/invocations"
    assert post(ws, path, chat(), user="alice").status_code == 200
    second = post(ws, path, chat(), user="alice")
    assert second.status_code == 429 and "alice" not in second.text
    assert [post(ws, path, chat(), user="bob").status_code for _ in range(3)] == [200] * 3


def test_user_group_limits_are_not_enforced(w, ws):
    w.serving_endpoints.create_and_wait(name="note-grp", config=core("note-grp", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        "note-grp",
        rate_limits=[AiGatewayRateLimit(renewal_period=MINUTE, calls=1, key=AiGatewayRateLimitKey.USER_GROUP, principal="g")],
    )
    path = "/serving-endpoints/note-grp/invocations"
    assert [post(ws, path, chat()).status_code for _ in range(3)] == [200] * 3


def test_a_limit_without_key_is_per_endpoint(w, ws):
    """The SDK documents ``endpoint`` as the default key (serving.AiGatewayRateLimit.key)."""
    w.serving_endpoints.create_and_wait(name="note-key", config=core("note-key", entity("m")))
    r = requests.put(
        f"{ws.host}{API}/note-key/ai-gateway",
        headers=_headers(ws),
        timeout=10,
        json={"rate_limits": [{"calls": 1, "renewal_period": "minute"}]},
    )
    assert r.status_code == 200, r.text
    path = "/serving-endpoints/note-key/invocations"
    assert post(ws, path, chat(), user="alice").status_code == 200
    assert post(ws, path, chat(), user="bob").status_code == 429
