"""Replay an endpoint's inference table: its logged requests as evaluation rows, then a diff.

The rows of an evaluation can come from an endpoint's inference table (``dataset_source:
inference_table``) instead of a bundled dataset: every logged chat request in the time window
(``replay_since``) with the wanted status (``replay_status``, 200 by default, 0 for any),
deduplicated by request content (the messages), becomes one row whose ``question`` is its last
user message and whose ``expected`` is the answer the endpoint logged then. The evaluation asks
each question again (with the system prompt the logged requests used) and scores the new
answer against the logged one; :func:`log_diff` adds the diff summary to its MLflow run
(``replay/exact_match_rate``, ``replay/token_similarity_mean``, ``replay/changed_rows``, and the
``replay_diff.json`` table: each logged answer beside the new one).

Where the table is read:

- locally, the Delta table the local workspace writes (:mod:`llmops_nb.protocol.inference_table`) with
  ``deltalake``;
- on Databricks, the Unity Catalog table ``<catalog>.<schema>.<prefix>_payload`` through the SQL
  statement execution API of databricks-sdk (``w.statement_execution.execute_statement`` on the
  SQL warehouse ``replay_warehouse_id``). The window, the status, "a chat request with a logged
  answer", the de-duplication by messages (oldest first) and ``max_rows`` (``LIMIT``) are applied
  in SQL, and the result is read with ``EXTERNAL_LINKS``, chunk by chunk: ``INLINE`` results are
  capped at 25 MiB and the statement FAILs past it (databricks-sdk ``service/sql.py``,
  ``Disposition``); each chunk's presigned link is fetched without the Databricks token ("you
  must not set an Authorization header in the download requests").
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError
from llmops_nb.protocol import inference_table as pt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.sql import StatementResponse

BUNDLED, INFERENCE_TABLE = "bundled", "inference_table"
SOURCES = (BUNDLED, INFERENCE_TABLE)
DIFF_ARTIFACT = "replay_diff.json"
_RELATIVE = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


# ---- parameters -----------------------------------------------------------------------
def check_source(value: str) -> str:
    """``bundled`` or ``inference_table``; one-line error otherwise."""
    if value not in SOURCES:
        raise ConfigError("dataset_source", value, f"expected one of {', '.join(SOURCES)}")
    return value


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """The start of the window: ``""`` (everything), an ISO date or time (UTC unless it says
    otherwise), or a duration back from now (``30m``, ``24h``, ``7d``)."""
    text = (value or "").strip()
    if not text:
        return None
    now = now or dt.datetime.now(dt.UTC)
    m = _RELATIVE.match(text)
    if m:
        return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "replay_since",
            value,
            "expected '' (all rows), an ISO date or time "
            "(2025-01-31, 2025-01-31T12:00:00Z) or a duration back from now "
            "(30m, 24h, 7d)",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def check_status(value: int) -> int:
    """An HTTP status (100-599) to keep, or 0 for every status."""
    if isinstance(value, bool) or not isinstance(value, int) or not (value == 0 or 100 <= value <= 599):
        raise ConfigError("replay_status", value, "expected an HTTP status code (100-599), or 0 for any")
    return value


# ---- reading the table ----------------------------------------------------------------
def table_of(w: WorkspaceClient, endpoint: str) -> tuple[str, str]:
    """``(kind, full name)`` of the endpoint's enabled inference table (the AI gateway's first)."""
    from databricks.sdk.errors import NotFound

    try:
        found = w.serving_endpoints.get(endpoint).as_dict()
    except NotFound:
        raise ConfigError("replay_endpoint", endpoint, "no such endpoint on this workspace") from None
    tables = pt.enabled_tables(endpoint, found)
    if not tables:
        raise ConfigError(
            "replay_endpoint",
            endpoint,
            "this endpoint has no enabled inference table (ai_gateway.inference_table_config.enabled)",
        )
    return tables[0]


def read_local(home: Path, kind: str, full_name: str) -> list[dict[str, Any]]:
    """The logged invocations of a local inference table, as :func:`record` dicts."""
    path = pt.local_path(home, full_name)
    if not (path / "_delta_log").is_dir():
        return []  # enabled, but nothing logged yet
    from deltalake import DeltaTable

    time_col = "request_time" if kind == pt.GATEWAY else "timestamp_ms"
    columns = ["databricks_request_id", time_col, "status_code", "request", "response"]
    table = DeltaTable(str(path)).to_pyarrow_table(columns=columns)
    return [record(r, kind) for r in table.to_pylist()]


def read_databricks(
    w: WorkspaceClient,
    warehouse_id: str,
    kind: str,
    full_name: str,
    since: dt.datetime | None,
    status: int,
    wait_seconds: float = 600,
    *,
    max_rows: int | None = None,
) -> list[dict[str, Any]]:
    """The logged invocations of a Unity Catalog inference table, filtered, de-duplicated and
    limited in SQL, through the statement execution API (a SQL warehouse: ``warehouse_id``),
    its result read from the chunks' external links."""
    from llmops_nb.evaluation.statements import run_statement

    statement, params = replay_sql(kind, full_name, since, status, max_rows)
    resp, chunks = run_statement(
        w,
        warehouse_id,
        statement,
        params,
        field="replay_warehouse_id",
        what=f"the query of {full_name}",
        wait_seconds=wait_seconds,
    )
    return parse_statement(resp, kind, chunks)


