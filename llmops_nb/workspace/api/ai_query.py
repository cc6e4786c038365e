"""``ai_query(...)`` in the workspace's SQL statements: each row asked through the workspace's own invocations.

Databricks SQL's ``ai_query`` (docs.databricks.com, sql/language-manual/functions/ai_query) invokes a
serving endpoint per row. The forms implemented, strictly, are the ones for chat endpoints:

- ``ai_query('<endpoint>', <request>)``: a foundation model or external model endpoint, whose
  ``request`` "must be a STRING"; it is sent as one user message and the value is the answer text;
- ``modelParameters => named_struct('max_tokens', 64, 'temperature', 0.0, ...)``: the chat body's
  generation fields (numeric literals); on a custom model endpoint this is refused as Databricks
  refuses it (AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE: "AI_QUERY function
  does not support the modelParameters argument for custom model endpoint");
- ``failOnError => false``: the value is a struct ``{result, errorMessage}`` (a JSON text in a
  JSON_ARRAY result), the error of a row in ``errorMessage`` and its ``result`` null; with
  ``failOnError => true`` (the default) the first failed row fails the statement.

Anything else (``returnType``, ``responseFormat``, a custom model endpoint, an argument of another
form) FAILs the statement with a message saying the local workspace does not implement it.

A statement is run twice: the first pass collects every row's call (one per row, as ai_query
invokes the endpoint per row, a repeated request too), which are then asked
concurrently (:data:`CONCURRENCY` at once, 429 and 503 retried after their Retry-After as ai_query
retries them), through the same path an HTTP invocation takes (request checks, the fake's faults,
routing, the AI gateway's rate limits, usage and inference-table logging: :class:`Invoker`); the
second pass reads the answers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: Rows of one statement asked at once (a warehouse batches ai_query calls; the local workspace this many).
CONCURRENCY = 8
#: Attempts of one row on 429 / 503 before its error is the row's.
ATTEMPTS = 5
CALL = re.compile(r"\bai_query\s*\(", re.IGNORECASE)
_STRING = re.compile(r"'((?:[^'\\]|'')*)'\Z")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")
_NAMED = re.compile(r"([A-Za-z_]+)\s*=>\s*(.*)\Z", re.DOTALL)
_CAST = re.compile(r"CAST\s*\((.*)\s+AS\s+(INT|BIGINT|DOUBLE|FLOAT)\s*\)\Z", re.IGNORECASE | re.DOTALL)
CHAT_KINDS = ("foundation", "external")


class Refused(Exception):
    """A statement the local workspace does not run: its ``message`` is the FAILED statement's."""


@dataclass(frozen=True)
class Invoker:
    """The workspace's invocation path for SQL: the kind of an endpoint, and one chat call."""

    kind: Callable[[str], str | None]  # "foundation" | "external" | "custom" | None (no such endpoint)
    invoke: Callable[[str, dict, str], Awaitable[dict]]  # (endpoint, chat body, user) -> answer


@dataclass(frozen=True)
class Call:
    """One ai_query call site: its endpoint, the chat body fields, whether a failed row fails the statement."""

    endpoint: str
    params: tuple[tuple[str, float | int], ...]
    fail_on_error: bool


def _scan(text: str, start: int = 0, depth: int = 0):  # noqa: ANN202 - an iterator of (index, char, depth)
    """Each character outside string literals with the parenthesis depth after it ('' escapes a quote)."""
    quote, i = False, start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "'" and text[i + 1 : i + 2] == "'":
                i += 1
            elif c == "'":
                quote = False
        elif c == "'":
            quote = True
        else:
            depth += (c == "(") - (c == ")")
            yield i, c, depth
        i += 1


def _split(args: str) -> list[str]:
    """The top-level comma-separated arguments of a call (strings and parentheses respected)."""
    cuts = [i for i, c, depth in _scan(args) if c == "," and depth == 0]
    return [args[a + 1 : b].strip() for a, b in zip([-1, *cuts], [*cuts, len(args)], strict=True)]


def _close(sql: str, start: int) -> int:
    """The index of the parenthesis closing the one before ``start``."""
    for i, c, depth in _scan(sql, start, 1):
        if c == ")" and depth == 0:
            return i
    raise Refused("[PARSE_SYNTAX_ERROR] Syntax error: ai_query( is not closed.")


def _string(text: str, what: str) -> str:
    found = _STRING.match(text.strip())
    if not found:
        raise Refused(f"ai_query: {what} must be a STRING literal; got {text!r}")
    return found.group(1).replace("''", "'")


def _number(text: str, key: str) -> float | int:
    text = text.strip()
    cast = _CAST.match(text)
    if cast:
        text = cast.group(1).strip()
    if not _NUMBER.match(text):
        raise Refused(
            f"[AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_DATA_TYPE] The {key!r} parameter: {text!r} "
            "is not a numeric literal (the local workspace takes numeric modelParameters only)"
        )
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _model_parameters(text: str) -> tuple[tuple[str, float | int], ...]:
    found = re.match(r"named_struct\s*\((.*)\)\Z", text.strip(), re.IGNORECASE | re.DOTALL)
    if not found:
        raise Refused(f"ai_query: modelParameters must be named_struct('name', value, ...); got {text!r}")
    items = _split(found.group(1))
    if len(items) % 2:
        raise Refused("ai_query: named_struct takes name, value pairs")
    pairs = []
    for k in range(0, len(items), 2):
        key = _string(items[k], "a modelParameters name")
        if key in ("messages", "prompt", "stream"):
            raise Refused(
                f"[AI_FUNCTION_INVALID_MODEL_PARAMETERS.FOUND_RESERVED_PARAMETER_NAME] The {key!r} parameter should be "
                "specified in the 'request' argument of AI_QUERY."
            )
        pairs.append((key, _number(items[k + 1], key)))
    return tuple(pairs)


