"""Chat calls to a serving endpoint: one at a time, or many at once.

Every endpoint, local or Databricks, takes the same OpenAI-style chat body (``messages``,
``max_tokens``, ``temperature``, ``stop``) and answers with ``choices`` and ``usage``. Calls
go through databricks-sdk, which retries 503 honouring Retry-After (up to the client's
``retry_timeout_seconds``) and times out each HTTP call after ``http_timeout_seconds``. A call
that times out waiting for its answer is not sent again (the SDK would: a second generation,
billed and logged): it fails with :class:`~llmops_nb.chat.ratecontrol.NotResent`
(:func:`~llmops_nb.chat.ratecontrol.no_resend`). :func:`chat_many` and :func:`chat_iter` leave
429s to one AIMD limiter (:mod:`llmops_nb.chat.ratecontrol`), a single :func:`chat` to the SDK.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from llmops_nb.chat.ratecontrol import AimdLimiter, NotResent, Throttled, no_resend, throttle_aware, timed_out
from llmops_nb.chat.types import ChatResult, Messages
from llmops_nb.errors import ConfigError, QueryError
from llmops_nb.protocol.chat_body import CLIENT_ROLES as ROLES
from llmops_nb.protocol.chat_body import int_problem, response_format_problem, temperature_problem, tools_problem

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.chat.stream import ChatStream


def as_messages(prompt: str | Messages, system: str | None = None) -> list[dict[str, str]]:
    """A prompt string or a list of messages, validated, as chat messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError("prompt", prompt, "expected a non-empty string")
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
        for i, m in enumerate(messages):
            if m.get("role") not in ROLES:
                raise ConfigError(f"messages[{i}].role", m.get("role"), f"expected one of {', '.join(ROLES)}")
            if not isinstance(m.get("content"), str):
                raise ConfigError(f"messages[{i}].content", m.get("content"), "expected a string")
        if not messages:
            raise ConfigError("messages", messages, "expected at least one message")
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def check_generation(max_tokens: int, temperature: float) -> None:
    """Validate generation settings as the serving API does (:mod:`llmops_nb.protocol.chat_body`)."""
    problem = int_problem("max_tokens", max_tokens, 1, required=True) or temperature_problem(temperature, required=True)
    if problem is not None:
        field, value, allowed = problem
        raise ConfigError(field, value, f"expected {allowed}")


def output_fields(
    response_format: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None, tool_choice: Any = None
) -> dict[str, Any]:
    """The chat body's output-shaping fields, checked as the serving API checks them (ConfigError)."""
    problem = response_format_problem(response_format) or tools_problem(tools, tool_choice)
    if problem is not None:
        field, value, allowed = problem
        raise ConfigError(field, value, f"expected {allowed}")
    out = {"response_format": response_format, "tools": tools, "tool_choice": tool_choice}
    return {k: v for k, v in out.items() if v is not None}


