"""Streamed chat answers over databricks-sdk's authenticated HTTP client, on both workspaces.

databricks-sdk's ``serving_endpoints.query`` cannot stream (databricks/databricks-sdk-py#1048:
it parses the body as one JSON document), so a stream is one ``POST
/serving-endpoints/{name}/invocations`` with ``"stream": true`` through ``w.api_client.do(...,
raw=True)``: the SDK's own auth (any Config auth type), retries of 429/503 before the first
byte (never of a read timeout: :func:`llmops_nb.chat.ratecontrol.no_resend`), and timeouts;
the server-sent events are read as they arrive. The events are OpenAI's
``chat.completion.chunk`` objects (Databricks Model Serving streams chat that way), ending in
``data: [DONE]``.

The answer's ``Content-Type`` decides how it is read: ``text/event-stream`` as events;
``application/json`` as one whole completion (a served model that does not stream answers so:
MLflow's scoring server calls only ``predict``, mlflow#12439), its text given as one delta; a
JSON body with no ``choices`` raises :class:`QueryError` rather than read as an empty answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from llmops_nb.chat.types import ChatResult
from llmops_nb.errors import QueryError
from llmops_nb.protocol.streaming import parse_sse_lines

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient


class ChatStream:
    """An answer being streamed: iterate for text deltas; ``result`` once it has ended.

    ``close()`` (or leaving a ``with`` block) drops the connection, which tells the server to
    stop generating: the sequence leaves the model's batch at once.
    """

    def __init__(
        self, endpoint: str, contents: Any, served_entity: str | None, started: float, *, whole: dict | None = None
    ) -> None:
        self.endpoint = endpoint
        self._whole = whole  # an application/json answer: one completion, not events
        self.served_entity = served_entity
        self._contents = contents
        self._started = started
        self._parts: list[str] = []
        self._ttft_ms: float | None = None
        self._finish: str | None = None
        self._usage: dict = {}
        self._closed = False
        self._iterating = False
        #: the whole answer as a ChatResult (with ``ttft_ms``): set when the stream ends or closes
        self.result: ChatResult | None = None

    def __iter__(self) -> Iterator[str]:
        if self._iterating or self._closed:
            raise QueryError(f"endpoint {self.endpoint}: a stream can be read once")
        self._iterating = True
        try:
            for event in self._events():
                if "error" in event or "error_code" in event:
                    err = event.get("error") or event
                    message = err.get("message") if isinstance(err, dict) else err
                    raise QueryError(f"endpoint {self.endpoint}: the stream failed: {message}")
                if event.get("usage"):
                    self._usage = event["usage"]
                for choice in event.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue
                    text = (choice.get("delta") or {}).get("content")
                    if choice.get("finish_reason"):
                        self._finish = choice["finish_reason"]
                    if text:
                        if self._ttft_ms is None:
                            self._ttft_ms = (time.perf_counter() - self._started) * 1000
                        self._parts.append(text)
                        yield text
                        if self._closed:  # closed by the reader meanwhile: nothing more
                            return
        except Exception as exc:
            if self._closed:  # closed from another thread (a Stop button): the stream just ends
                return
            if isinstance(exc, OSError):  # requests' connection errors, mid-stream
                raise QueryError(f"endpoint {self.endpoint}: the stream broke: {type(exc).__name__}") from None
            raise
        finally:
            self.close()

    def text(self) -> str:
        """Read the whole stream; the answer's text."""
        return "".join(self)

    def close(self) -> None:
        """Stop the stream (closes the HTTP connection); ``result`` holds what arrived."""
        if self._closed:
            return
        self._closed = True
        try:
            self._contents.close()
        finally:
            self.result = self._make_result()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_result(self) -> ChatResult:
        u = self._usage
        return ChatResult(
            content="".join(self._parts),
            prompt_tokens=int(u.get("prompt_tokens") or 0),
            completion_tokens=int(u.get("completion_tokens") or 0),
            total_tokens=int(u.get("total_tokens") or 0),
            latency_ms=(time.perf_counter() - self._started) * 1000,
            served_entity=self.served_entity,
            finish_reason=self._finish,
            ttft_ms=self._ttft_ms,
        )

    def _events(self) -> Iterator[dict]:
        if self._whole is not None:
            return iter([self._whole])
        return parse_sse_lines(_lines(self._contents))


