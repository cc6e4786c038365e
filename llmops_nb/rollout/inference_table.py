"""Live traffic on Databricks: each served entity's calls, read from the endpoint's inference table.

With ``ai_gateway.inference_table_config.enabled`` Databricks logs every invocation of the
endpoint to the Unity Catalog table ``<catalog>.<schema>.<prefix>_payload``
(:mod:`llmops_nb.protocol.inference_table`): ``request_time``, ``status_code``,
``execution_duration_ms`` and ``served_entity_id`` are what a step needs. Which entity an id is
the endpoint's GET does not say (databricks-sdk ``ServedEntityOutput`` has no id); the serving
system table ``system.serving.served_entities`` does (``served_entity_id``,
``served_entity_name``, ``endpoint_name``, one row per entity and config change, ``change_time``;
docs.databricks.com admin/system-tables). So one statement joins the two, the latest row of each
id of this endpoint, through the SQL Statement Execution API on a SQL warehouse
(:func:`llmops_nb.evaluation.statements.run_statement`, EXTERNAL_LINKS). Reading a system table
needs a grant: "Only account admins have permission to view or query the served_entities table"
until one grants it (docs, "Grant access to system tables"); :meth:`InferenceTableReader.check`
says so before anything changes.

Rows land late: "Payload logging data populates these tables less than hour after querying the
endpoint" (docs.databricks.com ai-gateway/configure-ai-gateway-endpoints). A read at time ``R``
therefore has every row requested before ``R - lag`` (``lag``: ``rollout.inference_table_lag_s``,
3600 s by default) but maybe not the later ones, so each read asks only for the rows requested
since ``max(window start, previous read - lag)`` (the window filter is in SQL) and keeps them by
``databricks_request_id``: a late row is counted once it lands, none twice. A call whose id is not
(yet) in the system table is kept under ``served_entity_id:<id>`` and is neither entity's.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmops_nb.errors import ConfigError, WorkspaceError
from llmops_nb.protocol import inference_table as pt
from llmops_nb.rollout.traffic import Call

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.endpoint import EndpointConfig

FIELD = "rollout.warehouse_id"


def table_for(cfg: EndpointConfig) -> str | None:
    """The full name of the AI-gateway inference table ``cfg`` enables, or None."""
    table = cfg.ai_gateway.inference_table_config if cfg.ai_gateway else None
    if table is None or not table.enabled:
        return None
    return pt.table_name(cfg.name, table.model_dump(exclude_none=True))


def _quoted(full_name: str) -> str:
    pt.local_path(Path("/"), full_name)  # checks catalog.schema.table (names are quoted, never values)
    return ".".join(f"`{p}`" for p in full_name.split("."))


def traffic_sql(table: str, endpoint: str, since: float) -> tuple[str, list[dict[str, str]]]:
    """The SELECT of the endpoint's calls requested at or after ``since`` (epoch seconds), each with
    its served entity's name from the system table, and its named parameters."""
    served = _quoted(pt.SERVED_ENTITIES)
    sql = (
        "SELECT p.databricks_request_id, p.request_time, p.status_code, p.execution_duration_ms, p.served_entity_id, "
        f"e.served_entity_name FROM {_quoted(table)} AS p LEFT JOIN (SELECT served_entity_id, served_entity_name, "
        "ROW_NUMBER() OVER (PARTITION BY served_entity_id ORDER BY change_time DESC) AS entity_n "
        f"FROM {served} WHERE endpoint_name = :endpoint) AS e "
        "ON p.served_entity_id = e.served_entity_id AND e.entity_n = 1 "
        # request_date (the request's UTC date) too, so a table laid out by date is read from that day on
        "WHERE p.request_date >= :since_date AND p.request_time >= :since ORDER BY p.request_time"
    )
    when = dt.datetime.fromtimestamp(since, dt.UTC)
    return sql, [
        {"name": "endpoint", "value": endpoint, "type": "STRING"},
        {"name": "since_date", "value": when.date().isoformat(), "type": "DATE"},
        {"name": "since", "value": when.isoformat(), "type": "TIMESTAMP"},
    ]


