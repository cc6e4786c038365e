"""Conformance: the SQL Statement Execution API as the replay, the ai_query engine and the
Databricks rollout reader use it (issue 31 item 2; databricks-sdk ``service/sql.py``):

- ``EXTERNAL_LINKS`` results come in chunks, each a presigned ``external_link`` that is fetched
  without the Databricks token ("you must not set an Authorization header in the download
  requests", ``ExternalLink.external_link``), and every JSON_ARRAY value is a string;
- ``INLINE`` results above the cap FAIL the statement ("If a given statement produces a result set
  with a size larger than 25 MiB, that statement execution is aborted", ``Disposition.INLINE``).

On live, the warehouse is the user's: ``LLMOPS_LIVE_WAREHOUSE_ID``.
"""

from __future__ import annotations

import os

import pytest
import requests
from conformance_targets import FAKE, LIVE, Target

from llmops_nb.evaluation.statements import columns_and_rows, failure, run_statement

LIVE_WAREHOUSE = "LLMOPS_LIVE_WAREHOUSE_ID"
ROWS = 25


def _warehouse(target: Target) -> str:
    if target.kind != LIVE:
        return "conformance-warehouse"  # the fake and the local workspace run statements themselves
    if not os.environ.get(LIVE_WAREHOUSE):
        pytest.skip(f"live Databricks target: set {LIVE_WAREHOUSE} to a SQL warehouse id to run the statement scenarios")
    return os.environ[LIVE_WAREHOUSE]


def _values(n: int) -> str:
    """``WITH t(id, label) AS (VALUES ...)``: one statement both SQLite and Databricks SQL run."""
    rows = ", ".join(f"({i}, 'row-{i:03d}')" for i in range(n))
    return f"WITH t(id, label) AS (VALUES {rows}) SELECT id, label FROM t ORDER BY id"


def test_external_links_come_in_chunks_fetched_without_the_token(target: Target, names) -> None:
    warehouse = _warehouse(target)
    if target.fake is not None:
        target.fake.set_faults(sql_chunk_rows=10)  # 25 rows: 3 chunks (a real warehouse chunks by size)
    w = target.client()
    resp, more = run_statement(w, warehouse, _values(ROWS), [], field="warehouse_id", what="the conformance query")
    assert failure(resp) is None, failure(resp)
    columns, rows = columns_and_rows(resp, more)
    assert columns == ["id", "label"]
    assert [tuple(r) for r in rows] == [(str(i), f"row-{i:03d}") for i in range(ROWS)]  # every value a string
    if target.fake is not None:
        assert len(more) == 3 and resp.manifest is not None and resp.manifest.total_chunk_count == 3  # each chunk a link

    # the link itself is the credential: sending the workspace token with it is refused
    again = w.statement_execution.execute_statement(
        statement=_values(3), warehouse_id=warehouse, wait_timeout="30s", disposition=_external(), format=_json()
    )
    links = again.result.external_links if again.result else None
    assert links, again
    link = links[0]
    plain = requests.get(str(link.external_link), headers=dict(link.http_headers or {}), timeout=60)
    assert plain.status_code == 200, plain.status_code
    assert [list(r) for r in plain.json()] == [["0", "row-000"], ["1", "row-001"], ["2", "row-002"]]
    with_token = requests.get(
        str(link.external_link), headers={**dict(link.http_headers or {}), **target.sdk_config().authenticate()}, timeout=60
    )
    assert with_token.status_code >= 400, with_token.status_code


@pytest.mark.targets(
    FAKE,
    reason="reaching the 25 MiB INLINE cap takes a fault setting on the fake; on the local and live workspaces it "
    "would take a 25 MiB result",
)
def test_an_inline_result_over_the_cap_fails_the_statement(target: Target, names) -> None:
    from databricks.sdk.service.sql import Disposition, StatementState

    target.fake.set_faults(sql_inline_limit_bytes=200)
    w = target.client()
    small = w.statement_execution.execute_statement(
        statement=_values(2), warehouse_id="w", wait_timeout="30s", disposition=Disposition.INLINE, format=_json()
    )
    assert small.status is not None and small.status.state == StatementState.SUCCEEDED
    big = w.statement_execution.execute_statement(
        statement=_values(ROWS), warehouse_id="w", wait_timeout="30s", disposition=Disposition.INLINE, format=_json()
    )
    assert big.status is not None and big.status.state == StatementState.FAILED  # a 200 answer, the statement FAILED
    assert big.status.error is not None and "EXTERNAL_LINKS" in (big.status.error.message or ""), big.status.error
    # EXTERNAL_LINKS reads the same rows whatever their size
    resp, more = run_statement(w, "w", _values(ROWS), [], field="warehouse_id", what="the conformance query")
    assert len(columns_and_rows(resp, more)[1]) == ROWS


def _external():
    from databricks.sdk.service.sql import Disposition

    return Disposition.EXTERNAL_LINKS


def _json():
    from databricks.sdk.service.sql import Format

    return Format.JSON_ARRAY
