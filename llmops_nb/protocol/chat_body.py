"""The chat body's rules, as Databricks Model Serving applies them to ``/invocations`` and
``/serving-endpoints/chat/completions`` (REFERENCE.md, chat request): one place for the client's
checks and the workspace's 400s. Each check returns ``(field, value, allowed)`` or None.
"""

from __future__ import annotations

from typing import Any

#: roles an endpoint takes; a client sends the first three
ROLES = ("system", "user", "assistant", "tool", "function")
CLIENT_ROLES = ROLES[:3]
TEMPERATURE_RANGE = (0.0, 2.0)
N_RANGE = (1, 5)

Problem = tuple[str, Any, str]


def int_problem(key: str, value: object, low: int, high: int | None = None, *, required: bool = False) -> Problem | None:
    """``value`` of field ``key`` is not an integer in [low, high] (None: no upper bound); a
    missing value (None) is a problem only when ``required``."""
    if value is None and not required:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if ok:
        return None
    rng = f">= {low}" if high is None else f"between {low} and {high}"
    return key, value, f"an integer {rng}"


def temperature_problem(value: object, *, required: bool = False) -> Problem | None:
    """``temperature`` is not a number in :data:`TEMPERATURE_RANGE` (None: a problem when ``required``)."""
    low, high = TEMPERATURE_RANGE
    if (value is None and not required) or (
        not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high
    ):
        return None
    return "temperature", value, f"a number between {low} and {high}"


def generation_problem(body: dict) -> Problem | None:
    """The first broken generation setting of ``body``: stop, top_p, max_tokens,
    max_completion_tokens, n, seed, temperature."""
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        return "stop", stop, "a string or a list of strings"
    top_p = body.get("top_p")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 <= top_p <= 1):
        return "top_p", top_p, "a number between 0 and 1"
    return (
        int_problem("max_tokens", body.get("max_tokens"), 1)
        or int_problem("max_completion_tokens", body.get("max_completion_tokens"), 1)
        or int_problem("n", body.get("n"), *N_RANGE)
        or int_problem("seed", body.get("seed"), -(2**63))
        or temperature_problem(body.get("temperature"))
    )


#: OpenAI's response_format types (CreateChatCompletionRequest.response_format)
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
TOP_LOGPROBS_RANGE = (0, 20)


def response_format_problem(value: object) -> Problem | None:
    """``response_format`` is not ``{"type": text|json_object}`` nor ``{"type": "json_schema",
    "json_schema": {"name", "schema"?, "strict"?}}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in RESPONSE_FORMATS:
        return "response_format", value, f"an object whose type is one of {RESPONSE_FORMATS}"
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            return "response_format.json_schema", spec, "an object with a name and a schema"
        if not isinstance(spec.get("schema", {}), dict):
            return "response_format.json_schema.schema", spec.get("schema"), "a JSON schema object"
    return None


def tools_problem(tools: object, choice: object) -> Problem | None:
    """``tools`` is not a list of ``{"type": "function", "function": {"name", "parameters"?}}``, or
    ``tool_choice`` is not none/auto/required or ``{"type": "function", "function": {"name"}}``
    naming one of them."""
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return "tools", tools, 'a list of {"type": "function", "function": {"name", "parameters"}} objects'
        for i, t in enumerate(tools):
            f = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(f, dict):
                return f"tools[{i}]", t, 'an object {"type": "function", "function": {"name", "parameters"}}'
            if not isinstance(f.get("name"), str) or not f["name"]:
                return f"tools[{i}].function.name", f.get("name"), "a non-empty string"
            if not isinstance(f.get("parameters", {}), dict):
                return f"tools[{i}].function.parameters", f.get("parameters"), "a JSON schema object"
            names.append(f["name"])
    if choice is None or choice in ("none", "auto"):
        return None
    if choice == "required":
        return None if names else ("tool_choice", choice, "set only with tools")
    name = ((choice.get("function") or {}).get("name") if isinstance(choice, dict) else None) or None
    if not isinstance(choice, dict) or choice.get("type") != "function" or name not in names:
        return "tool_choice", choice, f'none, auto, required or {{"type": "function", "function": {{"name": one of {names}}}}}'
    return None


def structure_problem(body: dict) -> Problem | None:
    """The first broken output-shaping setting of ``body``: logprobs, top_logprobs,
    response_format, tools and tool_choice."""
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        return "logprobs", logprobs, "true or false"
    top = body.get("top_logprobs")
    if top is not None and not logprobs:
        return "top_logprobs", top, "set only with logprobs: true"
    return (
        int_problem("top_logprobs", top, *TOP_LOGPROBS_RANGE)
        or response_format_problem(body.get("response_format"))
        or tools_problem(body.get("tools"), body.get("tool_choice"))
    )