def completion_as_chunk(endpoint: str, answer: Any) -> dict:
    """A whole chat completion (or a pyfunc's ``{"predictions": [completion]}``) as one chunk
    event: the message's content as the delta, its finish_reason and usage."""
    if isinstance(answer, dict) and isinstance(answer.get("predictions"), list) and answer["predictions"]:
        answer = answer["predictions"][0]
    if not isinstance(answer, dict) or ("error_code" not in answer and not answer.get("choices")):
        shown = json.dumps(answer)[:120] if not isinstance(answer, str) else answer[:120]
        raise QueryError(
            f"endpoint {endpoint}: stream: true was answered with one application/json body that is not a chat "
            f"completion (no choices): {shown}"
        )
    if "error_code" in answer:
        return answer
    choices = [
        {
            "index": c.get("index", 0),
            "delta": {"role": "assistant", "content": (c.get("message") or {}).get("content") or c.get("text") or ""},
            "finish_reason": c.get("finish_reason"),
        }
        for c in answer["choices"]
        if isinstance(c, dict)
    ]
    return {"object": "chat.completion.chunk", "choices": choices, "usage": answer.get("usage") or {}}


def _lines(contents: Any) -> Iterator[bytes]:
    """Lines of the SDK's raw response as they arrive (read(1) never waits for more bytes
    than the server has sent; a bigger read would wait to fill its size)."""
    raw = getattr(contents, "_response", None)
    if raw is not None and hasattr(raw, "iter_lines"):  # requests.Response: chunk by chunk
        yield from raw.iter_lines(chunk_size=None)
        return
    line = b""
    while True:
        b = contents.read(1)
        if not b:
            if line:
                yield line
            return
        if b == b"\n":
            yield line
            line = b""
        else:
            line += b


def open_stream(w: WorkspaceClient, endpoint: str, body: dict) -> ChatStream:
    """POST ``body`` (with ``stream: true``) to the endpoint; the open stream."""
    from databricks.sdk.errors import DatabricksError

    from llmops_nb.chat.dataplane import data_plane_auth, route_of
    from llmops_nb.chat.ratecontrol import NotResent, no_resend, timed_out

    plane = route_of(w, endpoint)  # route-optimized: its data-plane URL, with an OAuth token for it
    where: dict[str, Any] = (
        {"url": plane.url, "auth": data_plane_auth(w, endpoint, plane)}
        if plane
        else {"path": f"/serving-endpoints/{endpoint}/invocations"}
    )
    started = time.perf_counter()
    try:
        resp = no_resend(w).api_client.do(
            "POST",
            **where,
            body={**body, "stream": True},
            raw=True,
            headers={"Accept": "text/event-stream"},
            response_headers=["served-model-name", "content-type"],
        )
    except (NotResent, DatabricksError, TimeoutError, OSError) as exc:
        if (refused := timed_out(w, endpoint, exc)) is not None:  # no headers in time: not POSTed again
            raise refused from None
        raise QueryError(f"endpoint {endpoint}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    # raw=True: {"contents": the open body, <each response_headers name>: value} (databricks-sdk _base_client.do)
    assert isinstance(resp, dict)
    contents = resp["contents"]
    if str(resp.get("content-type") or "").split(";")[0].strip().lower() == "application/json":
        try:  # one whole answer: read it, and close the connection
            raw = contents.read()
        finally:
            contents.close()
        try:
            answer = json.loads(raw or b"null")
        except ValueError:
            raise QueryError(f"endpoint {endpoint}: stream: true was answered with malformed application/json") from None
        whole = completion_as_chunk(endpoint, answer)
        return ChatStream(endpoint, contents, resp.get("served-model-name"), started, whole=whole)
    return ChatStream(endpoint, contents, resp.get("served-model-name"), started)
