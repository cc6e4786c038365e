"""Inference tables on the local workspace: every request and response of an endpoint that has
``ai_gateway.inference_table_config.enabled`` (or the legacy ``config.auto_capture_config``)
becomes one row of a real Delta table, with the columns Databricks' payload table has
(:mod:`llmops_nb.protocol.inference_table`), at ``$LLMOPS_HOME/tables/<catalog>/<schema>/<prefix>_payload``.
pandas (``deltalake.DeltaTable(path).to_pandas()``), DuckDB (over the table's Arrow dataset,
or ``delta_scan``) and Spark read it as they read Databricks' table.

An invocation only appends a small tuple to a queue (no JSON, no I/O on the request path); a
background thread turns what queued into one Arrow batch per table and appends it with
``deltalake.write_deltalake`` every :data:`FLUSH_SECONDS` or :data:`FLUSH_ROWS` rows, and at
exit. Rows land about a second after their answer (Databricks: within an hour).

Secrets never reach the table: requests are the JSON bodies callers sent (a key of an external
model lives in the entity config and the outgoing header, never in a body), and any field whose
name says it holds a key (``*api_key*``, ``authorization``, ``*_plaintext``, ``*secret*``) is
written ``"***"``. As on Databricks, a request or response over 10 MiB is not logged: its
column is null and ``logging_error_codes`` says ``MAX_REQUEST_SIZE_EXCEEDED`` /
``MAX_RESPONSE_SIZE_EXCEEDED``. A write that fails is printed once per table on stderr.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import hashlib
import json
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from llmops_nb.protocol import inference_table as pt

FLUSH_SECONDS = 1.0
FLUSH_ROWS = 512
#: payloads larger than this are not logged (docs.databricks.com ai-gateway "Payloads larger
#: than 10 MiB are not logged")
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MASK = "***"
_SECRET_PARTS = ("api_key", "authorization", "secret", "_plaintext", "password")
#: a JSON key naming one of _SECRET_PARTS (the fast check before :func:`scrub`)
_SECRET_KEY = re.compile(r'"[^"\\]*(?:' + "|".join(_SECRET_PARTS) + r')[^"\\]*"\s*:', re.IGNORECASE)


def scrub(value: Any) -> Any:
    """``value`` with every field whose name says it holds a credential replaced by ``***``."""
    if isinstance(value, dict):
        return {k: MASK if _is_secret_name(k) and v not in (None, "") else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _is_secret_name(key: Any) -> bool:
    k = str(key).lower()
    return any(part in k for part in _SECRET_PARTS)


def entity_facts(rec: dict, entity: str | None) -> dict:
    """What a row says of the entity that answered: a stable 32-hex ``served_entity_id``
    (Databricks' ids look alike; made of the endpoint id, the entity name and what it serves,
    never its credentials) and the model name and version of the legacy ``request_metadata``."""
    if entity is None:
        return {"id": None, "model_name": None, "model_version": None}
    key = (rec.get("id"), entity, (rec.get("config") or {}).get("config_version"))
    if key not in _facts:
        if len(_facts) > 1024:
            _facts.clear()
        _facts[key] = _entity_facts(rec, entity)
    return _facts[key]


_facts: dict[tuple, dict] = {}


def served_entity_id(endpoint_id: str | None, entity: dict) -> str:
    """The ``served_entity_id`` of served entity ``entity`` (a config's entry, with its ``name``) of
    the endpoint ``endpoint_id``: the same in every inference-table row it answers and in its rows of
    ``system.serving.served_entities`` (:mod:`.system_tables`), where a reader maps it to the name."""
    ext = entity.get("external_model") or {}
    what = [endpoint_id, entity.get("name"), entity.get("entity_name"), entity.get("entity_version"), ext.get("provider"),
            ext.get("name")]  # fmt: skip
    return hashlib.md5(json.dumps(what).encode(), usedforsecurity=False).hexdigest()


def _entity_facts(rec: dict, entity: str) -> dict:
    found: dict = next((e for e in (rec.get("config") or {}).get("served_entities") or [] if e.get("name") == entity), {})
    ext = found.get("external_model") or {}
    return {
        "id": served_entity_id(rec.get("id"), {**found, "name": entity}),
        "model_name": found.get("entity_name") or ext.get("name"),
        "model_version": found.get("entity_version"),
    }


def _payload(value: Any, code: str, errors: list[str]) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if _SECRET_KEY.search(text):  # rare: mask, then serialise again
        text = json.dumps(scrub(value), separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        errors.append(code)
        return None
    return text


def build_row(kind: str, endpoint: str, item: dict) -> dict:
    """One table row of ``kind`` (payload_table.GATEWAY or LEGACY) for a queued invocation."""
    errors: list[str] = []
    request = _payload(item["request"], "MAX_REQUEST_SIZE_EXCEEDED", errors)
    response = _payload(item["response"], "MAX_RESPONSE_SIZE_EXCEEDED", errors)
    when = dt.datetime.fromtimestamp(item["ts"], dt.UTC)
    facts = item["entity"]
    common = {
        "databricks_request_id": item["request_id"],
        "client_request_id": item["client_request_id"],
        "status_code": item["status"],
        "sampling_fraction": 1.0,
        "request": request,
        "response": response,
    }
    if kind == pt.GATEWAY:
        return {
            **common,
            "request_date": when.date(),
            "request_time": when,
            "execution_duration_ms": item["duration_ms"],
            "logging_error_codes": errors,
            "served_entity_id": facts["id"],
            "requester": item["requester"],
        }
    meta = {"endpoint_name": endpoint, "model_name": facts["model_name"], "model_version": facts["model_version"]}
    return {
        **common,
        "date": when.date(),
        "timestamp_ms": int(item["ts"] * 1000),
        "execution_time_ms": item["duration_ms"],
        "request_metadata": [(k, str(v)) for k, v in meta.items() if v is not None],
    }


def arrow_schema(kind: str):
    """The Arrow schema of a table of ``kind`` (Delta types of payload_table.COLUMNS)."""
    import pyarrow as pa

    types = {
        "STRING": pa.string(),
        "DATE": pa.date32(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
        "INT": pa.int32(),
        "DOUBLE": pa.float64(),
        "BIGINT": pa.int64(),
        "ARRAY<STRING>": pa.list_(pa.string()),
        "MAP<STRING,STRING>": pa.map_(pa.string(), pa.string()),
    }
    return pa.schema([(name, types[t]) for name, t in pt.COLUMNS[kind].items()])


class PayloadWriter:
    """A queue of invocations and the thread that appends them to their Delta tables."""

    def __init__(self, home: Path, *, interval: float = FLUSH_SECONDS, batch: int = FLUSH_ROWS) -> None:
        self.home, self.interval, self.batch = Path(home), interval, batch
        self.queue: list[tuple] = []
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.closed = False
        self.failed: set[str] = set()
        self.write_lock = threading.Lock()

    def add(self, endpoint: str, tables: list[tuple[str, str]], item: dict) -> None:
        """Queue one invocation for ``tables`` (``(kind, name)``; no I/O here)."""
        with self.cond:
            self.queue.append((endpoint, tables, item))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="inference-tables", daemon=True)
                self.thread.start()
            if len(self.queue) >= self.batch:
                self.cond.notify()

    def _run(self) -> None:
        import deltalake  # noqa: F401 - imported here, off the request path, before the first batch

        while True:
            with self.cond:
                if not self.closed and len(self.queue) < self.batch:
                    self.cond.wait(self.interval)
                if self.closed and not self.queue:
                    return
            self.flush()

    def flush(self) -> int:
        """Write what is queued now; the number of rows written."""
        with self.write_lock:
            with self.cond:
                items, self.queue = self.queue, []
            if not items:
                return 0
            tables: dict[tuple[str, str], list[dict]] = {}
            for endpoint, targets, item in items:
                for kind, name in targets:
                    tables.setdefault((kind, name), []).append(build_row(kind, endpoint, item))
            for (kind, name), rows in tables.items():
                self._append(kind, name, rows)
            return sum(len(r) for r in tables.values())

    def _append(self, kind: str, name: str, rows: list[dict]) -> None:
        try:
            import pyarrow as pa
            from deltalake import write_deltalake

            path = pt.local_path(self.home, name)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_deltalake(str(path), pa.Table.from_pylist(rows, schema=arrow_schema(kind)), mode="append")
        except Exception as e:  # noqa: BLE001 - logging must never fail an invocation
            if name not in self.failed:
                self.failed.add(name)
                print(
                    f"WARNING inference table {name}: rows not written ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                    file=sys.stderr,
                    flush=True,
                )

    def close(self) -> None:
        """Flush what is queued and stop the thread."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.flush()


_writers: dict[Path, PayloadWriter] = {}
_writers_lock = threading.Lock()


def writer(home: Path) -> PayloadWriter:
    """The process's writer for the workspace at ``home`` (flushed at exit)."""
    key = Path(home)
    with _writers_lock:
        if key not in _writers:
            _writers[key] = PayloadWriter(key)
        return _writers[key]


@atexit.register
def close_all() -> None:
    """Flush every writer (the server's lifespan end and interpreter exit call it)."""
    with _writers_lock:
        writers = list(_writers.values())
    for w in writers:
        w.close()


def log_invocation(
    home: Path,
    endpoint: str,
    rec: dict,
    *,
    entity: str | None,
    status: int,
    duration_ms: float,
    request: Any,
    response: Any,
    requester: str | None,
    started: float | None = None,
) -> None:
    """Queue one finished invocation for the endpoint's enabled inference tables, if any.

    ``response`` is the answer (a streamed one assembled into its ``chat.completion``) or the
    error body; ``started`` the wall-clock time the request arrived (default: now).
    """
    tables = pt.enabled_tables(endpoint, rec)
    if not tables:
        return
    client_id = request.get("client_request_id") if isinstance(request, dict) else None
    writer(home).add(
        endpoint,
        tables,
        {
            "request_id": str(uuid.uuid4()),
            "client_request_id": client_id,
            "ts": started if started is not None else time.time() - duration_ms / 1000,
            "status": int(status),
            "duration_ms": round(duration_ms),
            "request": request,
            "response": response,
            "entity": entity_facts(rec, entity),
            "requester": requester,
        },
    )
