"""The AI gateway's ``fallback_config``: a failed external-model call goes to the next entity.

What Databricks documents: databricks-sdk ``serving.FallbackConfig.enabled`` -- "When a served
entity in the serving endpoint returns specific error codes (e.g. 500), the request will
automatically be round-robin attempted with other served entities in the same endpoint,
following the order of served entity list, until a successful response is returned. If all
attempts fail, return the last response with the error code." -- and the AI gateway docs
(docs.databricks.com/aws/en/ai-gateway/configure-endpoints-beta, "Fallbacks"): a request that
returns a 429 or 5XX error on one model falls back to the next model of the endpoint. So:
the entity the traffic split picked answers first; on 429 or 5xx from an external-model
entity the next entities of ``config.served_entities`` (wrapping round, each once, whatever
their traffic share) are tried in order; the first success answers (its name is the
``served-model-name``), else the last error is the answer. Other errors (400, 404, a gateway
rate limit, which refuses before any entity) are answered at once. A stream falls back the same
way while no chunk has left (an error before the first chunk is an HTTP error, not a broken
stream); once its first chunk is sent, it is that entity's answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llmops_nb.workspace.apierror import ApiError

T = TypeVar("T")


def enabled(rec: dict) -> bool:
    """True when the endpoint's AI gateway turns fallbacks on."""
    return bool(((rec.get("ai_gateway") or {}).get("fallback_config") or {}).get("enabled"))


def order(rec: dict, first: str) -> list[str]:
    """The entities to try for a call the split sent to ``first``: it, then the next ones in
    the served entity list (wrapping round) when fallbacks are on."""
    if not enabled(rec):
        return [first]
    names = [e["name"] for e in (rec.get("config") or {}).get("served_entities") or []]
    if first not in names:
        return [first]
    at = names.index(first)
    return names[at:] + names[:at]


def falls_back(error: ApiError, runner: Any) -> bool:
    """A 429 or 5xx answered by an external-model entity (the errors Databricks falls back on)."""
    external = bool((getattr(runner, "entity", None) or {}).get("external_model"))
    return external and (error.status == 429 or error.status >= 500)


async def call(
    runners: dict[str, Any], rec: dict, first: str, tried: list[str], attempt: Callable[[Any], Awaitable[T]]
) -> tuple[T, str]:
    """(what ``attempt(runner)`` returned, entity that answered): ``first``, then its fallbacks;
    each name tried goes into ``tried`` (its last one is the entity of the error when every
    attempt fails)."""
    names = [n for n in order(rec, first) if n in runners]
    tried.clear()
    for i, name in enumerate(names):
        tried.append(name)
        try:
            return await attempt(runners[name]), name
        except ApiError as e:
            if i == len(names) - 1 or not falls_back(e, runners[name]):
                raise
    raise AssertionError("unreachable: order() always names the first entity")


async def invoke(runners: dict[str, Any], rec: dict, first: str, body: dict, tried: list[str]) -> tuple[dict, str]:
    """A plain call through :func:`call`."""
    return await call(runners, rec, first, tried, lambda runner: runner.invoke(body))
