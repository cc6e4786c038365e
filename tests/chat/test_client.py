"""Chat request validation, and what a timed-out generation does (against the fake workspace)."""

from __future__ import annotations

import pytest

from llmops_nb.chat.client import as_messages, chat, chat_many, check_generation, output_fields
from llmops_nb.chat.ratecontrol import NotResent
from llmops_nb.errors import ConfigError, QueryError

FOUNDATION = "databricks-smollm2-135m-instruct"


def test_a_prompt_becomes_one_user_message_with_an_optional_system() -> None:
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    assert as_messages("hi", system="be brief")[0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: as_messages(""), "prompt"),
        (lambda: as_messages([{"role": "robot", "content": "x"}]), "messages[0].role"),
        (lambda: as_messages([{"role": "user", "content": 3}]), "messages[0].content"),
        (lambda: as_messages([]), "messages"),
        (lambda: check_generation(0, 0.5), "max_tokens"),
        (lambda: check_generation(16, 2.5), "temperature"),
        (lambda: check_generation(True, 0.5), "max_tokens"),
        (lambda: output_fields(response_format={"type": "yaml"}), "response_format"),
        (lambda: output_fields(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
        (lambda: output_fields(tool_choice="required"), "tool_choice"),
    ],
)
def test_bad_chat_input_names_the_field(call, field: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        call()
    assert str(err.value).startswith(f"{field}:") and "\n" not in str(err.value)


def _invocations(ws) -> int:  # noqa: ANN001
    return sum(r["path"].endswith("/invocations") for r in ws.requests())


@pytest.mark.parametrize("fault", ["stall_body_seconds", "hang_seconds"])
def test_a_generation_slower_than_the_http_timeout_is_sent_once(fake_workspace, fault: str) -> None:  # noqa: ANN001
    """databricks-sdk retries timeouts (_base_client.py _is_retryable: requests.Timeout, and the
    ConnectionError requests raises for a body that stalls after the headers): a generation must not be
    re-sent. stall_body_seconds: the headers at once, the body late (re-sent by databricks-sdk 0.167);
    hang_seconds: no headers in time (re-sent by databricks-sdk before its POST exception, e.g. 0.133)."""
    fake_workspace.set_faults(**{fault: 3})
    w = fake_workspace.client(http_timeout_seconds=1, retry_timeout_seconds=8)
    with pytest.raises(NotResent) as err:
        chat(w, FOUNDATION, "hi")
    assert str(err.value).startswith(f"endpoint {FOUNDATION}: no answer within http_timeout_seconds=1 s; not sent again")
    assert _invocations(fake_workspace) == 1
    fake_workspace.reset()
    fake_workspace.set_faults(**{fault: 3})
    [result] = chat_many(w, FOUNDATION, ["hi"], progress=False)  # through the throttle-aware copy too
    assert isinstance(result, NotResent) and _invocations(fake_workspace) == 1
    fake_workspace.reset()
    assert chat(w, FOUNDATION, "hi").content  # the same client answers once nothing is slow


def test_response_format_and_tools_are_sent_not_dropped(fake_workspace) -> None:  # noqa: ANN001
    """The SDK's query has no response_format nor tools: the client posts them itself, and the
    fake responder (which honours neither) refuses them by name rather than answering in text."""
    w = fake_workspace.client()
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    with pytest.raises(QueryError, match="response_format: .* is not allowed for served entity"):
        chat(w, FOUNDATION, "hi", response_format=fmt)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(QueryError, match="tool_choice: 'required' is not allowed for served entity"):
        chat(w, FOUNDATION, "hi", tools=[tool], tool_choice="required")
    [body] = [r["body"] for r in fake_workspace.requests() if r["path"].endswith("/invocations")][-1:]
    assert body["tools"] == [tool] and body["tool_choice"] == "required"
