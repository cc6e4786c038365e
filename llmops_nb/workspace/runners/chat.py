"""Chat request validation and the token counting shared by the responders."""

from __future__ import annotations

from typing import Any

from llmops_nb.protocol.chat_body import ROLES, generation_problem, structure_problem
from llmops_nb.workspace.apierror import invalid

DATAFRAME_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def count_tokens(text: str) -> int:
    """Whitespace tokens: what the fake responder and usage estimates count."""
    return len(str(text).split())


def validate_chat(body: object) -> dict:
    """Check an OpenAI-style chat body as Databricks does; return it or raise 400."""
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid(f"messages: {messages!r} is not allowed; a non-empty list of {{role, content}} objects is required")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise invalid(f"messages[{i}]: {m!r} is not allowed; an object with role and content")
        if m["role"] not in ROLES:
            raise invalid(f"messages[{i}].role: {m['role']!r} is not allowed; one of {ROLES}")
        if not isinstance(m["content"], (str, list)) and m["content"] is not None:
            raise invalid(f"messages[{i}].content: {m['content']!r} is not allowed; a string")
        if m["content"] is None and not (m["role"] == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
            # OpenAI: only an assistant message that calls a tool may go without content
            raise invalid(f"messages[{i}].content: None is not allowed for role {m['role']!r}; a string")
    problem = generation_problem(body) or structure_problem(body)
    if problem is not None:
        field, value, allowed = problem
        raise invalid(f"{field}: {value!r} is not allowed; {allowed}")
    check_stream(body)
    return body


def check_stream(body: dict) -> bool:
    """True when ``body`` asks for a streamed answer; 400 for a ``stream`` that is not a boolean."""
    stream = body.get("stream")
    if stream is None or stream is False:
        if body.get("stream_options") is not None:  # as OpenAI answers it
            raise invalid(f"stream_options: {body['stream_options']!r} is not allowed without stream: true")
        return False
    if stream is not True:
        raise invalid(f"stream: {stream!r} is not allowed; true or false")
    options = body.get("stream_options")
    if options is not None and (
        not isinstance(options, dict)
        or set(options) - {"include_usage"}
        or not isinstance(options.get("include_usage", False), bool)
    ):
        raise invalid(f'stream_options: {options!r} is not allowed; an object such as {{"include_usage": true}}')
    return True


def include_usage(body: dict) -> bool:
    """True when a streamed answer ends with OpenAI's usage chunk (``stream_options.include_usage``)."""
    return bool((body.get("stream_options") or {}).get("include_usage"))


def text_of(content: object) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def prompt_tokens(body: dict) -> int:
    return sum(count_tokens(text_of(m.get("content"))) for m in body.get("messages", []))


def with_nullable_fields(answer: Any) -> Any:
    """A chat.completion with OpenAI's required nullable fields present (``choices[].logprobs``,
    ``message.refusal``): what a served model leaves out (MLflow's transformers flavor, a custom
    model) is null, so typed clients and the OpenAI schema accept the answer."""
    if isinstance(answer, dict) and answer.get("object") == "chat.completion" and isinstance(answer.get("choices"), list):
        for choice in answer["choices"]:
            if isinstance(choice, dict):
                choice.setdefault("logprobs", None)
                if isinstance(choice.get("message"), dict):
                    choice["message"].setdefault("refusal", None)
    return answer
