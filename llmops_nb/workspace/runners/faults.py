"""Fault injection and request recording for the fake workspace (``/_fake/`` admin routes)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llmops_nb.workspace.apierror import invalid, too_many, unavailable

ROUTE_CLASSES = ("invocations", "api")


@dataclass
class Faults:
    """What the fake workspace does wrong, and how slowly. Set with ``POST /_fake/faults``."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    retry_after: float = 1.0
    latency_ms: float | None = None  # None: the server's --fake-latency-ms
    endpoint_latency_ms: dict[str, float] = field(default_factory=dict)  # per endpoint, over latency_ms
    # the AI gateway's "minute" in seconds (None: 60), so a test of a rate limit's renewal waits less than one
    gateway_minute_seconds: float | None = None
    max_concurrency: int | None = None  # in-flight invocations beyond this -> 429
    fail_next_update: str | None = None  # served entity name whose next start fails
    # served entity name -> fraction of its answers that are its own 500 (a bad model version)
    entity_error_rate: dict[str, float] = field(default_factory=dict)
    # last user messages whose every answer is the fake entity's own 500 (one row that always fails)
    fail_questions: list[str] = field(default_factory=list)
    ready_seconds: float | None = None  # None: the server's --fake-ready-seconds
    hang_seconds: float = 0.0  # extra wait before answering an invocation
    stall_body_seconds: float = 0.0  # an invocation's status and headers at once, its body this much later
    # stream: true answered with one application/json completion, as a served model that cannot
    # stream answers it (MLflow's scoring server calls only predict; mlflow#12439)
    stream_as_json: bool = False
    sql_chunk_rows: int | None = None  # rows per statement result chunk (None: 10,000)
    sql_inline_limit_bytes: int | None = None  # an INLINE result above this FAILs (None: 25 MiB)
    # seconds after its request an inference-table row is seen by SQL statements (Databricks: "less
    # than hour"); None: as soon as it is written (about a second)
    inference_table_lag_s: float | None = None
    routes: list[str] = field(default_factory=lambda: ["invocations"])
    seed: int = 0

    def latency_for(self, endpoint: str, default: float) -> float:
        """The answer latency of ``endpoint``'s fake entities, in ms: its own, else ``latency_ms``, else ``default``."""
        if endpoint in self.endpoint_latency_ms:
            return self.endpoint_latency_ms[endpoint]
        return self.latency_ms if self.latency_ms is not None else default

    @classmethod
    def from_body(cls, body: dict) -> Faults:
        known = {f.name for f in fields(cls)}
        for key in body:
            if key not in known:
                raise invalid(f"faults.{key}: unknown field; allowed: {', '.join(sorted(known))}")
        faults = cls(**body)
        for rate in ("rate_429", "rate_503"):
            value = getattr(faults, rate)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise invalid(f"faults.{rate}: {value!r} is not allowed; a number in [0, 1]")
        for name, fraction in faults.entity_error_rate.items():
            if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
                raise invalid(f"faults.entity_error_rate.{name}: {fraction!r} is not allowed; a number in [0, 1]")
        minute = faults.gateway_minute_seconds
        if minute is not None and (not isinstance(minute, (int, float)) or minute <= 0):
            raise invalid(f"faults.gateway_minute_seconds: {minute!r} is not allowed; a number of seconds > 0")
        lag = faults.inference_table_lag_s
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, (int, float)) or lag < 0):
            raise invalid(f"faults.inference_table_lag_s: {lag!r} is not allowed; a number of seconds >= 0")
        for name, ms in faults.endpoint_latency_ms.items():
            if not isinstance(ms, (int, float)) or ms < 0:
                raise invalid(f"faults.endpoint_latency_ms.{name}: {ms!r} is not allowed; a number of ms >= 0")
        for route in faults.routes:
            if route not in ROUTE_CLASSES:
                raise invalid(f"faults.routes: {route!r} is not allowed; one of {ROUTE_CLASSES}")
        return faults


class FaultInjector:
    """Holds the active faults, a seeded RNG, the in-flight count and the request record."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.rng = random.Random(0)
        self.in_flight = 0
        self.recorded: list[dict] = []

    def set(self, body: dict) -> dict:
        merged = {**asdict(self.faults), **body}
        self.faults = Faults.from_body(merged)
        self.rng = random.Random(self.faults.seed)
        return asdict(self.faults)

    def reset(self) -> None:
        self.faults = Faults()
        self.rng = random.Random(0)
        self.recorded.clear()

    def record(self, method: str, path: str, body: object, status: int | None = None) -> dict:
        entry = {"time": time.time(), "method": method, "path": path, "body": body, "status": status}
        self.recorded.append(entry)
        return entry

    async def before(self, route_class: str) -> None:
        """Apply random 429/503 and latency to a request of ``route_class``."""
        f = self.faults
        if route_class not in f.routes:
            return
        if f.rate_429 and self.rng.random() < f.rate_429:
            raise too_many("Injected fault: request limit exceeded.", f.retry_after)
        if f.rate_503 and self.rng.random() < f.rate_503:
            raise unavailable("Injected fault: temporarily unavailable.", f.retry_after)
        if f.hang_seconds:
            await asyncio.sleep(f.hang_seconds)

    def stall_body(self, route_class: str, response: Any) -> Any:
        """``response`` (a streaming one, as middleware sees it) with its body held back
        ``stall_body_seconds``: the client has the headers and waits for the body."""
        seconds = self.faults.stall_body_seconds
        if not seconds or route_class not in self.faults.routes or not hasattr(response, "body_iterator"):
            return response
        body = response.body_iterator

        async def stalled() -> AsyncIterator[Any]:
            await asyncio.sleep(seconds)
            async for chunk in body:
                yield chunk

        response.body_iterator = stalled()
        return response

    def enter(self) -> None:
        """Count an in-flight invocation; 429 beyond ``max_concurrency``."""
        limit = self.faults.max_concurrency
        if limit is not None and self.in_flight >= limit:
            raise too_many(f"Injected fault: more than {limit} concurrent requests.", self.faults.retry_after)
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    def entity_fails(self, entity_name: str) -> bool:
        """True when this answer of ``entity_name`` must be its own error (``entity_error_rate``)."""
        rate = self.faults.entity_error_rate.get(entity_name, 0.0)
        return bool(rate) and self.rng.random() < rate

    def question_fails(self, body: dict) -> bool:
        """True when ``body``'s last user message is one of ``fail_questions``."""
        if not self.faults.fail_questions or not isinstance(body.get("messages"), list):
            return False
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        return bool(users) and users[-1].get("content") in self.faults.fail_questions

    def take_failure(self, entity_name: str) -> bool:
        """True once if the next start of ``entity_name`` must fail."""
        if self.faults.fail_next_update and self.faults.fail_next_update == entity_name:
            self.faults.fail_next_update = None
            return True
        return False
