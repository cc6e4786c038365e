"""What each served entity of an endpoint answered over a window: status and latency per call.

Read from the workspace's usage records: with ``ai_gateway.usage_tracking_config.enabled`` the
local workspace (and the fake) writes one JSON line per finished invocation to
``<home>/usage/<endpoint>.jsonl`` (``timestamp``, ``served_entity``, ``status``, ``latency_ms``,
token counts: ``workspace/serving/usage.py``), as Databricks' usage tracking records per served
entity. :class:`UsageRecords` reads only what was appended since its last read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Call:
    """One finished invocation: when it ended, which entity answered, its status and latency."""

    at: float
    entity: str
    status: int
    latency_ms: float

    @property
    def failed(self) -> bool:
        """The entity's own failure: a 5xx answer (a 4xx is the caller's request, a 429 the limits)."""
        return self.status >= 500


class TrafficReader(Protocol):
    """Where a rollout reads live traffic from."""

    def calls(self, endpoint: str, since: float) -> list[Call]:
        """The calls of ``endpoint`` that ended at or after ``since`` (epoch seconds)."""
        ...


class UsageRecords:
    """The usage records of a workspace home (``<home>/usage/<endpoint>.jsonl``), read incrementally."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._offsets: dict[str, int] = {}
        self._seen: dict[str, list[Call]] = {}

    def calls(self, endpoint: str, since: float) -> list[Call]:
        import json

        path = self.home / "usage" / f"{endpoint}.jsonl"
        seen = self._seen.setdefault(endpoint, [])
        if path.exists():
            with path.open("rb") as f:
                f.seek(self._offsets.get(endpoint, 0))
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            self._offsets[endpoint] = self._offsets.get(endpoint, 0) + end
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                seen.append(
                    Call(float(rec["timestamp"]), str(rec.get("served_entity")), int(rec["status"]), float(rec["latency_ms"]))
                )
        self._seen[endpoint] = kept = [c for c in seen if c.at >= since]  # windows only move forward
        return kept
