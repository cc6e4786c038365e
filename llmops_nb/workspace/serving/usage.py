"""What a finished invocation leaves behind: its usage record and its inference table row.

:func:`invocation_done` is the one hook the manager calls when an invocation ends (answered,
failed, or a stream that ended): with ``ai_gateway.usage_tracking_config.enabled`` one JSON line
in ``<home>/usage/<endpoint>.jsonl`` (never the prompt, the answer or a key: only counts and
timings), and with an inference table enabled the request and response queued for it
(:mod:`.inference_table`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from llmops_nb.workspace.serving.inference_table import log_invocation

_lock = threading.Lock()


def invocation_done(
    home: Path,
    endpoint: str,
    rec: dict,
    entity: str | None,
    status: int,
    latency_ms: float,
    request: Any,
    response: Any,
    requester: str | None,
) -> None:
    """Record one finished invocation of ``endpoint`` (its stored record ``rec``).

    ``entity`` is the served entity that answered (after fallbacks), ``response`` the answer --
    a streamed one assembled into its ``chat.completion`` (``streaming.assemble``) -- or the
    error body ``{error_code, message}``.
    """
    if (((rec.get("ai_gateway") or {}).get("usage_tracking_config")) or {}).get("enabled"):
        usage = response.get("usage") if isinstance(response, dict) else None
        record_usage(home, endpoint, entity, status, latency_ms, usage)
    log_invocation(
        home,
        endpoint,
        rec,
        entity=entity,
        status=status,
        duration_ms=latency_ms,
        request=request,
        response=response,
        requester=requester,
    )


def record_usage(
    home: Path, endpoint: str, served_entity: str | None, status: int, latency_ms: float, usage: dict | None
) -> None:
    usage = usage or {}
    line = {
        "timestamp": time.time(),
        "endpoint": endpoint,
        "served_entity": served_entity,
        "status": status,
        "latency_ms": round(latency_ms, 3),
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "total_tokens": int(usage.get("total_tokens") or 0),
    }
    path = Path(home) / "usage" / f"{endpoint}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
