"""External-model runner: forward chat bodies to an OpenAI-compatible or Anthropic API.

Anthropic's API base is ``$LLMOPS_ANTHROPIC_API_BASE`` of the server (Databricks has no such
field), else the public one. An OpenAI entity without ``openai_api_base`` goes to
``$LLMOPS_OPENAI_API_BASE`` of the server when set (an OpenAI-compatible server on this
machine, or the fake provider in tests), else to OpenAI. Azure OpenAI (``openai_api_type``
azure/azuread) goes to ``<base>/openai/deployments/<deployment>/chat/completions?api-version=...``
with an ``api-key`` header. The key is resolved from its ``{{secrets/scope/key}}`` reference at request time and used
only in the outgoing header: never logged, stored, or put in an error message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from llmops_nb.protocol.streaming import chunk, parse_sse_lines
from llmops_nb.workspace.apierror import ApiError, invalid, too_many, unavailable
from llmops_nb.workspace.runners.base import Runner
from llmops_nb.workspace.runners.fields import ANTHROPIC, check_roles
from llmops_nb.workspace.runners.plaintext import lookup
from llmops_nb.workspace.runners.streamers import post_stream, relay

if TYPE_CHECKING:
    import requests

OPENAI_BASE = "https://api.openai.com/v1"
ANTHROPIC_BASE = "https://api.anthropic.com/v1"
SUPPORTED = ("openai", "custom", "anthropic")


def _key(plain: str | None, ref: str | None, home) -> str:
    if plain:
        return plain
    kept = lookup(home, ref)  # a plaintext key the workspace keeps as its own secret
    if kept is not None:
        return kept
    if not ref:
        raise invalid("external_model: no API key (a {{secrets/scope/key}} reference) is configured")
    from llmops_nb.config.secrets import resolve_secret
    from llmops_nb.errors import LlmopsError

    try:
        return resolve_secret(ref, home)
    except LlmopsError as e:
        raise invalid(str(e)) from None


def _post(url: str, headers: dict, body: dict, timeout: float) -> requests.Response:
    import requests

    return requests.post(url, headers=headers, json=body, timeout=timeout)


class ExternalModelRunner(Runner):
    """Forwards to the provider of ``entity['external_model']``; no process, ready at once."""

    async def start(self) -> bool:
        provider = self.entity["external_model"].get("provider")
        if provider not in SUPPORTED:
            self._failed(
                f"External model provider {provider!r} is not supported by the local "
                f"workspace; supported: {', '.join(SUPPORTED)}."
            )
            return False
        self._ready(f"External model {self.entity['external_model'].get('name')} ({provider})")
        return True

    def chat_fields(self) -> tuple[frozenset[str] | None, str]:
        """An OpenAI-compatible provider takes the body as it is; Anthropic what to_anthropic sends."""
        provider = self.entity["external_model"].get("provider")
        if provider == "anthropic":
            return ANTHROPIC, "external model, anthropic"
        return None, f"external model, {provider}"

    def check_request(self, body: dict) -> None:
        super().check_request(body)
        if self.entity["external_model"].get("provider") == "anthropic":
            check_roles(body, ("system", "user", "assistant"), self.name, "external model, anthropic")

    def _request(self, body: dict) -> tuple[str, dict, dict]:
        ext = self.entity["external_model"]
        provider, home = ext["provider"], self.ctx.home
        if provider == "anthropic":
            cfg = ext.get("anthropic_config") or {}
            key = _key(cfg.get("anthropic_api_key_plaintext"), cfg.get("anthropic_api_key"), home)
            base = (cfg.get("anthropic_api_base") or os.environ.get("LLMOPS_ANTHROPIC_API_BASE") or ANTHROPIC_BASE).rstrip("/")
            headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
            return f"{base}/messages", headers, to_anthropic(ext["name"], body)
        if provider == "custom":
            cfg = ext.get("custom_provider_config") or {}
            auth = cfg.get("bearer_token_auth") or {}
            key = _key(auth.get("token_plaintext"), auth.get("token"), home)
            url = cfg.get("custom_provider_url", "").rstrip("/")
            if not url.endswith("/chat/completions"):
                url += "/chat/completions"
        else:
            cfg = ext.get("openai_config") or {}
            key = _key(cfg.get("openai_api_key_plaintext"), cfg.get("openai_api_key"), home)
            if cfg.get("openai_api_type") in ("azure", "azuread"):
                url = (
                    f"{cfg['openai_api_base'].rstrip('/')}/openai/deployments/"
                    f"{cfg['openai_deployment_name']}/chat/completions?api-version={cfg['openai_api_version']}"
                )
                return url, {"api-key": key}, dict(body)
            base = cfg.get("openai_api_base") or os.environ.get("LLMOPS_OPENAI_API_BASE") or OPENAI_BASE
            url = base.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {key}"}
        if cfg.get("openai_organization"):
            headers["OpenAI-Organization"] = cfg["openai_organization"]
        return url, headers, {**body, "model": ext["name"]}

    async def _send(self, body: dict, stream: bool) -> requests.Response:
        """POST to the provider; the response, or the ApiError its status stands for."""
        url, headers, out = self._request(body)
        secret = next(iter(headers.values()))
        if stream:
            out = {**out, "stream": True}
            if self.entity["external_model"]["provider"] == "openai":  # usage in the last chunk
                out["stream_options"] = {"include_usage": True}
        try:
            r = await run_in_threadpool(post_stream if stream else _post, url, headers, out, self.ctx.request_timeout)
        except Exception as e:
            raise unavailable(f"The external model provider of {self.name} did not answer: {type(e).__name__}.", 2) from None
        if r.status_code >= 400:
            try:
                text = r.text[:300].replace(secret, "***").replace(secret.split()[-1], "***")
            finally:
                r.close()
            msg = f"The external model provider answered HTTP {r.status_code}: {text}"
            if r.status_code == 429:
                raise too_many(msg, float(r.headers.get("Retry-After", 1)))
            if r.status_code >= 500:
                raise unavailable(msg, 2)
            raise ApiError(400, "INVALID_PARAMETER_VALUE" if r.status_code == 400 else "EXTERNAL_MODEL_ERROR", msg)
        return r

    async def stream(self, body: dict) -> AsyncGenerator[dict, None]:
        """The provider's stream as chat.completion.chunk dicts: OpenAI-style providers' chunks
        as they are, Anthropic's message events translated (:func:`from_anthropic_events`)."""
        self.check_ready()
        self.check_request(body)
        r = await self._send(body, stream=True)
        if self.entity["external_model"]["provider"] == "anthropic":
            return relay(r, lambda resp: from_anthropic_events(_sse_events(resp.iter_lines())))
        return relay(r, lambda resp: parse_sse_lines(resp.iter_lines()))

    async def invoke(self, body: dict) -> dict:
        self.check_ready()
        self.check_request(body)
        r = await self._send(body, stream=False)
        data = r.json()
        if self.entity["external_model"]["provider"] == "anthropic":
            data = from_anthropic(data)
        return data


