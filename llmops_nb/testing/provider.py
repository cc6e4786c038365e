"""A fake LLM provider on 127.0.0.1: OpenAI ``/v1/chat/completions`` and Anthropic ``/v1/messages``.

Deterministic answers (a forced tool call, ``tool_choice`` naming a function or ``required``, is
answered with ``tool_calls`` whose arguments are ``{"text": <last message>}``); it records every request with the credential header it received so a
test can check that the key arrived (and only there). With ``"stream": true`` it streams the
same answer word by word in each provider's documented format: OpenAI's
``chat.completion.chunk`` events (usage in a last chunk with no choices when
``stream_options.include_usage``) ending in ``data: [DONE]``; Anthropic's ``event:``/``data:``
pairs message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta, message_stop.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeProvider:
    """The running provider: ``base_url`` (…/v1), ``requests`` recorded, optional failures."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_status: int | None = None
        #: The answer text for a request body; None: ``[provider:<model>] <last message>``.
        self.reply: Callable[[dict], str] | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        if self.fail_status:
            return self.fail_status, {"error": {"message": "injected provider failure"}}
        messages = body.get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
        text = self.reply(body) if self.reply else f"[provider:{body.get('model')}] {last}"
        p, c = sum(len(str(m.get("content", "")).split()) for m in messages), len(text.split())
        if path.endswith("/messages"):
            return 200, {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "stop_reason": "end_turn",
                "content": [{"type": "text", "text": text}],
                "usage": {"input_tokens": p, "output_tokens": c},
            }
        message: dict = {"role": "assistant", "content": text}
        called = _forced_tool(body)
        if called is not None:  # OpenAI's answer to a forced call: content null, the call's arguments as JSON text
            arguments = json.dumps({"text": last})
            call = {"id": "call_fake", "type": "function", "function": {"name": called, "arguments": arguments}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return 200, {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "tool_calls" if called else "stop", "message": message}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }

    def stream_events(self, path: str, body: dict, answer: dict) -> list[tuple[str | None, dict | str]]:
        """The (event name, data) pairs that stream ``answer`` in the provider's format."""
        if path.endswith("/messages"):
            text = answer["content"][0]["text"]
            usage = answer["usage"]
            start = {
                **answer,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
            }
            events: list[tuple[str | None, dict | str]] = [
                ("message_start", {"type": "message_start", "message": start}),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                ("ping", {"type": "ping"}),
            ]
            events += [
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
                for w in _pieces(text)
            ]
            return events + [
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": usage["output_tokens"]},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"], "model": answer["model"]}
        text = answer["choices"][0]["message"]["content"] or ""  # a tool call streams no text here

        def c(delta: dict, finish: str | None = None) -> dict:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        out: list[tuple[str | None, dict | str]] = [(None, c({"role": "assistant", "content": ""}))]
        out += [(None, c({"content": w})) for w in _pieces(text)]
        out.append((None, c({}, "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append((None, {**base, "choices": [], "usage": answer["usage"]}))
        return out + [(None, "[DONE]")]

    def authorizations(self) -> list[str | None]:
        """The credential header of every request (Authorization, x-api-key or Azure's api-key)."""
        return [r["authorization"] or r["x_api_key"] for r in self.requests]


def _handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            provider.requests.append(
                {
                    "path": self.path,
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                    "x_api_key": self.headers.get("x-api-key") or self.headers.get("api-key"),
                }
            )
            route = self.path.split("?", 1)[0]
            azure = route.startswith("/openai/deployments/") and route.endswith("/chat/completions")
            if azure:  # Azure OpenAI names the model by its deployment
                body.setdefault("model", route.split("/")[3])
            if route not in ("/v1/chat/completions", "/v1/messages") and not azure:
                status, out = 404, {"error": {"message": f"no route {self.path}"}}
            else:
                status, out = provider.answer(route, body)
            if status == 200 and body.get("stream") is True:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event, data in provider.stream_events(route, body, out):
                    text = data if isinstance(data, str) else json.dumps(data)
                    head = f"event: {event}\n" if event else ""
                    self.wfile.write(f"{head}data: {text}\n\n".encode())
                    self.wfile.flush()
                return
            payload = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextlib.contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    """Run a FakeProvider in a background thread for the duration of the block."""
    provider = FakeProvider()
    provider.thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


def _forced_tool(body: dict) -> str | None:
    """The function a chat body forces (``tool_choice`` naming it, or ``required``: the first tool), else None."""
    tools, choice = body.get("tools") or [], body.get("tool_choice")
    if not tools or choice in (None, "none", "auto"):
        return None
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    return (tools[0].get("function") or {}).get("name")


def _pieces(text: str) -> list[str]:
    """``text`` as word deltas (each but the first with its leading space)."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]
