"""The chat playground against the fake workspace."""

from __future__ import annotations

import html
import json

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.testing import fake_workspace as run_workspace
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


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
TOOL = {
    "name": "lookup",
    "description": "find a term",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
}


@pytest.mark.parametrize(
    "box, text, said",
    [
        ("json_schema", '{"type": "object"', 'json schema: \'{"type": "object"\' is not allowed; JSON text'),
        ("json_schema", "[1, 2]", "json schema: '[1, 2]' is not allowed; a JSON object"),
        ("tool", '{"parameters": {}}', "tool: '{\"parameters\": {}}' is not allowed; a function with a name"),
        ("tool", '{"name": "f", "parameters": 3}', "tools[0].function.parameters: 3 is not allowed"),
    ],
)
def test_bad_json_in_a_box_is_one_line_and_nothing_is_sent(fake_workspace, endpoint, box, text, said):
    pg = chat_playground(endpoint, "pg")
    getattr(pg, box).value = text
    pg.prompt.value = "hello"
    fake_workspace.reset()
    assert pg.send() is None
    assert said in html.unescape(pg.status.value) and "\n" not in pg.status.value, pg.status.value
    assert invocations(fake_workspace) == [] and pg.prompt.value == "hello" and not pg.pending


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_json_schema_is_sent_as_response_format(fake_workspace, endpoint, stream):
    """Sent, not dropped: the fake's echo model cannot honour it and refuses it by name."""
    pg = chat_playground(endpoint, "pg", stream=stream)
    pg.json_schema.value = json.dumps(SCHEMA)
    pg.send("give JSON")
    body = invocations(fake_workspace)[-1]["body"]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    assert bool(body.get("stream")) == stream
    assert "response_format" in pg.status.value and pg.results == []


@pytest.mark.parametrize("spec", [TOOL, {"type": "function", "function": TOOL}], ids=["function", "openai-tool"])
def test_a_tool_call_is_shown_as_name_and_arguments(tmp_path, monkeypatch, fake_provider, spec):
    """An external OpenAI model (the fake provider) forced to call the tool: name(arguments) in the transcript."""
    monkeypatch.setenv("LLMOPS_SECRET_LLM_KEY", "sk-test-0123456789abcdefSECRET")
    with run_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        w = ws.client()
        external = {
            "name": "gpt",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": "{{secrets/llm/key}}", "openai_api_base": fake_provider.base_url},
        }
        deploy(w, EndpointConfig(name="ext", served_entities=[{"external_model": external}]), poll_interval=0.1, progress=False)
        pg = chat_playground(w, "ext")  # streams by default: a turn with a tool is asked whole
        pg.tool.value = json.dumps(spec)
        result = pg.send("what is MLflow?")
        sent = fake_provider.requests[-1]["body"]
        assert sent["tools"] == [{"type": "function", "function": TOOL}]
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "lookup"}} and not sent.get("stream")
        assert result is not None and result.finish_reason == "tool_calls"
        shown = 'lookup({"text": "what is MLflow?"})'
        assert html.escape(shown) in pg.transcript.value and "llmops-tool-call" in pg.transcript.value
        assert pg.messages[-1] == {"role": "assistant", "content": shown}
        pg.tool.value = ""
        pg.send("thanks")  # the call went back as a plain assistant turn; no tools this time
        sent = fake_provider.requests[-1]["body"]
        assert "tools" not in sent and sent["messages"][-2] == {"role": "assistant", "content": shown}
