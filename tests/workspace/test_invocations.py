"""Invocations over HTTP: SDK query, the OpenAI route, traffic split, rate limits, usage, faults."""

from __future__ import annotations

import collections
import json

import pytest
from databricks.sdk.service.serving import (
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    ChatMessage,
    ChatMessageRole,
)
from ws_helpers import chat, core, entity, post


@pytest.fixture(scope="module")
def split(ws):
    w = ws.client()
    w.serving_endpoints.create_and_wait(
        name="inv-split", config=core("inv-split", entity("m", "1", "a"), entity("m", "2", "b"), routes={"a": 80, "b": 20})
    )
    return "inv-split"


def test_sdk_query_returns_choices_usage_and_served_model(w, split):
    r = w.serving_endpoints.query(
        name=split,
        messages=[
            ChatMessage(role=ChatMessageRole.SYSTEM, content="be brief"),
            ChatMessage(role=ChatMessageRole.USER, content="tell me a story"),
        ],
        max_tokens=64,
    )
    assert r.served_model_name in ("a", "b")
    assert r.choices[0].message.content == f"[{r.served_model_name}] echo: tell me a story"
    assert r.usage.prompt_tokens == 6 and r.usage.completion_tokens == 6
    assert r.usage.total_tokens == 12


def test_max_tokens_truncates_deterministically(ws, split):
    r = post(ws, f"/serving-endpoints/{split}/invocations", chat("one two three", max_tokens=2))
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_openai_style_route(ws, split):
    r = post(ws, "/serving-endpoints/chat/completions", {"model": split, **chat("hi there")})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert r.headers["served-model-name"] in ("a", "b")


def test_a_served_model_answers_at_its_own_url_whatever_the_split(ws, w, split):
    """POST /serving-endpoints/{name}/served-models/{entity}/invocations (Databricks docs, "query
    individual models behind an endpoint"): the 20% entity every time; an unknown one is a 404."""
    from llmops_nb.chat.client import chat as ask

    for _ in range(5):
        r = post(ws, f"/serving-endpoints/{split}/served-models/b/invocations", chat("hi"))
        assert r.status_code == 200 and r.headers["served-model-name"] == "b"
        assert r.json()["choices"][0]["message"]["content"] == "[b] echo: hi"
    missing = post(ws, f"/serving-endpoints/{split}/served-models/zz/invocations", chat("hi"))
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "zz" in missing.json()["message"]
    answer = ask(w, split, "hi", served_entity="b")  # through the SDK's authenticated client
    assert (answer.served_entity, answer.content) == ("b", "[b] echo: hi")


def test_traffic_split_is_exact(ws, split):
    counts = collections.Counter(
        post(ws, f"/serving-endpoints/{split}/invocations", chat("x")).headers["served-model-name"] for _ in range(100)
    )
    assert counts == {"a": 80, "b": 20}


def test_rate_limit_answers_429_with_retry_after(w, ws):
    w.serving_endpoints.create_and_wait(name="inv-rl", config=core("inv-rl", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        name="inv-rl",
        rate_limits=[
            AiGatewayRateLimit(renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE, calls=3, key=AiGatewayRateLimitKey.ENDPOINT)
        ],
        usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True),
    )
    statuses = [post(ws, "/serving-endpoints/inv-rl/invocations", chat("secret prompt words")) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert 1 <= int(statuses[-1].headers["Retry-After"]) <= 60
    lines = (ws.home / "usage" / "inv-rl.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3 and all(r["status"] == 200 for r in rows)
    assert rows[0]["prompt_tokens"] == 3 and rows[0]["served_entity"] == "m-1"
    assert set(rows[0]) == {
        "timestamp",
        "endpoint",
        "served_entity",
        "status",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }
    assert "secret prompt" not in "\n".join(lines)


def test_user_rate_limit_is_per_requester(w, ws):
    w.serving_endpoints.create_and_wait(name="inv-user", config=core("inv-user", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        name="inv-user",
        rate_limits=[
            AiGatewayRateLimit(renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE, calls=1, key=AiGatewayRateLimitKey.USER)
        ],
    )
    path = "/serving-endpoints/inv-user/invocations"
    assert post(ws, path, chat(), user="alice").status_code == 200
    assert post(ws, path, chat(), user="alice").status_code == 429
    assert post(ws, path, chat(), user="bob").status_code == 200


def test_sdk_retries_through_injected_429s(w, ws, split):
    ws.set_faults(rate_429=0.5, retry_after=1, seed=3)
    for _ in range(3):
        r = w.serving_endpoints.query(
            name=split, messages=[ChatMessage(role=ChatMessageRole.USER, content="again")], max_tokens=8
        )
        assert r.choices
    statuses = [q["status"] for q in ws.requests() if q["path"].endswith("/invocations")]
    assert 429 in statuses and statuses.count(200) == 3


def test_injected_503_and_latency(ws, split):
    ws.set_faults(rate_503=1.0, retry_after=2)
    r = post(ws, f"/serving-endpoints/{split}/invocations", chat())
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    ws.set_faults(rate_503=0.0, latency_ms=300)
    import time

    t0 = time.perf_counter()
    assert post(ws, f"/serving-endpoints/{split}/invocations", chat()).status_code == 200
    assert time.perf_counter() - t0 >= 0.3


def test_faults_on_api_routes(w, ws, split):
    ws.set_faults(rate_503=1.0, routes=["api"])
    assert post(ws, f"/serving-endpoints/{split}/invocations", chat()).status_code == 200
    import requests

    r = requests.get(f"{ws.host}/api/2.0/serving-endpoints/{split}", headers={"Authorization": f"Bearer {ws.token}"}, timeout=5)
    assert r.status_code == 503


def test_unknown_endpoint_is_404(ws):
    r = post(ws, "/serving-endpoints/nope/invocations", chat())
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_max_concurrency_fault(ws, split):
    from concurrent.futures import ThreadPoolExecutor

    ws.set_faults(max_concurrency=2, latency_ms=400)
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: post(ws, f"/serving-endpoints/{split}/invocations", chat()).status_code, range(6)))
    assert codes.count(200) >= 2 and codes.count(429) >= 1
    assert set(codes) <= {200, 429}