def _epoch(text: str | None) -> float:
    when = dt.datetime.fromisoformat(str(text).replace(" ", "T").replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def to_call(row: dict[str, str | None]) -> Call:
    """One row of :func:`traffic_sql`'s result (every value text) as a :class:`Call`."""
    name = row.get("served_entity_name")
    entity = name if name else f"served_entity_id:{row.get('served_entity_id')}"
    return Call(_epoch(row.get("request_time")), entity, int(row.get("status_code") or 0),
                float(row.get("execution_duration_ms") or 0.0))  # fmt: skip


@dataclass
class _Seen:
    read_at: float | None = None
    calls: dict[str, Call] = field(default_factory=dict)


class InferenceTableReader:
    """The calls of an endpoint from its inference table ``table`` through SQL warehouse
    ``warehouse_id`` (see the module docstring); ``lag_s`` how late a row may land."""

    def __init__(self, w: WorkspaceClient, warehouse_id: str, table: str, *, lag_s: float, wait_seconds: float = 300) -> None:
        self.w, self.warehouse_id, self.table = w, warehouse_id, table
        self.lag_s, self.wait_seconds = lag_s, wait_seconds
        self._seen: dict[str, _Seen] = {}

    def _rows(self, endpoint: str, since: float) -> list[dict[str, str | None]]:
        from databricks.sdk.errors import DatabricksError

        from llmops_nb.evaluation.statements import columns_and_rows, failure, run_statement

        statement, params = traffic_sql(self.table, endpoint, since)
        what = f"the traffic query of {self.table}"
        try:
            resp, chunks = run_statement(self.w, self.warehouse_id, statement, params, field=FIELD, what=what,
                                         wait_seconds=self.wait_seconds)  # fmt: skip
        except DatabricksError as exc:  # the API refused or failed (after the SDK's retries)
            first = str(exc).splitlines()[0][:240] if str(exc) else type(exc).__name__
            raise WorkspaceError(f"{what} on SQL warehouse {self.warehouse_id}: {type(exc).__name__}: {first}") from None
        why = failure(resp)
        if why is not None:
            if "TABLE_OR_VIEW_NOT_FOUND" in why and self.table.split(".")[-1] in why:
                return []  # enabled, nothing logged yet
            raise WorkspaceError(
                f"{what} on SQL warehouse {self.warehouse_id} did not succeed ({why[:240]}); the rollout reads it "
                f"joined to {pt.SERVED_ENTITIES}: SELECT on both is needed (an account admin grants the system table)"
            )
        names, found = columns_and_rows(resp, chunks)
        return [dict(zip(names, values)) for values in found]

    def calls(self, endpoint: str, since: float) -> list[Call]:
        """The calls of ``endpoint`` requested at or after ``since`` that have landed."""
        seen = self._seen.setdefault(endpoint, _Seen())
        start = since if seen.read_at is None else max(since, seen.read_at - self.lag_s)
        now = time.time()
        for row in self._rows(endpoint, start):
            seen.calls[str(row.get("databricks_request_id"))] = to_call(row)  # a late mapping replaces an early one
        seen.read_at = now
        seen.calls = {k: c for k, c in seen.calls.items() if c.at >= since}  # windows only move forward
        return sorted(seen.calls.values(), key=lambda c: c.at)

    def check(self, endpoint: str) -> None:
        """One read of nothing (rows from now on), before a rollout changes anything: a warehouse,
        table or grant that does not work is one ConfigError line."""
        try:
            self._rows(endpoint, time.time())
        except WorkspaceError as exc:
            raise ConfigError(FIELD, self.warehouse_id, str(exc)) from None

    def describe(self) -> str:
        """The line a rollout says of where it reads traffic and how late it may be."""
        return (
            f"reading live traffic from {self.table} (joined to {pt.SERVED_ENTITIES}) through SQL warehouse "
            f"{self.warehouse_id}; its rows land up to {self.lag_s:g} s after their request (Databricks: within the "
            "hour), so a step may wait that long for its calls"
        )