def chat(
    w: WorkspaceClient,
    endpoint: str,
    prompt: str | Messages,
    *,
    max_tokens: int = 64,
    temperature: float = 0.0,
    stop: list[str] | None = None,
    system: str | None = None,
    served_entity: str | None = None,
    response_format: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
) -> ChatResult:
    """Send one chat request to ``endpoint`` and return the answer with latency and usage.

    ``served_entity``: ask that served entity of the endpoint, whatever the traffic split
    (``POST /serving-endpoints/{name}/served-models/{entity}/invocations``, Databricks docs
    "query individual models behind an endpoint"; the SDK has no call for it).
    ``response_format``, ``tools`` and ``tool_choice`` are OpenAI's (structured output, tool
    calls: the answer's ``tool_calls``); databricks-sdk's ``query`` has no such arguments, so
    such a body is posted as it is, as the SDK's own query posts its body."""
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole, QueryEndpointResponse

    from llmops_nb.chat.dataplane import data_plane_auth, route_of

    check_generation(max_tokens, temperature)
    extras = output_fields(response_format, tools, tool_choice)
    messages = [ChatMessage(role=ChatMessageRole(m["role"]), content=m["content"]) for m in as_messages(prompt, system)]
    plane = route_of(w, endpoint)  # route-optimized: its data-plane URL, with an OAuth token for it
    auth = data_plane_auth(w, endpoint, plane) if plane else None
    started = time.perf_counter()
    where = f"{endpoint}/{served_entity}" if served_entity else endpoint
    try:
        if plane is not None and served_entity:
            raise QueryError(
                f"endpoint {endpoint}: route-optimized; its served entity {served_entity} is not asked on its own here"
            )
        answer: Any = None
        if plane is None and not served_entity and not extras:
            response = no_resend(w).serving_endpoints.query(
                name=endpoint, messages=messages, max_tokens=max_tokens, temperature=temperature, stop=stop
            )
        else:  # the body and headers ServingEndpointsDataPlaneAPI.query sends (databricks-sdk serving.py)
            body: dict[str, Any] = {
                "messages": [m.as_dict() for m in messages],
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
            if stop:
                body["stop"] = list(stop)
            body.update(extras)
            route = f"served-models/{served_entity}/invocations" if served_entity else "invocations"
            path = None if plane else f"/serving-endpoints/{endpoint}/{route}"
            answer = no_resend(w).api_client.do(
                "POST",
                path=path,
                url=plane.url if plane else None,
                body=body,
                headers={"Accept": "application/json", "Content-Type": "application/json"},
                response_headers=["served-model-name"],
                auth=auth,
            )
            response = QueryEndpointResponse.from_dict(answer)
    except (NotResent, DatabricksError, TimeoutError, OSError) as exc:
        if (refused := timed_out(w, endpoint, exc)) is not None:
            raise refused from None
        # DatabricksError: an API error after the SDK's retries; TimeoutError: the SDK's retry
        # budget ran out on 429/503; OSError: requests' connection errors (a killed server).
        raise QueryError(f"endpoint {where}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    latency_ms = (time.perf_counter() - started) * 1000
    if not response.choices:
        raise QueryError(f"endpoint {where}: the answer has no choices")
    choice = response.choices[0]
    usage = response.usage
    first = (answer.get("choices") or [{}])[0] if isinstance(answer, dict) else {}
    raw = first.get("message") or {}
    return ChatResult(
        content=(choice.message.content if choice.message else choice.text) or "",
        prompt_tokens=int(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=int(usage.completion_tokens or 0) if usage else 0,
        total_tokens=int(usage.total_tokens or 0) if usage else 0,
        latency_ms=latency_ms,
        served_entity=response.served_model_name,
        finish_reason=first.get("finish_reason") or choice.finish_reason,  # the SDK's drops "tool_calls"
        tool_calls=raw.get("tool_calls") or None,  # the SDK's ChatMessage has no tool_calls
    )


def chat_stream(
    w: WorkspaceClient,
    endpoint: str,
    prompt: str | Messages,
    *,
    max_tokens: int = 64,
    temperature: float = 0.0,
    stop: list[str] | None = None,
    system: str | None = None,
    response_format: dict[str, Any] | None = None,
) -> ChatStream:
    """Stream the answer of ``endpoint``: iterate the returned :class:`ChatStream` for text
    deltas as the model produces them; its ``result`` (a :class:`ChatResult` with ``ttft_ms``)
    is set when the stream ends, and ``close()`` stops it (the server frees the sequence).

    Works on both workspaces through the SDK's authenticated client (llmops_nb.chat.stream),
    where ``serving_endpoints.query`` cannot stream (databricks/databricks-sdk-py#1048).
    """
    from llmops_nb.chat.stream import open_stream

    check_generation(max_tokens, temperature)
    body: dict[str, Any] = {"messages": as_messages(prompt, system), "max_tokens": max_tokens, "temperature": temperature}
    if stop:
        body["stop"] = list(stop)
    body.update(output_fields(response_format))
    return open_stream(w, endpoint, body)


def chat_many(
    w: WorkspaceClient,
    endpoint: str,
    prompts: Sequence[str | Messages],
    *,
    concurrency: int = 8,
    progress: bool = True,
    on_result: Callable[[int, ChatResult | QueryError], None] | None = None,
    limiter: AimdLimiter | None = None,
    **generation: Any,
) -> list[ChatResult | QueryError]:
    """Send many chat requests with up to ``concurrency`` in flight; results keep the input order.

    A request that still fails after retries is returned as its :class:`QueryError`
    (nothing is dropped); ``on_result(index, result)`` is called as each one finishes. 429s
    go through one AIMD ``limiter`` (:mod:`llmops_nb.chat.ratecontrol`; a new one by default).
    """
    from tqdm.auto import tqdm

    results: list[ChatResult | QueryError | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc=f"querying {endpoint}", disable=not progress) as bar:
        for i, result in chat_iter(w, endpoint, prompts, concurrency=concurrency, limiter=limiter, **generation):
            results[i] = result
            if on_result:
                on_result(i, result)
            bar.update(1)
    return results  # type: ignore[return-value]


def chat_iter(
    w: WorkspaceClient,
    endpoint: str,
    prompts: Iterable[str | Messages],
    *,
    concurrency: int = 8,
    limiter: AimdLimiter | None = None,
    **generation: Any,
) -> Iterator[tuple[int, ChatResult | QueryError]]:
    """``(index, answer or QueryError)`` as each request finishes; ``prompts`` read lazily.

    At most ``2 * concurrency`` prompts are taken ahead of the answers, so any number of
    prompts is asked in bounded memory. The limiter sees every 429 (the SDK does not retry
    them: :func:`llmops_nb.chat.ratecontrol.throttle_aware`) and asks the call again after the
    Retry-After; 503s and connection errors keep the SDK's retries.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError("concurrency", concurrency, "expected an integer >= 1")
    limiter = limiter or AimdLimiter(concurrency)
    tw = throttle_aware(w)

    def ask(prompt: str | Messages) -> ChatResult:
        try:
            return limiter.call(lambda: chat(tw, endpoint, prompt, **generation))
        except Throttled as exc:
            raise QueryError(f"endpoint {endpoint}: {exc}") from None

    source = enumerate(prompts)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="chat") as pool:
        pending: dict[Future, int] = {}

        def top_up() -> None:
            for i, prompt in source:
                pending[pool.submit(ask, prompt)] = i
                if len(pending) >= 2 * concurrency:
                    return

        try:
            top_up()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    try:
                        result: ChatResult | QueryError = future.result()
                    except QueryError as exc:
                        result = exc
                    yield i, result
                top_up()
        finally:  # the caller stopped early (an error, a kill): ask nothing more
            for future in pending:
                future.cancel()
