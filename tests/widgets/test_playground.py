"""The chat playground against the fake workspace."""

from __future__ import annotations

import pytest

from llmops_nb.config import EndpointConfig
from llmops_nb.endpoints import deploy
from llmops_nb.widgets import chat_playground


@pytest.fixture
def endpoint(fake_workspace):
    w = fake_workspace.client()
    cfg = EndpointConfig(name="pg", served_entities=[{"entity_name": "m", "entity_version": "1"}])
    deploy(w, cfg, poll_interval=0.1, progress=False)
    return w


def test_a_conversation_with_latency_and_tokens(fake_workspace, endpoint):
    pg = chat_playground(endpoint, "pg", max_tokens=32)
    pg.prompt.value = "What is MLflow?"
    pg.max_tokens.value, pg.temperature.value = 16, 0.5
    pg.send_button.click()
    assert pg.prompt.value == "" and len(pg.results) == 1
    first = pg.results[0]
    assert first.completion_tokens > 0 and first.latency_ms > 0
    assert "What is MLflow?" in pg.transcript.value and f"{first.latency_ms:.0f} ms" in pg.transcript.value
    assert f"{first.completion_tokens} completion tokens" in pg.transcript.value
    pg.prompt.value = "And <b>why</b>?"
    pg.send_button.click()
    assert "&lt;b&gt;why&lt;/b&gt;" in pg.transcript.value  # user text is escaped
    body = [r for r in fake_workspace.requests() if r["path"].endswith("/invocations")][-1]["body"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 16 and body["temperature"] == 0.5
    pg.clear_button.click()
    assert pg.messages == [] and pg.transcript.value == ""


def test_empty_prompt_and_errors_are_shown(fake_workspace, endpoint):
    pg = chat_playground(endpoint, "no-such-endpoint")
    pg.send_button.click()
    assert pg.status.value == "type a prompt first"
    pg.prompt.value = "hello"
    pg.send_button.click()
    assert "no-such-endpoint" in pg.status.value and pg.results == []
    assert not pg.send_button.disabled
