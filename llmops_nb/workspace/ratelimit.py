"""AI gateway rate limits: calls per renewal period (minute), sliding window, per key."""

from __future__ import annotations

import collections
import time

from .apierror import too_many

_PERIODS = {"minute": 60.0}


class RateLimiter:
    """Sliding-window call counters keyed by (endpoint, limit key, principal)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.calls: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)

    def check(self, endpoint: str, ai_gateway: dict | None, user: str) -> None:
        """Count one call; raise 429 REQUEST_LIMIT_EXCEEDED (with Retry-After) if over a limit."""
        limits = (ai_gateway or {}).get("rate_limits") or []
        now = self.clock()
        hits = []
        for limit in limits:
            calls = limit.get("calls")
            if calls is None:
                continue  # token limits are not enforced by the local workspace
            key = limit.get("key") or "user"
            if key not in ("endpoint", "user"):
                continue
            period = _PERIODS.get(limit.get("renewal_period", "minute"), 60.0)
            window = self.calls[(endpoint, key, "" if key == "endpoint" else user, period)]
            while window and window[0] <= now - period:
                window.popleft()
            if len(window) >= int(calls):
                retry = window[0] + period - now
                raise too_many(f"Exceeded the rate limit of {calls} calls per "
                               f"{limit.get('renewal_period', 'minute')} ({key}) of endpoint "
                               f"{endpoint}.", retry)
            hits.append(window)
        for window in hits:
            window.append(now)

    def forget(self, endpoint: str) -> None:
        for k in [k for k in self.calls if k[0] == endpoint]:
            del self.calls[k]
