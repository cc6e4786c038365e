"""Usage tracking: one JSON line per request in ``<home>/usage/<endpoint>.jsonl``.

Never the prompt, the answer or a key: only counts and timings.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

_lock = threading.Lock()


def record_usage(home: Path, endpoint: str, served_entity: str | None, status: int,
                 latency_ms: float, usage: dict | None) -> None:
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
