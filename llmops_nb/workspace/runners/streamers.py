"""Open the stream of one served entity: its answer as ``chat.completion.chunk`` dicts.

- the fake responder streams its deterministic answer word by word;
- a scoring server (a registered model, the foundation endpoint) streams from the route our
  scoring process adds beside MLflow's ``/invocations`` (see :mod:`.scoring_app`);
- an external model streams from its provider (:meth:`ExternalModelRunner.stream`).

Errors before the first chunk are raised by :func:`open_stream` (the client gets an HTTP
error); closing the returned iterator (the client went away) closes the upstream connection
at once, which frees the sequence in the model's batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from llmops_nb.protocol.streaming import SCORING_STREAM_ROUTE, chunks_of, parse_sse_lines
from llmops_nb.workspace.apierror import ApiError, invalid, unavailable
from llmops_nb.workspace.runners.base import FakeRunner, Runner, ScoringServerRunner, _model_message, fake_answer

if TYPE_CHECKING:
    import requests


async def open_stream(runner: Runner, body: dict) -> AsyncGenerator[dict, None]:
    """The chunks of ``runner``'s answer to ``body``; raises ApiError before the first one."""
    runner.check_ready()
    runner.check_request(body)
    if isinstance(runner, FakeRunner):
        return await _fake(runner, body)
    if isinstance(runner, ScoringServerRunner):
        url = f"http://127.0.0.1:{runner.port}{SCORING_STREAM_ROUTE}"
        response = await open_sse(url, {}, body, runner.ctx.request_timeout, f"The scoring server of {runner.name}")
        return relay(response, lambda r: parse_sse_lines(r.iter_lines()))
    stream = getattr(runner, "stream", None)
    if stream is None:
        raise invalid(f"stream: true is not allowed for served entity {runner.name}")
    return await stream(body)


async def _fake(runner: FakeRunner, body: dict) -> AsyncGenerator[dict, None]:
    f = runner.ctx.faults.faults
    latency = f.latency_for(runner.endpoint, runner.ctx.fake_latency_ms)
    if latency:
        await asyncio.sleep(latency / 1000)
    answer = fake_answer(runner.name, body)

    async def gen() -> AsyncGenerator[dict, None]:
        for c in chunks_of(answer):
            yield c

    return gen()


def post_stream(url: str, headers: dict, body: dict, timeout: float) -> requests.Response:
    """POST ``body`` and return the response unread (``stream=True``): connect in 10 s, then
    up to ``timeout`` between bytes."""
    import requests

    return requests.post(url, headers=headers, json=body, stream=True, timeout=(10, timeout))


async def open_sse(url: str, headers: dict, body: dict, timeout: float, who: str) -> requests.Response:
    """POST ``body`` for a stream; the open response, or ApiError from its status."""
    try:
        r = await run_in_threadpool(post_stream, url, headers, body, timeout)
    except Exception as e:
        raise unavailable(f"{who} did not answer: {type(e).__name__}.", 2) from None
    if r.status_code >= 400:
        try:
            text = r.text[:500]
        finally:
            r.close()
        try:
            import json

            data = json.loads(text)
            msg = data.get("message") or data.get("error") or text
        except ValueError:
            msg = text
        raise ApiError(
            400 if r.status_code == 400 else r.status_code if r.status_code in (429, 503) else 500,
            "INVALID_PARAMETER_VALUE" if r.status_code == 400 else "INTERNAL_ERROR",
            f"{who} answered HTTP {r.status_code}: {_model_message(msg)}",
        )
    return r


def relay(response: requests.Response, events: Callable[[requests.Response], Iterator[dict]]) -> AsyncGenerator[dict, None]:
    """``events(response)`` read by a thread of its own, handed to the loop through a queue.

    The consumer awaits only the queue (cancellable at once: a client that goes away is seen
    even behind Starlette's BaseHTTPMiddleware, where a stream stepped with
    ``run_in_threadpool`` stalled instead of being cancelled). When the consumer stops, the
    thread closes ``response`` after the next event, so the upstream connection drops and the
    model frees the sequence.
    """
    stop = threading.Event()

    def pump(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        def put(kind: str, item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop has closed
                stop.set()

        try:
            for item in events(response):
                if stop.is_set():
                    return
                put("item", item)
            put("end", None)
        except BaseException as e:  # noqa: BLE001 - raised in the consumer
            put("error", e)
        finally:
            response.close()

    async def gen() -> AsyncGenerator[dict, None]:
        queue: asyncio.Queue = asyncio.Queue()
        threading.Thread(target=pump, args=(asyncio.get_running_loop(), queue), name="llmops-relay", daemon=True).start()
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    if isinstance(item, ApiError):
                        raise item
                    raise unavailable(f"The stream broke: {type(item).__name__}.", 2)
                yield item
        finally:
            stop.set()

    return gen()