def to_anthropic(model: str, body: dict) -> dict:
    """An OpenAI chat body as an Anthropic messages body (system messages lifted out)."""
    system = "\n".join(str(m["content"]) for m in body["messages"] if m["role"] == "system")
    out = {
        "model": model,
        "max_tokens": body.get("max_tokens") or 1024,
        "messages": [
            {"role": m["role"], "content": m["content"]} for m in body["messages"] if m["role"] in ("user", "assistant")
        ],
    }
    if system:
        out["system"] = system
    for k in ("temperature", "top_p"):
        if body.get(k) is not None:
            out[k] = body[k]
    if body.get("stop"):
        out["stop_sequences"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
    return out


def from_anthropic(data: dict) -> dict:
    """An Anthropic messages answer as an OpenAI chat completion."""
    text = "".join(p.get("text", "") for p in data.get("content", []) if p.get("type") == "text")
    usage = data.get("usage") or {}
    p, c = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    finish = FINISH
    return {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish.get(data.get("stop_reason"), "stop"),
            }
        ],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


#: Anthropic's stop_reason -> OpenAI's finish_reason (keyed by what the answer holds, None too)
FINISH: dict[str | None, str] = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop"}


def _sse_events(lines: Iterable[bytes | str]) -> Iterator[dict]:
    """Anthropic's SSE: ``event: <type>`` then ``data: <json>`` (the type is in the JSON too)."""
    for raw in lines:
        line = (raw.decode("utf-8") if isinstance(raw, bytes) else raw).strip()
        if line.startswith("data:") and line[5:].strip():
            yield json.loads(line[5:])


def from_anthropic_events(events: Iterable[dict]) -> Iterator[dict]:
    """Anthropic's streaming message events as chat.completion.chunk dicts.

    message_start (id, model, input tokens) -> the role chunk; content_block_delta text_delta
    -> a content chunk; message_delta (stop_reason, output tokens) and message_stop -> the last
    chunk with finish_reason and usage; ping and other block events are skipped; an error event
    ends the stream with an error (docs.anthropic.com, "Streaming Messages").
    """
    cid, model, created = "msg", None, int(time.time())
    prompt = completion = 0
    finish = "stop"
    for ev in events:
        kind = ev.get("type")
        if kind == "message_start":
            msg = ev.get("message") or {}
            cid, model = msg.get("id") or cid, msg.get("model")
            prompt = int((msg.get("usage") or {}).get("input_tokens") or 0)
            completion = int((msg.get("usage") or {}).get("output_tokens") or 0)
            yield chunk(cid, model, created, {"role": "assistant", "content": ""})
        elif kind == "content_block_delta" and (ev.get("delta") or {}).get("type") == "text_delta":
            yield chunk(cid, model, created, {"content": ev["delta"].get("text", "")})
        elif kind == "message_delta":
            finish = FINISH.get((ev.get("delta") or {}).get("stop_reason"), "stop")
            completion = int((ev.get("usage") or {}).get("output_tokens") or completion)
        elif kind == "message_stop":
            break
        elif kind == "error":
            err = ev.get("error") or {}
            raise ApiError(
                502,
                "EXTERNAL_MODEL_ERROR",
                f"The external model provider's stream failed: {err.get('type')}: {err.get('message')}",
            )
    yield chunk(
        cid,
        model,
        created,
        {},
        finish_reason=finish,
        usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    )
