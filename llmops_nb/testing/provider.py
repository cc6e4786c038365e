"""A fake LLM provider on 127.0.0.1: OpenAI ``/v1/chat/completions`` and Anthropic ``/v1/messages``.

Deterministic answers; it records every request with the credential header it received so a
test can check that the key arrived (and only there).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeProvider:
    """The running provider: ``base_url`` (…/v1), ``requests`` recorded, optional failures."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_status: int | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        if self.fail_status:
            return self.fail_status, {"error": {"message": "injected provider failure"}}
        messages = body.get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
        text = f"[provider:{body.get('model')}] {last}"
        p, c = sum(len(str(m.get("content", "")).split()) for m in messages), len(text.split())
        if path.endswith("/messages"):
            return 200, {"id": "msg_fake", "type": "message", "role": "assistant",
                         "model": body.get("model"), "stop_reason": "end_turn",
                         "content": [{"type": "text", "text": text}],
                         "usage": {"input_tokens": p, "output_tokens": c}}
        return 200, {"id": "chatcmpl-fake", "object": "chat.completion",
                     "created": int(time.time()), "model": body.get("model"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}

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
            provider.requests.append({"path": self.path, "body": body,
                                      "authorization": self.headers.get("Authorization"),
                                      "x_api_key": self.headers.get("x-api-key") or self.headers.get("api-key")})
            route = self.path.split("?", 1)[0]
            azure = route.startswith("/openai/deployments/") and route.endswith("/chat/completions")
            if azure:  # Azure OpenAI names the model by its deployment
                body.setdefault("model", route.split("/")[3])
            if route not in ("/v1/chat/completions", "/v1/messages") and not azure:
                status, out = 404, {"error": {"message": f"no route {self.path}"}}
            else:
                status, out = provider.answer(route, body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
