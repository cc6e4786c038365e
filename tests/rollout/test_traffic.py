"""Usage records read incrementally: only what was appended, a half-written line left for later."""

from __future__ import annotations

import json
from pathlib import Path

from llmops_nb.rollout.traffic import UsageRecords


def _line(t: float, entity: str, status: int = 200) -> str:
    return json.dumps({"timestamp": t, "endpoint": "e", "served_entity": entity, "status": status, "latency_ms": 12.5}) + "\n"


def test_appended_records_are_read_once_and_a_partial_line_waits(tmp_path: Path) -> None:
    usage = tmp_path / "usage" / "e.jsonl"
    usage.parent.mkdir()
    reader = UsageRecords(tmp_path)
    assert reader.calls("e", 0) == []
    usage.write_text(_line(1, "a") + _line(2, "b", 500) + _line(3, "a")[:20])
    got = reader.calls("e", 0)
    assert [(c.at, c.entity, c.failed) for c in got] == [(1, "a", False), (2, "b", True)]
    with usage.open("a") as f:
        f.write(_line(3, "a")[20:] + _line(4, "b", 429))
    got = reader.calls("e", 2)
    assert [(c.at, c.entity, c.status, c.failed) for c in got] == [
        (2, "b", 500, True),
        (3, "a", 200, False),
        (4, "b", 429, False),
    ]
    assert got[1].latency_ms == 12.5