def replay_sql(
    kind: str, full_name: str, since: dt.datetime | None, status: int, max_rows: int | None = None
) -> tuple[str, list[dict[str, str]]]:
    """The SELECT of the logged chat invocations to replay and its named parameters: in the window,
    with the status, with messages and a logged answer, the oldest of each distinct messages, at
    most ``max_rows`` (values are never formatted into the text but ``max_rows``, checked to be an
    integer; the table name is checked and quoted)."""
    parts = full_name.split(".")
    pt.local_path(Path("/"), full_name)  # checks catalog.schema.table
    table = ".".join(f"`{p}`" for p in parts)
    time_col = "request_time" if kind == pt.GATEWAY else "timestamp_ms"
    # get_json_object: Databricks SQL's JSON path function (also in the local workspace's SQL)
    where = [
        "get_json_object(request, '$.messages') IS NOT NULL",
        "get_json_object(response, '$.choices[0].message.content') IS NOT NULL",
    ]
    params = []
    if since is not None:
        if kind == pt.GATEWAY:
            where.append("request_time >= :since")
            params.append({"name": "since", "value": since.isoformat(), "type": "TIMESTAMP"})
        else:
            where.append("timestamp_ms >= :since_ms")
            params.append({"name": "since_ms", "value": str(int(since.timestamp() * 1000)), "type": "BIGINT"})
    if status:
        where.append("status_code = :status")
        params.append({"name": "status", "value": str(status), "type": "INT"})
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ConfigError("max_rows", max_rows, "expected an integer >= 1")
    columns = f"databricks_request_id, {time_col}, status_code, request, response"
    sql = (
        f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY "
        f"get_json_object(request, '$.messages') ORDER BY {time_col}, databricks_request_id) AS replay_n "
        f"FROM {table} WHERE {' AND '.join(where)}) AS logged WHERE replay_n = 1 ORDER BY {time_col}"
        + (f" LIMIT {max_rows}" if max_rows else "")
    )
    return sql, params


def parse_statement(
    resp: StatementResponse, kind: str, more_chunks: Sequence[Sequence[Sequence[str | None]]] | None = None
) -> list[dict[str, Any]]:
    """:func:`record` dicts of a statement's JSON_ARRAY result (every value a string or null),
    the first chunk inline in ``resp`` and the ``more_chunks`` fetched after it."""
    from llmops_nb.evaluation.statements import columns_and_rows, failure

    why = failure(resp)
    if why is not None:
        state, _, error = why.partition(": ")
        raise ConfigError("replay_warehouse_id", state, f"the query of the inference table did not succeed: {error}"[:300])
    names, rows = columns_and_rows(resp, more_chunks or [])
    return [record(dict(zip(names, values)), kind) for values in rows]


def record(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    """One logged invocation: ``request_id``, ``time`` (aware UTC), ``status``, ``request`` and
    ``response`` (JSON text or None), from a table row (typed, or strings from SQL)."""
    when = raw.get("request_time") if kind == pt.GATEWAY else raw.get("timestamp_ms")
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when.replace(" ", "T")) if kind == pt.GATEWAY else int(when)
    if isinstance(when, (int, float)):
        when = dt.datetime.fromtimestamp(when / 1000, dt.UTC)
    if isinstance(when, dt.datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    status = raw.get("status_code")
    return {
        "request_id": raw.get("databricks_request_id"),
        "time": when,
        "status": int(status) if status is not None else None,
        "request": raw.get("request"),
        "response": raw.get("response"),
    }


# ---- records -> rows ------------------------------------------------------------------
@dataclass
class ReplaySet:
    """The rows to replay, the system prompt their requests used, and what was left out."""

    rows: list[dict[str, Any]]
    system: str | None
    table: str
    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        left = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n) or "none"
        return f"replay of {self.table}: {len(self.rows)} rows from {self.read} logged invocations (left out: {left})"


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def answer_text(response: Any) -> str:
    """The answer of a logged chat response (``choices[0].message.content``), or ``""``."""
    try:
        data = json.loads(response) if isinstance(response, str) else response
        return _text(data["choices"][0]["message"]["content"]).strip()
    except (ValueError, TypeError, KeyError, IndexError):
        return ""


