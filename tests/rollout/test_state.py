"""The rollout record and the applied-config history survive as files (what the CLI reads)."""

from __future__ import annotations

from pathlib import Path

from llmops_nb.rollout.state import IN_PROGRESS, AppliedConfig, RolloutRecord, RolloutStore


def test_a_record_and_the_history_round_trip(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path / "rollouts")  # as under $LLMOPS_HOME: a folder the store makes
    tmp_path = tmp_path / "rollouts"
    assert store.latest("ep") is None and store.applied("ep") == []
    record = RolloutRecord("r1", "ep", IN_PROGRESS, [10, 50, 100], 1, "m-1", "m-2", {"name": "ep"}, {"name": "ep"}, "abc")
    store.save(record)
    again = store.latest("ep")
    assert again is not None and again.status() | {"entities": []} == {
        "state": "in_progress", "step": 2, "percent": 50, "steps": [10, 50, 100], "reason": "", "endpoint": "ep",
        "champion": "m-1", "challenger": "m-2", "run_id": None, "entities": [],
    }  # fmt: skip
    store.record_applied("ep", AppliedConfig("h1", 1.0, "deploy", {"name": "ep", "config": {}}))
    store.record_applied("ep", AppliedConfig("h2", 2.0, "rollout r1: step 10%", {"name": "ep"}, "r1"))
    assert [(a.hash, a.source, a.rollout_id) for a in store.applied("ep")] == [
        ("h1", "deploy", None),
        ("h2", "rollout r1: step 10%", "r1"),
    ]
    assert sorted(p.name for p in (tmp_path / "ep").iterdir()) == ["configs.jsonl", "rollout.json"]
    assert oct((tmp_path / "ep").stat().st_mode & 0o777) == "0o700"
    # private as the rest of $LLMOPS_HOME (the token lives there): no group or other bits anywhere
    loose = {str(p): oct(p.stat().st_mode & 0o777) for p in [tmp_path, *tmp_path.rglob("*")] if p.stat().st_mode & 0o077}
    assert loose == {}
