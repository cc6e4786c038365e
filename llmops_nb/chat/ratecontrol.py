"""One concurrency and rate-limit policy for endpoint calls and judge calls: AIMD on 429.

:class:`AimdLimiter` keeps a window of calls allowed in flight. Each answered call widens it
by ``1/window`` (about +1 per window of answers: additive increase); a 429 halves it
(multiplicative decrease, once per burst: calls started before the last cut do not cut it
again) and holds every caller until the time the 429's ``Retry-After`` names. So an
evaluation neither fails a gateway rate limit (a 429 is waited out and the call asked again)
nor idles under it (the rate climbs back as soon as 429s stop).

How it combines with databricks-sdk: the SDK retries 429 and 503 itself, sleeping
Retry-After through its config's clock until ``retry_timeout_seconds`` (default 300 s):
``databricks/sdk/retries.py`` ``retried()`` calls ``clock.sleep`` inside its ``except`` block,
and the clock comes from ``Config(clock=...)`` (``databricks/sdk/core.py``). A 429 retried
there would be invisible to the limiter, and a minute-long Retry-After would exhaust a short
retry budget. :func:`throttle_aware` therefore gives a copy of the client a clock whose
``sleep`` raises :class:`Throttled` when the error being retried is a 429: the limiter sees
every 429 and does the waiting and the asking again (without the SDK's time budget, up to
its own ``patience``); 503s and connection errors keep the SDK's own retries.

A generation is never sent twice: the SDK also retries ``requests.Timeout``
(``databricks/sdk/_base_client.py`` ``_is_retryable``: "timeout"), so an answer slower than
``http_timeout_seconds`` would be POSTed again until ``retry_timeout_seconds``, each copy run,
billed and written to the inference table. :func:`no_resend` (and :func:`throttle_aware`, which
includes it) gives the client a clock whose ``sleep`` raises :class:`NotResent` when the error
being retried is a read timeout (the request reached the server); a connect timeout (nothing
was sent) is still retried.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from llmops_nb.errors import LlmopsError, QueryError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

T = TypeVar("T")


class Throttled(LlmopsError):
    """A call refused with 429; ``retry_after`` seconds to wait (from Retry-After)."""

    def __init__(self, retry_after: float, message: str = "") -> None:
        self.retry_after = float(retry_after)
        super().__init__(message or f"throttled (429), retry after {self.retry_after:.1f} s")


class AimdLimiter:
    """A window of calls in flight: additive increase on answers, halved on 429, shared hold."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        min_concurrency: int = 1,
        decrease: float = 0.5,
        patience: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency < 1 or not 1 <= min_concurrency <= max_concurrency or not 0 < decrease < 1:
            raise ValueError("need 1 <= min_concurrency <= max_concurrency and 0 < decrease < 1")
        self.max, self.min, self.decrease, self.patience = max_concurrency, min_concurrency, decrease, patience
        self.window = float(max_concurrency)
        self.in_flight = 0
        self.hold_until = 0.0
        self.throttles = 0
        self.answers = 0
        self._last_cut = -float("inf")
        self._clock = clock
        self._cond = threading.Condition()

    def acquire(self) -> float:
        """Wait for a free slot (and the end of any hold); return the call's start time."""
        with self._cond:
            while True:
                now = self._clock()
                if now < self.hold_until:
                    self._cond.wait(self.hold_until - now)
                elif self.in_flight < max(self.min, int(self.window)):
                    self.in_flight += 1
                    return now
                else:
                    self._cond.wait()

    def release(self, *, answered: bool) -> None:
        """Free the slot; an answered call widens the window by ``1/window``."""
        with self._cond:
            self.in_flight -= 1
            if answered:
                self.answers += 1
                self.window = min(float(self.max), self.window + 1 / self.window)
            self._cond.notify_all()

    def throttled(self, retry_after: float, started: float) -> None:
        """A 429 for a call started at ``started``: hold everyone ``retry_after`` s, cut the window once."""
        with self._cond:
            now = self._clock()
            self.throttles += 1
            self.hold_until = max(self.hold_until, now + max(0.0, retry_after))
            if started > self._last_cut:  # one cut per burst: calls started before it do not cut again
                self.window = max(float(self.min), self.window * self.decrease)
                self._last_cut = now
            self._cond.notify_all()

    def call(self, fn: Callable[[], T], *, retry_after_of: Callable[[BaseException], float | None] | None = None) -> T:
        """``fn()`` in a slot, asked again after each 429 until ``patience`` s of throttling pass.

        ``retry_after_of(exc)`` says whether an exception is a 429 (its Retry-After in
        seconds) or not (None: raised at once); by default only :class:`Throttled` is.
        """
        first_throttle: float | None = None
        while True:
            started = self.acquire()
            answered = False
            try:
                result = fn()
                answered = True
                return result
            except BaseException as exc:
                wait = exc.retry_after if isinstance(exc, Throttled) else (retry_after_of(exc) if retry_after_of else None)
                if wait is None:
                    raise
                first_throttle = started if first_throttle is None else first_throttle
                if self._clock() - first_throttle > self.patience:
                    raise Throttled(wait, f"still throttled (429) after {self.patience:g} s") from exc
                self.throttled(wait, started)
            finally:
                self.release(answered=answered)

    def stats(self) -> dict[str, float]:
        """Answers, 429s seen and the current window."""
        with self._cond:
            return {"answers": self.answers, "throttles": self.throttles, "window": self.window}


