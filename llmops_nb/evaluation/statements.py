"""SQL statements on a Databricks SQL warehouse: execute, wait, read the result chunk by chunk.

One path for every reader of a Unity Catalog table through the SQL Statement Execution API of
databricks-sdk (``w.statement_execution``): the inference-table replay (:mod:`.replay`) and the
rollout's live-traffic reader (:mod:`llmops_nb.rollout.inference_table`). Statements take named
parameters (values never formatted into the text), and results are read with
``EXTERNAL_LINKS``: ``INLINE`` results are capped at 25 MiB and the statement FAILs past it
(databricks-sdk ``service/sql.py``, ``Disposition``); each chunk's presigned link is fetched
without the Databricks token ("you must not set an Authorization header in the download
requests").

A statement still PENDING or RUNNING is polled every 2 s up to ``wait_seconds``, then cancelled
(``cancel_execution``): one :class:`~llmops_nb.errors.ConfigError` line naming ``field`` (the
parameter or config field that chose the warehouse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.sql import StatementResponse

Rows = Sequence[Sequence[str | None]]


def run_statement(
    w: WorkspaceClient,
    warehouse_id: str,
    statement: str,
    params: list[dict[str, str]],
    *,
    field: str,
    what: str,
    wait_seconds: float = 600,
) -> tuple[StatementResponse, list[Rows]]:
    """Run ``statement`` (named ``params``: ``{name, value, type}``) on warehouse ``warehouse_id``;
    the final response and the chunks after the first (read from their external links).

    ``what`` names the query in messages (``"the query of main.s.t_payload"``); ``field`` the
    setting that holds the warehouse id. A statement that did not succeed is returned as it is
    (:func:`failure` says why)."""
    import time

    from databricks.sdk.service.sql import Disposition, Format, StatementParameterListItem, StatementState

    if not warehouse_id:
        raise ConfigError(field, warehouse_id, "the id of a SQL warehouse is required to read an inference table on Databricks")
    resp = w.statement_execution.execute_statement(
        statement=statement,
        warehouse_id=warehouse_id,
        wait_timeout="30s",
        parameters=[StatementParameterListItem(**p) for p in params],
        disposition=Disposition.EXTERNAL_LINKS,
        format=Format.JSON_ARRAY,
    )
    deadline = time.monotonic() + wait_seconds
    sid = resp.statement_id or ""
    while resp.status and resp.status.state in (StatementState.PENDING, StatementState.RUNNING):
        assert sid, "a statement still running has its statement_id (Statement Execution API)"
        if time.monotonic() > deadline:
            w.statement_execution.cancel_execution(sid)
            raise ConfigError(field, warehouse_id, f"{what} did not finish in {wait_seconds:.0f} s")
        time.sleep(2)
        resp = w.statement_execution.get_statement(sid)
    chunks: list[Rows] = []
    result = resp.result if resp.status and resp.status.state == StatementState.SUCCEEDED else None
    while result is not None:
        index = result.next_chunk_index
        for link in result.external_links or []:
            chunks.append(_download(link, what))
            index = link.next_chunk_index if link.next_chunk_index is not None else index
        if result.external_links:
            result.external_links = None  # read: columns_and_rows() takes its rows from the chunks
        elif result is not resp.result:
            chunks.append(result.data_array or [])
        if index is None:
            break
        assert sid, "a result with more chunks has its statement_id (Statement Execution API)"
        result = w.statement_execution.get_statement_result_chunk_n(sid, index)
    return resp, chunks


def failure(resp: StatementResponse) -> str | None:
    """Why the statement did not succeed (``STATE: message``), or None when it did."""
    from databricks.sdk.service.sql import StatementState

    state = resp.status.state if resp.status else None
    if state == StatementState.SUCCEEDED:
        return None
    error = resp.status.error.message if resp.status and resp.status.error else ""
    return f"{getattr(state, 'value', state)}: {error}"


def columns_and_rows(resp: StatementResponse, more_chunks: Sequence[Rows]) -> tuple[list[str], list[Sequence[str | None]]]:
    """The column names and the rows (every value text or None) of a succeeded JSON_ARRAY result:
    the first chunk inline in ``resp``, then ``more_chunks``."""
    schema = resp.manifest.schema if resp.manifest else None
    names = [c.name or "" for c in (schema.columns if schema else None) or []]
    found: list[Sequence[str | None]] = list((resp.result.data_array if resp.result else None) or [])
    for chunk in more_chunks:
        found.extend(chunk)
    return names, found


def _download(link: Any, what: str) -> list:
    """One chunk's rows from its presigned ``external_link``: plain HTTP, no Databricks token (the
    URL carries its own credential; ``http_headers`` are the ones it asks for)."""
    import requests

    from llmops_nb.errors import WorkspaceError

    try:
        r = requests.get(str(link.external_link), headers=dict(link.http_headers or {}), timeout=120)
    except requests.RequestException as exc:
        raise WorkspaceError(f"{what}: result chunk {link.chunk_index}: {type(exc).__name__}") from None
    if r.status_code != 200:  # the URL itself is a credential: never shown
        raise WorkspaceError(f"{what}: result chunk {link.chunk_index}: HTTP {r.status_code} from its link")
    found = r.json()
    return found if isinstance(found, list) else []
