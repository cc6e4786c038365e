"""Streamed chat answers: ``chat.completion.chunk`` server-sent events, as Databricks and OpenAI.

The wire format (OpenAI's chat streaming, which Databricks Model Serving follows): one
``data: <chunk JSON>`` event per text delta, a last chunk with ``finish_reason`` and
``usage``, then ``data: [DONE]``. :func:`assemble` turns the chunks of one streamed answer
back into the ``chat.completion`` it stands for (what an inference table logs).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
#: response headers of a stream: no proxy buffering, no caching
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: the streaming route our scoring process adds beside MLflow's /invocations (scoring_app.py)
SCORING_STREAM_ROUTE = "/llmops/invocations/stream"
#: MLmodel ``metadata.task`` of the model interfaces Databricks Model Serving streams (``stream: true``
#: calls ``predict_stream``): ChatModel, ChatAgent, ResponsesAgent, as MLflow records them
#: (mlflow/pyfunc/model.py ``_DEFAULT_CHAT_MODEL_METADATA_TASK``, ``_DEFAULT_CHAT_AGENT_METADATA_TASK``,
#: ``_DEFAULT_RESPONSES_AGENT_METADATA_TASK``); Databricks docs, "Legacy input and output agent schema":
#: a ChatModel "enables streaming agent output when invoking a served agent" with ``{stream: true}``,
#: and "Query a deployed agent": ``stream=True`` invokes ``predict_stream``. MLflow's own scoring
#: server streams none (mlflow#12439): any other custom model answers ``stream: true`` with its
#: ``predict``, one ``application/json`` completion.
STREAMED_TASKS = frozenset({"agent/v1/chat", "agent/v2/chat", "agent/v1/responses"})
#: said wherever a model that answers whole on Databricks is served or deployed (preflight, the
#: local workspace's entity log)
WHOLE_ON_DATABRICKS = (
    "on Databricks, stream: true is answered with one application/json completion (Databricks streams "
    "only ChatModel, ChatAgent and ResponsesAgent models; MLflow's scoring server calls predict); "
    "chat_stream reads it as one delta"
)


def streamed_on_databricks(task: object) -> bool:
    """True when a custom model with MLmodel ``metadata.task`` ``task`` streams on Databricks."""
    return task in STREAMED_TASKS


def sse(event: dict) -> bytes:
    """One server-sent event carrying ``event`` as JSON."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def chunk(
    cid: str,
    model: str | None,
    created: int,
    delta: dict,
    *,
    finish_reason: str | None = None,
    usage: dict | None = None,
    index: int = 0,
) -> dict:
    """A ``chat.completion.chunk`` with one choice."""
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def single_answer(answer: Any) -> Any:
    """A list of exactly one completion as that completion; anything else as it is.

    MLflow's transformers flavor (task ``llm/v1/chat`` or ``llm/v1/completions``) answers one
    completion per input row, and its scoring server writes that list as it is
    (mlflow/pyfunc/scoring_server ``unwrapped_predictions_to_json``). A chat endpoint answers one
    object (databricks-sdk serving.py ``QueryEndpointResponse``), as Databricks Model Serving
    does for a model logged with an ``llm/v1`` task.
    """
    if isinstance(answer, list) and len(answer) == 1 and isinstance(answer[0], dict) and "choices" in answer[0]:
        return answer[0]
    return answer


def chunks_of(answer: dict, pieces: Iterable[str] | None = None) -> Iterator[dict]:
    """A whole ``chat.completion`` as the chunks a stream of it carries (one per piece).

    ``pieces`` default to the answer's words (with their leading space): the fake responder
    streams word by word, deterministically. Each choice ends with its ``finish_reason``; the
    last chunk carries ``usage``.
    """
    cid, model = answer.get("id") or "chatcmpl-local", answer.get("model")
    created = int(answer.get("created") or time.time())
    choices = answer.get("choices") or [{}]
    for k, choice in enumerate(choices):
        index = int(choice.get("index", 0))
        text = ((choice.get("message") or {}).get("content")) or ""
        yield chunk(cid, model, created, {"role": "assistant", "content": ""}, index=index)
        parts = list(pieces) if pieces is not None else _words(text)
        for part in parts:
            yield chunk(cid, model, created, {"content": part}, index=index)
        yield chunk(
            cid,
            model,
            created,
            {},
            finish_reason=choice.get("finish_reason") or "stop",
            usage=answer.get("usage") if k == len(choices) - 1 else None,
            index=index,
        )


