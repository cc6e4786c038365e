"""The SQL Statement Execution API over the workspace's own tables (the inference tables it writes).

Enough of ``/api/2.0/sql/statements`` for a client to read an inference table as it would on
Databricks (databricks-sdk ``service/sql.py``, ``StatementExecutionAPI``): ``POST`` executes a
statement (named parameters, ``disposition`` INLINE or EXTERNAL_LINKS, ``format`` JSON_ARRAY),
``GET .../{statement_id}`` returns it, ``GET .../{statement_id}/result/chunks/{n}`` a chunk. The
rules the docstrings state are kept:

- INLINE results larger than 25 MiB fail the statement ("If a given statement produces a result
  set with a size larger than 25 MiB, that statement execution is aborted"): a 200 answer with
  ``status.state`` FAILED;
- EXTERNAL_LINKS results come as chunks, each a short-lived presigned URL (``external_link``, with
  ``expiration``) that must be fetched *without* an ``Authorization`` header ("you must not set
  an Authorization header in the download requests"): a download that sends one is refused, as
  cloud storage refuses a second credential;
- every value of a JSON_ARRAY row is a string or null.

The statement runs in an in-memory SQLite database holding the Delta tables it names
(``catalog`.`schema`.`table`` in backticks, read with deltalake from
:func:`llmops_nb.protocol.inference_table.local_path`), with ``get_json_object`` (Databricks SQL's
JSON path function) added; timestamps are ISO-8601 UTC strings. Chunk size and the inline limit
are fault settings (``sql_chunk_rows``, ``sql_inline_limit_bytes``), so a test reaches more than
one chunk with a few rows. ``ai_query(...)`` asks the workspace's own endpoints per row
(:mod:`llmops_nb.workspace.api.ai_query`); a statement text over 16 MiB is refused ("The maximum
query text size is 16 MiB", ``ExecuteStatementRequest.statement``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llmops_nb.protocol import inference_table as pt
from llmops_nb.workspace.api import ai_query
from llmops_nb.workspace.api.requestbody import json_object as _body
from llmops_nb.workspace.apierror import ApiError, invalid

API = "/api/2.0/sql/statements"
#: The presigned downloads: no Databricks token (the guard lets this prefix through), a signature.
PRESIGNED = "/_presigned/sql-results"
INLINE_LIMIT_BYTES = 25 * 1024 * 1024  # "larger than 25 MiB" (service/sql.py, Disposition.INLINE)
STATEMENT_LIMIT_BYTES = 16 * 1024 * 1024  # "The maximum query text size is 16 MiB" (ExecuteStatementRequest)
LINK_SECONDS = 15 * 60  # "a short expiration time (<= 15 minutes)" (ExternalLink.external_link)
_TABLE = re.compile(r"`([^`]+)`\.`([^`]+)`\.`([^`]+)`")
_PATH = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _iso(value: dt.datetime) -> str:
    """One text form for every timestamp, so SQLite compares them as Databricks compares times."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def get_json_object(text: str | None, path: str | None) -> str | None:
    """Databricks SQL's ``get_json_object(expr, path)`` for ``$.a.b[0].c`` paths: the value as text
    (a string as itself, an object or array as JSON), null when a step is missing or the text is not JSON."""
    if text is None or not path or not path.startswith("$"):
        return None
    try:
        value: Any = json.loads(text)
    except ValueError:
        return None
    rest = path[1:]
    for m in _PATH.finditer(rest):
        if m.group(1) is not None:
            if not isinstance(value, dict) or m.group(1) not in value:
                return None
            value = value[m.group(1)]
        else:
            i = int(m.group(2))
            if not isinstance(value, list) or i >= len(value):
                return None
            value = value[i]
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _param(item: Any, i: int) -> tuple[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise invalid(f"parameters[{i}].name: required, the name of a :marker in the statement")
    kind = str(item.get("type") or "STRING").upper()
    value = item.get("value")
    if value is None:
        return item["name"], None
    if not isinstance(value, str):
        raise invalid(f"parameters[{i}].value: {value!r} is not allowed; a string (typed by parameters[{i}].type)")
    try:
        if kind in ("INT", "BIGINT", "SMALLINT", "TINYINT"):
            return item["name"], int(value)
        if kind in ("DOUBLE", "FLOAT"):
            return item["name"], float(value)
        if kind == "TIMESTAMP":
            return item["name"], _iso(dt.datetime.fromisoformat(value.replace(" ", "T")))
    except ValueError:
        raise invalid(f"parameters[{i}].value: {value!r} is not a {kind}") from None
    return item["name"], value


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()  # a DATE as Databricks' JSON_ARRAY gives it: 2026-01-31
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class Statements:
    """Executed statements and their result chunks, in memory (a warehouse keeps them a while)."""

    def __init__(self, home: Path, faults: Any, secret: str) -> None:
        self.home, self.faults, self.secret = home, faults, secret
        self.done: dict[str, dict] = {}
        self.chunks: dict[str, list[list[list[str | None]]]] = {}
        self.invoker: ai_query.Invoker | None = None  # the workspace's invocation path (set by routes)

    def _setting(self, name: str, default: int) -> int:
        value = getattr(getattr(self.faults, "faults", None), name, None)
        return int(value) if value else default

    def _landed(self, rows: list[dict]) -> list[dict]:
        """The rows of an inference table seen now: with the fault ``inference_table_lag_s``, only
        those that many seconds after their ``request_time`` (Databricks: "Payload logging data
        populates these tables less than hour after querying the endpoint"), as a late row is."""
        lag = getattr(getattr(self.faults, "faults", None), "inference_table_lag_s", None)
        if not lag or not rows or not isinstance(rows[0].get("request_time"), dt.datetime):
            return rows
        cutoff = dt.datetime.fromtimestamp(time.time() - float(lag), dt.UTC)
        return [r for r in rows if r["request_time"] <= cutoff]

    def _load(self, db: sqlite3.Connection, sql: str) -> str:
        """Each backticked catalog.schema.table the statement names as a SQLite table; the statement rewritten."""
        from deltalake import DeltaTable

        for n, m in enumerate(dict.fromkeys(_TABLE.findall(sql))):
            full_name = ".".join(m)
            path = pt.local_path(self.home, full_name)
            if not (path / "_delta_log").is_dir():
                raise LookupError(
                    f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{m[0]}`.`{m[1]}`.`{m[2]}` cannot be found. SQLSTATE: 42P01"
                )
            rows = self._landed(DeltaTable(str(path)).to_pyarrow_table().to_pylist())
            columns = list(rows[0]) if rows else [f.name for f in DeltaTable(str(path)).schema().fields]
            name = f"t{n}"
            quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
            db.execute(f"CREATE TABLE {name} ({quoted})")
            marks = ", ".join("?" * len(columns))
            values = [[_cell(v) if isinstance(v, (dt.date, dict, list)) else v for v in r.values()] for r in rows]
            db.executemany(f"INSERT INTO {name} VALUES ({marks})", values)
            sql = sql.replace(f"`{m[0]}`.`{m[1]}`.`{m[2]}`", name)
        return sql

    async def execute(self, body: dict, host: str, user: str = "") -> dict:
        statement, warehouse = body.get("statement"), body.get("warehouse_id")
        if not isinstance(statement, str) or not statement.strip():
            raise invalid("statement: required, the SQL text to execute")
        if len(statement.encode("utf-8")) > STATEMENT_LIMIT_BYTES:
            raise invalid(f"statement: {len(statement.encode('utf-8'))} bytes; the maximum query text size is 16 MiB")
        if not isinstance(warehouse, str) or not warehouse:
            raise invalid("warehouse_id: required, the SQL warehouse to run the statement on")
        disposition = body.get("disposition") or "INLINE"
        if disposition not in ("INLINE", "EXTERNAL_LINKS"):
            raise invalid(f"disposition: {disposition!r} is not allowed; one of INLINE, EXTERNAL_LINKS")
        fmt = body.get("format") or "JSON_ARRAY"
        if fmt != "JSON_ARRAY":
            raise invalid(f"format: {fmt!r} is not supported by the local workspace; JSON_ARRAY")
        params = dict(_param(p, i) for i, p in enumerate(body.get("parameters") or []))
        sid = str(uuid.uuid4())
        try:
            names, rows = await self._run(statement, params, user)
        except (LookupError, sqlite3.Error, ai_query.Refused) as exc:
            return self._keep(sid, {"statement_id": sid, "status": {"state": "FAILED", "error": _error(exc)}})
        size = len(json.dumps(rows))
        limit = self._setting("sql_inline_limit_bytes", INLINE_LIMIT_BYTES)
        if disposition == "INLINE" and size > limit:
            return self._keep(
                sid,
                {
                    "statement_id": sid,
                    "status": {
                        "state": "FAILED",
                        "error": {
                            "error_code": "BAD_REQUEST",
                            "message": f"Inline byte limit exceeded: the result is {size} bytes; statements executed "
                            f"with disposition=INLINE can return at most {limit} bytes. Use disposition=EXTERNAL_LINKS.",
                        },
                    },
                },
            )
        per = max(1, self._setting("sql_chunk_rows", 10_000))
        chunks = [rows[i : i + per] for i in range(0, len(rows), per)] or [[]]
        self.chunks[sid] = chunks
        offsets = [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
        manifest = {
            "format": fmt,
            "schema": {
                "column_count": len(names),
                "columns": [
                    {"name": n, "position": i, "type_name": "STRING", "type_text": "STRING"} for i, n in enumerate(names)
                ],
            },
            "total_chunk_count": len(chunks),
            "chunks": [{"chunk_index": i, "row_offset": offsets[i], "row_count": len(c)} for i, c in enumerate(chunks)],
            "total_row_count": len(rows),
            "truncated": False,
        }
        answer = {
            "statement_id": sid,
            "status": {"state": "SUCCEEDED"},
            "manifest": manifest,
            "result": self.result(sid, 0, host, disposition),
        }
        answer["_disposition"] = disposition
        return self._keep(sid, answer)

    async def _run(self, statement: str, params: dict, user: str) -> tuple[list[str], list[list[str | None]]]:
        """The statement's column names and rows; with ai_query calls, run once to collect them, asked, run again."""
        calls: list[ai_query.Call] = []
        if ai_query.CALL.search(statement):
            if self.invoker is None:
                raise ai_query.Refused("ai_query: this workspace has no serving endpoints to ask")
            statement, calls = ai_query.rewrite(statement, self.invoker.kind)
        wanted: list[tuple[int, str]] = []  # every row's call, in the order SQLite evaluates them
        answers: dict[tuple[int, str], list[tuple]] = {}
        used: dict[tuple[int, str], int] = {}
        failed: list[ai_query.Refused] = []

        def collect(index: int, request: object) -> None:
            if request is not None:
                wanted.append((index, str(request)))

        def answer(index: int, request: object) -> str | None:
            if request is None:
                return None
            key = (index, str(request))
            outcomes, n = answers[key], used.get(key, 0)
            used[key] = n + 1  # the n-th row with this request gets the n-th answer
            try:
                return ai_query.value(calls[index], outcomes[min(n, len(outcomes) - 1)])
            except ai_query.Refused as exc:
                failed.append(exc)
                raise

        passes = [collect, answer] if calls else [answer]
        for udf in passes:
            if udf is answer and calls:
                outcomes = await ai_query.ask(self.invoker, calls, wanted, user)  # type: ignore[arg-type]
                for key, outcome in zip(wanted, outcomes, strict=True):
                    answers.setdefault(key, []).append(outcome)
            db = sqlite3.connect(":memory:")
            db.create_function("get_json_object", 2, get_json_object, deterministic=True)
            db.create_function("ai_query", 2, udf)
            try:
                cursor = db.execute(self._load(db, statement), params)
                names = [d[0] for d in cursor.description or []]
                rows = [[_cell(v) for v in row] for row in cursor.fetchall()]
            except sqlite3.Error:
                if failed:  # a row's error with failOnError true: the statement's
                    raise failed[0] from None
                raise
            finally:
                db.close()
        return names, rows

    def _keep(self, sid: str, answer: dict) -> dict:
        self.done[sid] = answer
        return {k: v for k, v in answer.items() if not k.startswith("_")}

    def statement(self, sid: str) -> dict:
        if sid not in self.done:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {sid} does not exist.")
        return {k: v for k, v in self.done[sid].items() if not k.startswith("_")}

    def result(self, sid: str, index: int, host: str, disposition: str | None = None) -> dict:
        """``ResultData`` of chunk ``index``: its rows (INLINE) or its presigned link (EXTERNAL_LINKS)."""
        chunks = self.chunks.get(sid)
        if chunks is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {sid} has no result.")
        if not 0 <= index < len(chunks):
            raise invalid(f"chunk_index: {index} is not allowed; 0 to {len(chunks) - 1}")
        disposition = disposition or self.done[sid].get("_disposition", "INLINE")
        offset = sum(len(c) for c in chunks[:index])
        more = {"next_chunk_index": index + 1, "next_chunk_internal_link": f"{API}/{sid}/result/chunks/{index + 1}"}
        more = more if index + 1 < len(chunks) else {}
        if disposition == "INLINE":
            return {
                "chunk_index": index,
                "row_offset": offset,
                "row_count": len(chunks[index]),
                "data_array": chunks[index],
                **more,
            }
        expires = int(time.time()) + LINK_SECONDS
        link = {
            "chunk_index": index,
            "row_offset": offset,
            "row_count": len(chunks[index]),
            "byte_count": len(json.dumps(chunks[index])),
            "external_link": f"{host}{PRESIGNED}/{sid}/{index}?expires={expires}&sig={self.sign(sid, index, expires)}",
            "expiration": dt.datetime.fromtimestamp(expires, dt.UTC).isoformat().replace("+00:00", "Z"),
            **more,
        }
        return {"external_links": [link]}

    def sign(self, sid: str, index: int, expires: int) -> str:
        return hmac.new(self.secret.encode(), f"{sid}/{index}/{expires}".encode(), hashlib.sha256).hexdigest()

    def download(self, sid: str, index: int, expires: int, sig: str, authorization: str | None) -> list:
        if authorization:
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                "Only one auth mechanism allowed: the presigned URL already carries its credential; "
                "send no Authorization header (Statement Execution API, EXTERNAL_LINKS)",
            )
        if not hmac.compare_digest(sig, self.sign(sid, index, expires)) or expires < time.time():
            raise ApiError(403, "PERMISSION_DENIED", "Request has expired or its signature does not match.")
        return self.chunks[sid][index]


def _error(exc: BaseException) -> dict:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = "TABLE_OR_VIEW_NOT_FOUND" if "TABLE_OR_VIEW_NOT_FOUND" in text else "BAD_REQUEST"
    return {"error_code": code, "message": text}


def routes(app: FastAPI, ctx: object) -> None:
    """Register the statement routes over ``ctx.home`` (and the presigned result downloads); ai_query
    asks through ``app.state.sql_invoker`` (:class:`~llmops_nb.workspace.api.ai_query.Invoker`)."""
    from llmops_nb.workspace.api.guard import requester

    store = Statements(ctx.home, ctx.faults, uuid.uuid4().hex)  # type: ignore[attr-defined]
    store.invoker = getattr(app.state, "sql_invoker", None)

    def host(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.post(API)
    async def execute(request: Request):
        return await store.execute(await _body(request), host(request), requester(request))

    @app.get(API + "/{sid}")
    async def get_statement(sid: str):
        return store.statement(sid)

    @app.get(API + "/{sid}/result/chunks/{index}")
    async def get_chunk(sid: str, index: int, request: Request):
        store.statement(sid)
        return store.result(sid, index, host(request))

    @app.get(PRESIGNED + "/{sid}/{index}")
    async def download(sid: str, index: int, expires: int, sig: str, request: Request):
        return JSONResponse(store.download(sid, index, expires, sig, request.headers.get("authorization")))
