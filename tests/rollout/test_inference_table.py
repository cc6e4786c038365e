"""The rollout's Databricks traffic reader against the fake workspace (issue 33).

Real traffic from a load generator lands in the fake's AI-gateway inference table (a Delta table
with Databricks' columns) and, for each applied config, in ``system.serving.served_entities``;
the reader joins them through the SQL Statement Execution API of the real databricks-sdk. The
fake's ``inference_table_lag_s`` fault holds each row back as Databricks' late rows are.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from test_canary import CHALLENGER, CHAMPION, MODEL, NAME

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.errors import ConfigError
from llmops_nb.protocol import inference_table as pt
from llmops_nb.rollout.canary import step_config
from llmops_nb.rollout.inference_table import InferenceTableReader, table_for, to_call, traffic_sql
from llmops_nb.testing.load import LoadGenerator

pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")

TABLE = f"main.rollout.{NAME}_payload"


def endpoint(version: str) -> EndpointConfig:
    """Endpoint NAME serving ``version``, logging to the AI-gateway inference table TABLE."""
    return EndpointConfig.model_validate(
        {
            "name": NAME,
            "served_entities": [{"entity_name": MODEL, "entity_version": version, "workload_size": "Small"}],
            "ai_gateway": {"inference_table_config": {"catalog_name": "main", "schema_name": "rollout", "enabled": True}},
        }
    )


def _statements(ws) -> list[dict]:  # noqa: ANN001
    return [r["body"] for r in ws.requests() if r["method"] == "POST" and r["path"] == "/api/2.0/sql/statements"]


def test_the_table_is_the_configs_and_the_sql_keeps_values_out_of_its_text() -> None:
    assert table_for(endpoint("1")) == TABLE
    assert table_for(EndpointConfig.model_validate({"name": NAME, "served_entities": [{"entity_name": MODEL}]})) is None
    sql, params = traffic_sql(TABLE, NAME, 1767225600.0)
    assert f"FROM `main`.`rollout`.`{NAME}_payload` AS p" in sql and "`system`.`serving`.`served_entities`" in sql
    assert NAME not in sql.replace(f"`{NAME}_payload`", "") and "2026" not in sql
    assert params == [
        {"name": "endpoint", "value": NAME, "type": "STRING"},
        {"name": "since_date", "value": "2026-01-01", "type": "DATE"},
        {"name": "since", "value": "2026-01-01T00:00:00+00:00", "type": "TIMESTAMP"},
    ]
    with pytest.raises(ValueError, match="catalog.schema.table"):
        traffic_sql("main.x`; DROP TABLE t; --.y", NAME, 0.0)
    row = {"request_time": "2026-01-01 00:00:01.5", "status_code": "503", "execution_duration_ms": "12",
           "served_entity_id": "abc", "served_entity_name": None}  # fmt: skip
    call = to_call(row)
    assert (call.at, call.entity, call.status, call.latency_ms, call.failed) == (
        1767225601.5,
        "served_entity_id:abc",
        503,
        12.0,
        True,
    )


def test_each_call_is_named_by_the_system_table_and_a_late_row_is_counted_once(fake_workspace) -> None:  # noqa: ANN001
    ws = fake_workspace
    w = ws.client()
    champion = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small", "name": CHAMPION}
    deploy(w, endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
    deploy(w, step_config(endpoint("2"), champion, 50), timeout=60, poll_interval=0.1, progress=False)
    ws.set_faults(inference_table_lag_s=1.0)  # a row is seen 1 s after its request (plus the ~1 s flush)
    reader = InferenceTableReader(w, "wh-1", TABLE, lag_s=3.0)
    start = time.time()
    early: list[tuple[float, float]] = []  # (read returned at, newest request seen)
    with LoadGenerator(ws.host, ws.token, NAME, threads=2, pause=0.02) as load:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            calls = reader.calls(NAME, start)
            returned = time.time()  # the fake cut the rows off at 1 s before its statement ran, before this
            if calls:
                early.append((returned, max(c.at for c in calls)))
            time.sleep(0.3)
    # nothing younger than the lag was seen. The bound is the time the read returned, not when it was
    # sent: on a loaded CI machine the statement ran 0.1+ s after it was sent (CI at 0ab2466 failed so).
    # 1 ms is the slack for the table's millisecond timestamps.
    assert early and all(newest <= returned - 1.0 + 0.001 for returned, newest in early), early[:3]
    answered = Counter(a.entity for a in load.answers)
    deadline = time.monotonic() + 30
    while Counter(c.entity for c in reader.calls(NAME, start)) != answered:  # the late rows land
        assert time.monotonic() < deadline, (Counter(c.entity for c in reader.calls(NAME, start)), answered)
        time.sleep(0.3)
    assert set(answered) == {CHAMPION, CHALLENGER}  # every call named, each counted once
    # the window is in SQL: the first read from the window's start, later ones from the last read - lag
    sent = [p["value"] for s in _statements(ws) for p in s["parameters"] if p["name"] == "since"]
    assert sent[0] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)) + sent[0][19:]
    assert sent == sorted(sent) and sent[-1] > sent[0], sent  # after lag_s (3 s) of reads, the window moves on
    # the rows were read by served_entity_id: the fake's system table has both entities of the endpoint
    from deltalake import DeltaTable

    served = DeltaTable(str(pt.local_path(ws.home, pt.SERVED_ENTITIES))).to_pyarrow_table().to_pylist()
    assert {r["served_entity_name"] for r in served if r["endpoint_name"] == NAME} == {CHAMPION, CHALLENGER}


def test_a_missing_grant_or_table_is_one_line_before_anything_changes(fake_workspace) -> None:  # noqa: ANN001
    import shutil

    ws = fake_workspace
    w = ws.client()
    deploy(w, endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
    reader = InferenceTableReader(w, "wh-1", TABLE, lag_s=3.0)
    reader.check(NAME)  # nothing logged yet: the payload table does not exist, that is no problem
    shutil.rmtree(pt.local_path(ws.home, pt.SERVED_ENTITIES))  # as a workspace without the system table's grant
    with LoadGenerator(ws.host, ws.token, NAME, threads=1, pause=0.05):
        deadline = time.monotonic() + 20
        while not (pt.local_path(ws.home, TABLE) / "_delta_log").is_dir():
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with pytest.raises(ConfigError, match=r"^rollout.warehouse_id: 'wh-1' is not allowed; the traffic query of "
                       rf"{TABLE} on SQL warehouse wh-1 did not succeed \(FAILED: \[TABLE_OR_VIEW_NOT_FOUND\].*"
                       r"system.serving.served_entities: SELECT on both is needed"):  # fmt: skip
        reader.check(NAME)


def test_the_fake_refuses_a_bad_lag(fake_workspace) -> None:  # noqa: ANN001
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as refused:
        fake_workspace.set_faults(inference_table_lag_s=-1)
    assert "faults.inference_table_lag_s: -1 is not allowed" in refused.value.read().decode()