def rewrite(sql: str, kind: Callable[[str], str | None]) -> tuple[str, list[Call]]:
    """``sql`` with each ``ai_query(...)`` as ``ai_query(<call index>, <request>)`` (a SQLite function), and the calls.

    Refused (:class:`Refused`) when a call is not of a form above or its endpoint cannot take it."""
    calls: list[Call] = []
    out, at = [], 0
    for found in CALL.finditer(sql):
        if found.start() < at:
            raise Refused("ai_query: a call inside another call's arguments is not implemented by the local workspace")
        end = _close(sql, found.end())
        args = _split(sql[found.end() : end])
        if len(args) < 2 or _NAMED.match(args[0]) or _NAMED.match(args[1]):
            raise Refused("ai_query: takes the endpoint and the request first, as positional arguments")
        endpoint, request = _string(args[0], "the endpoint"), args[1]
        named: dict[str, str] = {}
        for arg in args[2:]:
            m = _NAMED.match(arg)
            if not m:
                raise Refused(f"ai_query: {arg!r}: after the request, only named arguments (name => value) are implemented")
            named[m.group(1)] = m.group(2).strip()
        unknown = sorted(set(named) - {"modelParameters", "failOnError"})
        if unknown:
            raise Refused(
                f"ai_query: {', '.join(unknown)}: not implemented by the local workspace "
                "(it implements modelParameters and failOnError, for chat endpoints)"
            )
        what = kind(endpoint)
        if what is None:
            raise Refused(f"[AI_FUNCTION_HTTP_REQUEST_ERROR] ai_query: the serving endpoint '{endpoint}' does not exist.")
        if what not in CHAT_KINDS:
            if "modelParameters" in named:
                raise Refused(
                    "[AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE] AI_QUERY function does not support "
                    f"the modelParameters argument for custom model endpoint ('{endpoint}')."
                )
            raise Refused(
                f"ai_query: '{endpoint}' serves a custom model: the local workspace implements ai_query for "
                "foundation model and external model (chat) endpoints only"
            )
        fail = named.get("failOnError", "true").lower()
        if fail not in ("true", "false"):
            raise Refused(f"ai_query: failOnError must be the BOOLEAN literal true or false; got {named['failOnError']!r}")
        params = _model_parameters(named["modelParameters"]) if "modelParameters" in named else ()
        calls.append(Call(endpoint, params, fail == "true"))
        out.append(sql[at : found.start()] + f"ai_query({len(calls) - 1}, {request})")
        at = end + 1
    out.append(sql[at:])
    return "".join(out), calls


def body_of(call: Call, request: str) -> dict[str, Any]:
    """The chat body of one row: the request as the user message, the model parameters beside it."""
    return {"messages": [{"role": "user", "content": request}], **dict(call.params)}


def answer_text(answer: dict) -> str:
    """What ai_query returns for a chat endpoint: the first choice's message content."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("the endpoint's answer has no choices[0].message.content") from None
    return content if isinstance(content, str) else json.dumps(content)


async def ask(invoker: Invoker, calls: list[Call], wanted: list[tuple[int, str]], user: str) -> list[tuple]:
    """``("ok", answer) | ("error", message)`` for each wanted row ``(call, request)``, in order,
    :data:`CONCURRENCY` at once: one invocation per row, a repeated request asked again."""
    from llmops_nb.workspace.apierror import ApiError

    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(key: tuple[int, str]) -> tuple:
        call = calls[key[0]]
        async with gate:
            for attempt in range(ATTEMPTS):
                try:
                    answer = await invoker.invoke(call.endpoint, body_of(call, key[1]), user)
                    return ("ok", answer_text(answer))
                except ApiError as e:
                    if e.status in (429, 503) and attempt + 1 < ATTEMPTS:
                        await asyncio.sleep(min(float((e.headers or {}).get("Retry-After", 1) or 1), 5.0))
                        continue
                    return ("error", f"[REMOTE_FUNCTION_HTTP_FAILED_ERROR] {e.status} {e.error_code}: {e.message}")
                except ValueError as e:
                    return ("error", f"[AI_FUNCTION_HTTP_PARSE_CAST_ERROR] {e}")
        raise AssertionError("unreachable")  # pragma: no cover

    return list(await asyncio.gather(*(one(k) for k in wanted)))


def value(call: Call, outcome: tuple) -> str:
    """The SQL value of one asked row: the answer, or (failOnError false) the struct as JSON text."""
    status, text = outcome
    if call.fail_on_error:
        if status == "error":
            raise Refused(text)
        return text
    return json.dumps({"result": text, "errorMessage": None} if status == "ok" else {"result": None, "errorMessage": text})