class NotResent(QueryError):
    """An invocation with no answer within the client's HTTP timeout: it is not sent again."""


def _read_timed_out(err: BaseException | None) -> bool:
    """True for a timeout after the request was sent: requests' ReadTimeout (before the headers),
    or the ConnectionError requests wraps a urllib3 ReadTimeoutError in (reading the body)."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    if isinstance(err, requests.ConnectTimeout):  # nothing reached the server: safe to retry
        return False
    if isinstance(err, requests.ReadTimeout):
        return True
    return isinstance(err, requests.ConnectionError) and any(isinstance(a, ReadTimeoutError) for a in err.args)


def _not_resent(http_timeout: float | None, endpoint: str = "") -> NotResent:
    return NotResent(
        (f"endpoint {endpoint}: " if endpoint else "")
        + f"no answer within http_timeout_seconds={http_timeout or 60:g} s; not sent again (a re-sent "
        "generation runs, is billed and is logged twice): raise http_timeout_seconds "
        "($LLMOPS_HTTP_TIMEOUT_SECONDS) above the endpoint's request time, or lower max_tokens"
    )


def timed_out(w: WorkspaceClient, endpoint: str, err: BaseException) -> NotResent | None:
    """The :class:`NotResent` of an invocation's error if it is a read timeout (a newer SDK raises
    it at once for a POST instead of retrying it), else None."""
    if isinstance(err, NotResent):
        return NotResent(f"endpoint {endpoint}: {err}")
    return _not_resent(w.config.http_timeout_seconds, endpoint) if _read_timed_out(err) else None


class _InvocationClock:
    """The SDK's clock, except when ``retried()`` would sleep before sending an invocation again:
    a read timeout raises :class:`NotResent`; with ``throttle``, a 429 raises :class:`Throttled`."""

    def __init__(self, inner: Any, *, throttle: bool, http_timeout: float | None) -> None:
        self.inner, self.throttle, self.http_timeout = inner, throttle, http_timeout

    def time(self) -> float:
        return self.inner.time()

    def sleep(self, seconds: float) -> None:
        from databricks.sdk.errors import TooManyRequests

        retrying = sys.exc_info()[1]  # retried() sleeps inside `except Exception as err:`
        if _read_timed_out(retrying):
            raise _not_resent(self.http_timeout) from None
        if self.throttle and isinstance(retrying, TooManyRequests):
            raise Throttled(seconds)
        self.inner.sleep(seconds)


def _with_clock(w: WorkspaceClient, *, throttle: bool) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient

    config = w.config.copy()
    # Config(clock=...) is public; on a copy it can only be set through the attribute behind
    # Config.clock (databricks/sdk/config.py), which ApiClient reads (databricks/sdk/core.py).
    config._clock = _InvocationClock(w.config.clock, throttle=throttle, http_timeout=w.config.http_timeout_seconds)
    return WorkspaceClient(config=config)


def throttle_aware(w: WorkspaceClient) -> WorkspaceClient:
    """A copy of ``w`` (same host and credentials) whose 429s raise :class:`Throttled` at once,
    and whose invocations are never sent again after a read timeout (:func:`no_resend`)."""
    return _with_clock(w, throttle=True)


_NO_RESEND: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_NO_RESEND_LOCK = threading.Lock()


def no_resend(w: WorkspaceClient) -> WorkspaceClient:
    """``w`` for invocations: a copy (made once per client) that raises :class:`NotResent` instead
    of POSTing a generation again after a read timeout; ``w`` itself if it already does."""
    if isinstance(w.config.clock, _InvocationClock):
        return w
    with _NO_RESEND_LOCK:
        found = _NO_RESEND.get(w)
        if found is None:
            found = _NO_RESEND[w] = _with_clock(w, throttle=False)
        return found
