"""Canary rollouts reading live traffic as on Databricks: from the endpoint's AI-gateway inference
table joined to ``system.serving.served_entities``, through the SQL Statement Execution API
(issue 33), against the fake workspace with real traffic from a load generator.

The fake holds each inference-table row back ``inference_table_lag_s`` (0.5 s, over its ~1 s
flush), as Databricks' rows land late; the reader asks again for the last ``lag_s`` (2.5 s) of
rows at each read. Same fast rollout settings as ``test_canary.py``; the exact ``PUT .../config``
sequence is read from the fake's request record.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from test_canary import CHALLENGER, CHAMPION, NAME, _config_puts, _routes, _serving, fast
from test_inference_table import TABLE, endpoint

from llmops_nb.endpoints.apply import deploy
from llmops_nb.rollout.canary import Canary
from llmops_nb.rollout.inference_table import InferenceTableReader
from llmops_nb.rollout.state import PROMOTED, ROLLED_BACK, RolloutStore
from llmops_nb.testing.load import LoadGenerator

pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")


@pytest.fixture
def ws(fake_workspace):  # noqa: ANN001, ANN201
    """The fake with endpoint NAME serving version 1 alone, its rows landing 0.5 s late."""
    deploy(fake_workspace.client(), endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
    fake_workspace.set_faults(inference_table_lag_s=0.5)
    return fake_workspace


def _canary(ws, tmp_path: Path, **rollout: Any) -> Canary:  # noqa: ANN001
    lines: list[str] = []
    w = ws.client()
    canary = Canary(
        w,
        endpoint("2"),
        fast(warehouse_id="wh-1", inference_table_lag_s=2.5, **rollout),
        store=RolloutStore(tmp_path / "rollouts"),
        reader=InferenceTableReader(w, "wh-1", TABLE, lag_s=2.5),
        poll_interval=0.1,
        progress=False,
        log=lines.append,
    )
    canary.lines = lines  # type: ignore[attr-defined]
    return canary


def test_a_failing_challenger_is_rolled_back_at_the_first_step(ws, tmp_path: Path) -> None:  # noqa: ANN001
    ws.set_faults(entity_error_rate={CHALLENGER: 0.3}, seed=7)
    canary = _canary(ws, tmp_path, max_error_rate=0.05)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
        done = time.time()
        time.sleep(1.0)
    assert outcome.state == ROLLED_BACK, outcome.reason
    assert outcome.record is not None and outcome.record.step == 0
    assert re.search(r"step 1 \(10%\): (over the last 0.4 s, )?error rate above the limit: challenger ", outcome.reason)
    assert canary.lines[-1].startswith(f"rolled back {NAME} to {CHAMPION}: step 1 (10%)")  # type: ignore[attr-defined]
    # the exact config updates: the 90/10 split, then the champion alone; traffic back to 100% champion
    assert [_routes(b) for b in _config_puts(ws)] == [{CHAMPION: 90, CHALLENGER: 10}, {CHAMPION: 100}]
    assert _serving(ws) == {CHAMPION: 100}
    assert load.dropped == []
    failures = [a for a in load.answers if a.status != 200]
    assert failures and all(a.status == 500 and CHALLENGER in a.message for a in failures), failures[:3]
    later = [a for a in load.answers if a.at > done + 0.2]
    assert later and {a.entity for a in later} == {CHAMPION}
    # the figures came from the inference table: the challenger's calls named by the system table
    challenger = next(e for e in outcome.record.entities if e["role"] == "challenger")
    assert challenger["name"] == CHALLENGER and challenger["requests"] > 0 and challenger["errors"] > 0
    statements = [r for r in ws.requests() if r["path"] == "/api/2.0/sql/statements" and r["method"] == "POST"]
    assert statements and all(f"`{NAME}_payload`" in s["body"]["statement"] for s in statements)


def test_an_equal_challenger_reaches_100_percent(ws, tmp_path: Path) -> None:  # noqa: ANN001
    canary = _canary(ws, tmp_path, max_error_rate=0.25)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
    assert outcome.state == PROMOTED, outcome.reason
    assert [_routes(b) for b in _config_puts(ws)] == [
        {CHAMPION: 90, CHALLENGER: 10},
        {CHAMPION: 50, CHALLENGER: 50},
        {CHALLENGER: 100},
    ]
    assert _serving(ws) == {CHALLENGER: 100}
    assert load.dropped == [] and all(a.status == 200 for a in load.answers)
    record = RolloutStore(tmp_path / "rollouts").latest(NAME)
    assert record is not None and record.state == PROMOTED and {p["percent"] for p in record.points} == {10, 50}
    advanced = [p for p in record.points if p["action"] == "advance"]
    assert [p["percent"] for p in advanced] == [10, 50]
    assert all(p["entities"][CHALLENGER]["requests"] >= 15 for p in advanced)  # min_requests, read from the table


def test_traffic_that_cannot_be_read_mid_step_rolls_the_step_back(ws, tmp_path: Path) -> None:  # noqa: ANN001
    """The system table gone while step 1 waits (as a revoked grant): the next read fails, the
    champion takes the traffic back, and the reason says why."""
    import shutil
    import threading

    from llmops_nb.protocol import inference_table as pt

    canary = _canary(ws, tmp_path, min_requests=100_000)  # step 1 waits for traffic it never gets
    store = RolloutStore(tmp_path / "rollouts")

    def revoke() -> None:
        deadline = time.monotonic() + 60
        while (r := store.latest(NAME)) is None or not r.points:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        shutil.rmtree(pt.local_path(ws.home, pt.SERVED_ENTITIES))

    revoker = threading.Thread(target=revoke, daemon=True)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        revoker.start()
        outcome = canary.deploy()
    revoker.join(timeout=10)
    assert outcome.state == ROLLED_BACK
    assert re.search(
        rf"^rolled back {NAME} to {CHAMPION}: step 1 \(10%\): live traffic not readable: the traffic query of {TABLE} on SQL warehouse wh-1 did not succeed "
        r"\(FAILED: \[TABLE_OR_VIEW_NOT_FOUND\]",
        outcome.reason,
    ), outcome.reason
    assert [_routes(b) for b in _config_puts(ws)] == [{CHAMPION: 90, CHALLENGER: 10}, {CHAMPION: 100}]
    assert _serving(ws) == {CHAMPION: 100} and load.dropped == []
