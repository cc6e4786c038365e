"""The AI gateway's fallback_config on the local workspace (workspace/fallback.py).

Two external-model entities, each on its own fake provider: the first answers 429 (or 503),
so the call goes to the next entity in the served entity list; the answer, its
``served-model-name`` and the usage record name the entity that answered.
"""

from __future__ import annotations

import json

import pytest
from ws_helpers import chat, post

from llmops_nb.testing import fake_provider as run_provider
from llmops_nb.testing import fake_workspace

KEY = "sk-fallback-0123456789SECRET"
REF = "{{secrets/llm/openai}}"


@pytest.fixture
def providers():
    with run_provider() as first, run_provider() as second:
        yield first, second


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_SECRET_LLM_OPENAI", KEY)
    with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as workspace:
        yield workspace


def _external(name: str, base: str) -> dict:
    return {
        "name": name,
        "external_model": {
            "name": name,
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": REF, "openai_api_base": base},
        },
    }


def _create(ws, name: str, providers, *, fallback: bool) -> None:
    first, second = providers
    body = {
        "name": name,
        "config": {
            "served_entities": [_external("gpt-a", first.base_url), _external("gpt-b", second.base_url)],
            # all traffic to the first: the second only ever answers as a fallback
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "gpt-a", "traffic_percentage": 100},
                    {"served_entity_name": "gpt-b", "traffic_percentage": 0},
                ]
            },
        },
        "ai_gateway": {"usage_tracking_config": {"enabled": True}, "fallback_config": {"enabled": fallback}},
    }
    r = post(ws, "/api/2.0/serving-endpoints", body)
    assert r.status_code == 200, r.text
    assert not [w for w in r.json().get("warnings", []) if "fallback" in w]
    ep = ws.client().serving_endpoints.wait_get_serving_endpoint_not_updating(name)
    assert ep.state.ready.value == "READY"


def _usage(ws, name: str) -> list[dict]:
    path = ws.home / "usage" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("status", [429, 503])
def test_first_provider_failing_falls_back_to_the_next_entity(ws, providers, status):
    first, second = providers
    _create(ws, "fb-on", providers, fallback=True)
    first.fail_status = status
    r = post(ws, "/serving-endpoints/fb-on/invocations", chat("ping"))
    assert r.status_code == 200, r.text
    assert r.headers["served-model-name"] == "gpt-b"
    assert r.json()["choices"][0]["message"]["content"] == "[provider:gpt-b] ping"
    assert len(first.requests) == 1 and len(second.requests) == 1  # tried in order, once each
    assert [u["served_entity"] for u in _usage(ws, "fb-on")] == ["gpt-b"]
    assert _usage(ws, "fb-on")[0]["status"] == 200
    # the SDK's query says so too (served_model_name comes from the header)
    got = ws.client().serving_endpoints.query("fb-on", **_sdk_chat("pong"))
    assert got.served_model_name == "gpt-b"


def test_no_fallback_when_disabled(ws, providers):
    first, second = providers
    _create(ws, "fb-off", providers, fallback=False)
    first.fail_status = 429
    r = post(ws, "/serving-endpoints/fb-off/invocations", chat("ping"))
    assert r.status_code == 429
    assert second.requests == []
    assert [(u["served_entity"], u["status"]) for u in _usage(ws, "fb-off")] == [("gpt-a", 429)]


def test_every_entity_failing_answers_the_last_error(ws, providers):
    first, second = providers
    _create(ws, "fb-all", providers, fallback=True)
    first.fail_status, second.fail_status = 429, 503
    r = post(ws, "/serving-endpoints/fb-all/invocations", chat("ping"))
    assert r.status_code == 503 and r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert len(first.requests) == 1 and len(second.requests) == 1
    assert [(u["served_entity"], u["status"]) for u in _usage(ws, "fb-all")] == [("gpt-b", 503)]


def test_a_client_error_does_not_fall_back(ws, providers):
    first, second = providers
    _create(ws, "fb-400", providers, fallback=True)
    first.fail_status = 400
    r = post(ws, "/serving-endpoints/fb-400/invocations", chat("ping"))
    assert r.status_code == 400
    assert second.requests == []


def _sdk_chat(text: str) -> dict:
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    return {"messages": [ChatMessage(role=ChatMessageRole.USER, content=text)], "max_tokens": 8}


def test_a_stream_falls_back_before_its_first_chunk(ws, providers):
    first, second = providers
    _create(ws, "fb-stream", providers, fallback=True)
    first.fail_status = 429
    r = post(ws, "/serving-endpoints/fb-stream/invocations", {**chat("ping"), "stream": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["served-model-name"] == "gpt-b"
    events = [line[len("data: ") :] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(
        (json.loads(e)["choices"][0]["delta"].get("content") or "") for e in events[:-1] if json.loads(e).get("choices")
    )
    assert text == "[provider:gpt-b] ping"
    assert len(first.requests) == 1 and len(second.requests) == 1
    assert [(u["served_entity"], u["status"]) for u in _usage(ws, "fb-stream")] == [("gpt-b", 200)]


def test_a_stream_whose_every_entity_fails_is_the_last_http_error(ws, providers):
    first, second = providers
    _create(ws, "fb-stream-all", providers, fallback=True)
    first.fail_status, second.fail_status = 503, 429
    r = post(ws, "/serving-endpoints/fb-stream-all/invocations", {**chat("ping"), "stream": True})
    assert r.status_code == 429, r.text
    assert [(u["served_entity"], u["status"]) for u in _usage(ws, "fb-stream-all")] == [("gpt-b", 429)]
