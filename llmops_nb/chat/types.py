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
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI's tool_calls of an answer that calls tools

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for tables and JSON); ``tool_calls`` only when the answer has them."""
        out = asdict(self)
        if out["tool_calls"] is None:
            del out["tool_calls"]
        return out