def to_rows(records: list[dict[str, Any]], *, table: str, since: dt.datetime | None = None, status: int = 200) -> ReplaySet:
    """Filter (``since``, ``status``), deduplicate by request content and turn the logged chat
    invocations into dataset rows (oldest first); what is left out is counted by reason."""
    skipped: Counter[str] = Counter()
    picked: dict[str, tuple[dict, str | None]] = {}
    for rec in sorted(records, key=lambda r: r["time"] or dt.datetime.min.replace(tzinfo=dt.UTC)):
        if since is not None and (rec["time"] is None or rec["time"] < since):
            skipped["before replay_since"] += 1
            continue
        if status and rec["status"] != status:
            skipped[f"status not {status}"] += 1
            continue
        try:
            messages = json.loads(rec["request"] or "")["messages"]
            users = [m for m in messages if m.get("role") == "user"]
            question = _text(users[-1].get("content")).strip()
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            skipped["not a chat request"] += 1
            continue
        expected = answer_text(rec["response"])
        if not question or not expected:
            skipped["no question or no logged answer"] += 1
            continue
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key in picked:
            skipped["duplicate request"] += 1
            continue
        system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system") or None
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        picked[key] = ({"id": f"r-{digest}", "question": question, "expected": expected, "aliases": []}, system)
    systems = Counter(s for _, s in picked.values())
    system = systems.most_common(1)[0][0] if systems else None
    rows = [row for row, s in picked.values() if s == system]
    skipped["another system prompt"] += len(picked) - len(rows)
    return ReplaySet(rows, system, table, read=len(records), skipped=dict(skipped))


def load_replay(
    w: WorkspaceClient,
    endpoint: str,
    *,
    home: Path | None,
    warehouse_id: str = "",
    since: str = "",
    status: int = 200,
    max_rows: int | None = None,
) -> ReplaySet:
    """The replay rows of ``endpoint``'s inference table: locally (``home`` set) from its Delta
    table, else from Unity Catalog through the SQL warehouse ``warehouse_id``."""
    start, status = parse_since(since), check_status(status)
    kind, name = table_of(w, endpoint)
    if home is not None:
        records = read_local(home, kind, name)
    else:
        records = read_databricks(w, warehouse_id, kind, name, start, status, max_rows=max_rows)
    found = to_rows(records, table=name, since=start, status=status)
    if not found.rows:
        raise ConfigError("dataset_source", INFERENCE_TABLE, f"nothing to replay: {found.summary()}")
    if max_rows:
        found.rows = found.rows[:max_rows]
    return found


# ---- the diff -------------------------------------------------------------------------
def token_similarity(a: str, b: str) -> float:
    """How alike two answers are, word by word (difflib's ratio over whitespace tokens, 0..1)."""
    x, y = str(a or "").split(), str(b or "").split()
    if not x and not y:
        return 1.0
    return difflib.SequenceMatcher(None, x, y, autojunk=False).ratio()


def diff_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per row: the question, the logged answer beside the new one, same or not, similarity."""
    import pandas as pd

    rows = [
        {
            "id": r["id"],
            "question": r["question"],
            "logged_answer": r["expected"],
            "new_answer": r["answer"],
            "same": str(r["answer"]).strip() == str(r["expected"]).strip(),
            "token_similarity": token_similarity(r["expected"], r["answer"]),
            "error": r["error"],
        }
        for _, r in table.iterrows()
    ]
    return pd.DataFrame(rows, columns=["id", "question", "logged_answer", "new_answer", "same", "token_similarity", "error"])


def diff_metrics(diff: pd.DataFrame) -> dict[str, float]:
    """The diff summary: rows, exact-match rate, mean token similarity, rows that changed."""
    n = len(diff)
    same = int(diff["same"].sum()) if n else 0
    return {
        "replay/rows": float(n),
        "replay/exact_match_rate": same / n if n else float("nan"),
        "replay/token_similarity_mean": float(diff["token_similarity"].mean()) if n else float("nan"),
        "replay/changed_rows": float(n - same),
    }


def log_diff(run_id: str, table: pd.DataFrame, replay: ReplaySet, *, tracking_uri: str) -> dict[str, float]:
    """Add the diff summary (metrics, params and the ``replay_diff.json`` table) to the run."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    diff = diff_table(table)
    metrics = diff_metrics(diff)
    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        params=[
            Param("dataset_source", INFERENCE_TABLE),
            Param("replay_table", replay.table),
            Param("replay_logged_invocations", str(replay.read)),
        ],
    )
    client.log_table(run_id, data=diff, artifact_file=DIFF_ARTIFACT)
    return metrics
