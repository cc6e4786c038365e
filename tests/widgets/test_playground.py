"""The chat playground against the fake workspace."""

from __future__ import annotations

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.widgets import chat_playground


@pytest.fixture
def endpoint(fake_workspace):
    w = fake_workspace.client()
    cfg = EndpointConfig(name="pg", served_entities=[{"entity_name": "m", "entity_version": "1"}])
    deploy(w, cfg, poll_interval=0.1, progress=False)
    return w


def invocations(fake_workspace) -> list[dict]:
    return [r for r in fake_workspace.requests() if r["path"].endswith("/invocations")]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed-when-the-client-can"])
def test_a_conversation_with_latency_and_tokens(fake_workspace, endpoint, stream):
    pg = chat_playground(endpoint, "pg", max_tokens=32, stream=stream)
    pg.prompt.value = "What is MLflow?"
    pg.max_tokens.value, pg.temperature.value = 16, 0.5
    pg.send_button.click()  # returns at once: the answer comes in a thread
    assert pg.prompt.value == ""
    pg.wait(30)
    assert len(pg.results) == 1 and not pg.pending and pg.status.value == ""
    assert not pg.send_button.disabled and pg.stop_button.layout.display == "none"
    first = pg.results[0]
    assert first.completion_tokens > 0 and first.latency_ms > 0
    assert "What is MLflow?" in pg.transcript.value and f"{first.latency_ms:.0f} ms" in pg.transcript.value
    assert f"{first.completion_tokens} completion tokens" in pg.transcript.value
    if pg.stream:  # a streamed answer also shows its time to the first token
        assert first.ttft_ms is not None and f"(first token {first.ttft_ms:.0f} ms)" in pg.transcript.value
    pg.prompt.value = "And <b>why</b>?"
    pg.send_button.click()
    pg.wait(30)
    assert "&lt;b&gt;why&lt;/b&gt;" in pg.transcript.value  # user text is escaped
    body = invocations(fake_workspace)[-1]["body"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == first.content  # the conversation is kept
    assert body["max_tokens"] == 16 and body["temperature"] == 0.5
    assert bool(body.get("stream")) == pg.stream
    pg.clear_button.click()
    assert pg.messages == [] and pg.transcript.value == ""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed-when-the-client-can"])
def test_stop_ends_the_wait_and_drops_the_late_answer(fake_workspace, endpoint, stream):
    pg = chat_playground(endpoint, "pg", stream=stream)
    pg.send("first")
    fake_workspace.set_faults(hang_seconds=1.5)
    pg.prompt.value = "a slow one"
    pg.send_button.click()
    assert pg.pending and pg.send_button.disabled and pg.stop_button.layout.display is None
    assert "a slow one" in pg.transcript.value and "llmops-pending" in pg.transcript.value
    thread = pg._turn.thread
    pg.stop_button.click()
    assert not pg.pending and pg.status.value == "stopped" and not pg.send_button.disabled
    assert pg.stop_button.layout.display == "none" and "llmops-pending" not in pg.transcript.value
    assert pg.prompt.value == "a slow one"  # given back to edit or resend
    thread.join(30)
    assert not thread.is_alive()
    assert [m["content"] for m in pg.messages if m["role"] == "user"] == ["first"] and len(pg.results) == 1
    assert pg.status.value == "stopped"  # the late answer changed nothing
    fake_workspace.set_faults(hang_seconds=0)
    assert pg.send() is not None and len(pg.results) == 2


def test_empty_prompt_and_errors_are_shown(fake_workspace, endpoint):
    pg = chat_playground(endpoint, "no-such-endpoint")
    pg.send_button.click()
    assert pg.status.value == "type a prompt first"
    pg.prompt.value = "hello"
    pg.send_button.click()
    pg.wait(30)
    assert "no-such-endpoint" in pg.status.value and pg.results == []
    assert "Traceback" not in pg.status.value and "\n" not in pg.status.value
    assert not pg.send_button.disabled and pg.prompt.value == "hello"