async def with_usage_chunk(chunks: AsyncIterator[dict]) -> AsyncIterator[dict]:
    """OpenAI's ``stream_options: {"include_usage": true}``: every chunk has ``usage: null`` and
    one more chunk, with ``choices: []``, carries the usage of the whole answer before [DONE]
    (platform.openai.com/docs/api-reference/chat/create, stream_options)."""
    usage, last = None, None
    async for c in chunks:
        last = c
        if c.get("usage"):
            usage = c["usage"]
        yield {**c, "usage": None}
    if last is not None:
        yield {k: last.get(k) for k in ("id", "object", "created", "model")} | {"choices": [], "usage": usage}


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words) if w or i == 0] if text else []


def assemble(chunks: Iterable[dict]) -> dict:
    """The ``chat.completion`` a stream of ``chat.completion.chunk`` dicts stands for.

    Text deltas are joined per choice, and so are tool-call argument deltas (per call index) and
    logprobs entries; ``finish_reason`` and ``usage`` come from the chunks that carry them (the
    last one, in our streams); id, model and created from the first.
    """
    first: dict | None = None
    texts: dict[int, list[str]] = {}
    roles: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    calls: dict[int, dict[int, dict]] = {}
    logprobs: dict[int, list] = {}
    usage = None
    for c in chunks:
        first = first or c
        if c.get("usage"):
            usage = c["usage"]
        for ch in c.get("choices") or []:
            i = int(ch.get("index", 0))
            delta = ch.get("delta") or {}
            texts.setdefault(i, [])
            if delta.get("content"):
                texts[i].append(str(delta["content"]))
            if delta.get("role"):
                roles[i] = delta["role"]
            for call in delta.get("tool_calls") or []:
                _add_call(calls.setdefault(i, {}), call)
            if isinstance(ch.get("logprobs"), dict):
                logprobs.setdefault(i, []).extend(ch["logprobs"].get("content") or [])
            if ch.get("finish_reason"):
                finish[i] = ch["finish_reason"]
    first = first or {}
    return {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [_choice(i, roles, texts, calls, logprobs, finish) for i in sorted(texts)],
        "usage": usage,
    }


def _add_call(calls: dict[int, dict], delta: dict) -> None:
    """Fold one ``tool_calls`` delta into the calls of its choice (arguments appended)."""
    k = int(delta.get("index", 0))
    call = calls.setdefault(k, {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
    for key in ("id", "type"):
        if delta.get(key):
            call[key] = delta[key]
    fn = delta.get("function") or {}
    if fn.get("name"):
        call["function"]["name"] = fn["name"]
    call["function"]["arguments"] += fn.get("arguments") or ""


def _choice(i: int, roles: dict, texts: dict, calls: dict, logprobs: dict, finish: dict) -> dict:
    message: dict[str, Any] = {"role": roles.get(i, "assistant"), "content": "".join(texts[i]), "refusal": None}
    if i in calls:
        message.update(content="".join(texts[i]) or None, tool_calls=[calls[i][k] for k in sorted(calls[i])])
    return {
        "index": i,
        "message": message,
        "logprobs": {"content": logprobs[i], "refusal": None} if i in logprobs else None,
        "finish_reason": finish.get(i),
    }


def parse_sse_lines(lines: Iterable[bytes | str]) -> Iterator[dict]:
    """The JSON events of an SSE byte/line stream up to ``[DONE]`` (``event:`` lines skipped)."""
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


async def encode(chunks: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    """The SSE bytes of a chunk stream, ending with ``data: [DONE]``."""
    try:
        async for c in chunks:
            yield sse(c)
    except Exception as e:  # after the first byte the status is sent: say it in the stream
        code = getattr(e, "error_code", "INTERNAL_ERROR")
        yield sse({"error": {"code": code, "message": str(getattr(e, "message", e))[:500]}})
        return
    yield DONE
