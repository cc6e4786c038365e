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
    """The first broken generation setting of ``body``: max_tokens, n, temperature, stop."""
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        return "stop", stop, "a string or a list of strings"
    return (
        int_problem("max_tokens", body.get("max_tokens"), 1)
        or int_problem("n", body.get("n"), *N_RANGE)
        or temperature_problem(body.get("temperature"))
    )
