"""AI gateway rate limits: calls and tokens per renewal period (minute), sliding window, per key.

What Databricks documents (databricks-sdk ``serving.AiGatewayRateLimit``): ``calls`` and/or
``tokens`` per ``renewal_period`` (only ``minute``), ``key`` ``endpoint`` (the default),
``user``, ``user_group`` or ``service_principal``, and an optional ``principal`` the limit
applies to. Locally the bearer ``<workspace token>:<name>`` names the requester (the plain token is one
user): a ``user`` limit counts each requester apart, and one with a ``principal`` counts only that requester. ``user_group`` and
``service_principal`` limits cannot be resolved here; the deploy warns about them
(:mod:`.notices`) and they are not enforced. Over a limit: 429 REQUEST_LIMIT_EXCEEDED with
Retry-After (seconds until the window frees enough room). The requester never appears in a
message.
"""

from __future__ import annotations

import collections
import time

from llmops_nb.workspace.apierror import too_many

_PERIODS = {"minute": 60.0}
ENFORCED_KEYS = ("endpoint", "user")


def _applies(limit: dict, user: str) -> bool:
    key = limit.get("key") or "endpoint"
    if key not in ENFORCED_KEYS:
        return False
    principal = limit.get("principal")
    return key == "endpoint" or principal is None or principal == user


def _bucket(endpoint: str, i: int, limit: dict, user: str) -> tuple:
    key = limit.get("key") or "endpoint"
    return (endpoint, i, key, "" if key == "endpoint" else user)


class RateLimiter:
    """Sliding windows of ``(time, calls)`` and ``(time, tokens)`` per limit and requester."""

    def __init__(self, clock=time.monotonic, minute=lambda: 60.0) -> None:
        self.clock = clock
        self.minute = minute  # the seconds of a ``minute`` renewal period: 60, or the fake's gateway_minute_seconds
        self.calls: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
        self.tokens: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)

    def _window(self, store: dict, bucket: tuple, period: float, now: float) -> collections.deque:
        window = store[bucket]
        while window and window[0][0] <= now - period:
            window.popleft()
        return window

    def check(self, endpoint: str, ai_gateway: dict | None, user: str) -> None:
        """Count one call; raise 429 REQUEST_LIMIT_EXCEEDED (with Retry-After) if over a limit.

        A token limit refuses the call once the tokens of the window reach it; the call's
        own tokens are counted afterwards by :meth:`add_tokens`.
        """
        now = self.clock()
        hits = []
        for i, limit in enumerate((ai_gateway or {}).get("rate_limits") or []):
            if not _applies(limit, user):
                continue
            bucket = _bucket(endpoint, i, limit, user)
            renewal = limit.get("renewal_period") or "minute"
            period = _PERIODS.get(renewal, 60.0) * self.minute() / 60.0
            what = f"per {renewal} (key {bucket[2]}) of endpoint {endpoint}"
            calls = limit.get("calls")
            if calls is not None:
                window = self._window(self.calls, bucket, period, now)
                if len(window) >= int(calls):
                    raise too_many(f"Exceeded the rate limit of {calls} calls {what}.", window[0][0] + period - now)
                hits.append(window)
            tokens = limit.get("tokens")
            if tokens is not None:
                window = self._window(self.tokens, bucket, period, now)
                used = sum(n for _, n in window)
                if used >= int(tokens):
                    raise too_many(
                        f"Exceeded the rate limit of {tokens} tokens {what}.",
                        _free_at(window, used - int(tokens) + 1) + period - now,
                    )
        for window in hits:
            window.append((now, 1))

    def add_tokens(self, endpoint: str, ai_gateway: dict | None, user: str, n: int) -> None:
        """Count ``n`` tokens of an answered call against every token limit that applies."""
        if n <= 0:
            return
        now = self.clock()
        for i, limit in enumerate((ai_gateway or {}).get("rate_limits") or []):
            if limit.get("tokens") is not None and _applies(limit, user):
                self.tokens[_bucket(endpoint, i, limit, user)].append((now, int(n)))

    def forget(self, endpoint: str) -> None:
        for store in (self.calls, self.tokens):
            for k in [k for k in store if k[0] == endpoint]:
                del store[k]


def _free_at(window: collections.deque, excess: int) -> float:
    """When enough of the oldest entries of ``window`` expire to drop ``excess`` tokens."""
    dropped = 0
    for t, n in window:
        dropped += n
        if dropped >= excess:
            return t
    return window[-1][0]
