"""External models: forwarded to the fake provider with the key from the environment."""

from __future__ import annotations

import pytest
from ws_helpers import chat, post

from llmops_nb.testing import fake_workspace

KEY = "sk-test-0123456789abcdefSECRET"
REF = "{{secrets/llm/openai}}"


@pytest.fixture
def ext_ws(tmp_path, monkeypatch, fake_provider):
    monkeypatch.setenv("LLMOPS_ANTHROPIC_API_BASE", fake_provider.base_url)
    monkeypatch.setenv("LLMOPS_SECRET_LLM_OPENAI", KEY)
    monkeypatch.setenv("LLMOPS_SECRET_LLM_ANTHROPIC", KEY)
    with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        yield ws


def _create(ws, name, external_model):
    body = {
        "name": name,
        "config": {"served_entities": [{"external_model": external_model}]},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    r = post(ws, "/api/2.0/serving-endpoints", body)
    assert r.status_code == 200, r.text
    ep = ws.client().serving_endpoints.wait_get_serving_endpoint_not_updating(name)
    assert ep.state.ready.value == "READY"


def test_openai_external_model(ext_ws, fake_provider):
    _create(
        ext_ws,
        "ext-openai",
        {
            "name": "gpt-4o-mini",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": REF, "openai_api_base": fake_provider.base_url},
        },
    )
    r = post(ext_ws, "/serving-endpoints/ext-openai/invocations", chat("ping pong"))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "[provider:gpt-4o-mini] ping pong"
    assert r.headers["served-model-name"] == "gpt-4o-mini"
    assert fake_provider.authorizations() == [f"Bearer {KEY}"]
    assert fake_provider.requests[0]["body"]["model"] == "gpt-4o-mini"
    _assert_key_nowhere(ext_ws)


def test_anthropic_external_model(ext_ws, fake_provider):
    _create(
        ext_ws,
        "ext-claude",
        {
            "name": "claude-x",
            "provider": "anthropic",
            "task": "llm/v1/chat",
            "anthropic_config": {"anthropic_api_key": "{{secrets/llm/anthropic}}"},
        },
    )
    body = {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello"}], "max_tokens": 10}
    r = post(ext_ws, "/serving-endpoints/ext-claude/invocations", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["message"]["content"] == "[provider:claude-x] hello"
    assert out["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    sent = fake_provider.requests[0]
    assert sent["path"] == "/v1/messages" and sent["x_api_key"] == KEY
    assert sent["body"]["system"] == "be nice"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hello"}]
    _assert_key_nowhere(ext_ws)


def test_missing_secret_is_a_clear_400(ext_ws, fake_provider, monkeypatch):
    _create(
        ext_ws,
        "ext-nokey",
        {
            "name": "gpt",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": "{{secrets/llm/missing}}", "openai_api_base": fake_provider.base_url},
        },
    )
    r = post(ext_ws, "/serving-endpoints/ext-nokey/invocations", chat())
    assert r.status_code == 400
    assert "LLMOPS_SECRET_LLM_MISSING" in r.json()["message"]
    assert fake_provider.requests == []


def test_provider_errors_map_to_databricks_errors(ext_ws, fake_provider):
    _create(
        ext_ws,
        "ext-err",
        {
            "name": "gpt",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": REF, "openai_api_base": fake_provider.base_url},
        },
    )
    fake_provider.fail_status = 429
    r = post(ext_ws, "/serving-endpoints/ext-err/invocations", chat())
    assert r.status_code == 429 and "Retry-After" in r.headers
    fake_provider.fail_status = 500
    r = post(ext_ws, "/serving-endpoints/ext-err/invocations", chat())
    assert r.status_code == 503 and KEY not in r.text


def _assert_key_nowhere(ws) -> None:
    assert KEY not in str(ws.requests())
    assert "{{secrets/llm/" in str(ws.requests())  # references are recorded as references
    for path in ws.home.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
