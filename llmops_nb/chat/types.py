"""What a chat call takes and gives back: messages in, a :class:`ChatResult` out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class ChatResult:
    """One answer, with what it cost."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: float
    served_entity: str | None
    finish_reason: str | None
    ttft_ms: float | None = None  # time to the first text delta, for streamed answers

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for tables and JSON)."""
        return asdict(self)
