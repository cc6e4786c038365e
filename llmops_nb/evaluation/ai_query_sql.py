"""The SQL side of the ai_query engine: which endpoints ai_query asks, its statements, their answers.

Below :mod:`~llmops_nb.evaluation.ai_query_engine` (which asks and scores), so the checks run before any
step (:mod:`~llmops_nb.evaluation.checks`) use it without the asking layer. The rules and sources are in
the engine's docstring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.statements import columns_and_rows, failure, run_statement

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

ENGINE = "ai_query"
FIELD = "evaluation.ai_query.warehouse_id"
#: "The maximum query text size is 16 MiB" (databricks-sdk service/sql.py, ExecuteStatementRequest.statement).
STATEMENT_LIMIT_BYTES = 16 * 1024 * 1024
#: A statement's text and parameters stay under this (the API's 16 MiB, with room for the JSON around them).
STATEMENT_BUDGET = STATEMENT_LIMIT_BYTES - 64 * 1024
_TABLE = re.compile(r"[^.`\s]+\.[^.`\s]+\.[^.`\s]+")


def _entities(view: dict[str, Any]) -> list[dict[str, Any]]:
    return list((view.get("config") or view.get("pending_config") or {}).get("served_entities") or [])


def endpoint_kind(view: dict[str, Any]) -> str:
    """``foundation``, ``external`` or ``custom``: what an endpoint (its GET view) serves, as ai_query tells them apart."""
    entities = _entities(view)
    if entities and all(e.get("external_model") for e in entities):
        return "external"
    if entities and all(e.get("foundation_model") for e in entities):
        return "foundation"
    return "custom"


def check_endpoint(w: WorkspaceClient, endpoint: str, field: str = "evaluation.engine") -> str:
    """The kind of ``endpoint`` when ai_query can ask it (foundation, external chat); else one ConfigError line."""
    from llmops_nb.endpoints.ops import get_endpoint

    view = get_endpoint(w, endpoint)
    if view is None:
        raise ConfigError(field, endpoint, "an existing serving endpoint (deploy it first, or fix the name)")
    kind = endpoint_kind(view)
    if kind == "custom":
        raise ConfigError(
            "evaluation.engine",
            ENGINE,
            f"endpoint {endpoint} serves a custom model: ai_query takes modelParameters (max_tokens, temperature) only on "
            "foundation and external model endpoints (AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE); "
            "use engine threads or spark",
        )
    # the endpoint's task (llm/v1/chat for chat models; an embeddings endpoint is llm/v1/embeddings)
    tasks = {str((e.get("external_model") or {}).get("task") or view.get("task") or "llm/v1/chat") for e in _entities(view)}
    if tasks != {"llm/v1/chat"}:
        raise ConfigError("evaluation.engine", ENGINE, f"endpoint {endpoint} serves {', '.join(sorted(tasks))}: not a chat task")
    return kind


def prompt(question: str, system: str | None) -> str:
    """The one user message ai_query sends: the system prompt in front of the question."""
    return f"{system}\n\n{question}" if system else question


def _literal(endpoint: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", endpoint):
        raise ConfigError("endpoint", endpoint, "letters, digits, '-' and '_', 1 to 63 characters")
    return f"'{endpoint}'"


def ai_query_call(endpoint: str, max_tokens: int, temperature: float) -> str:
    """``ai_query(...)`` of the ``request`` column with the generation settings, errors per row."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ConfigError("max_tokens", max_tokens, "an integer >= 1")
    settings = f"'max_tokens', CAST({max_tokens} AS INT), 'temperature', CAST({float(temperature)!r} AS DOUBLE)"
    return f"ai_query({_literal(endpoint)}, request, modelParameters => named_struct({settings}), failOnError => false)"


def values_statement(call: str, rows: list[tuple[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """The statement over ``(id, request)`` rows sent as an inline VALUES list of named parameters."""
    marks = ", ".join(f"(:id_{i}, :request_{i})" for i in range(len(rows)))
    params: list[dict[str, str]] = []
    for i, (row_id, request) in enumerate(rows):
        params += [
            {"name": f"id_{i}", "value": row_id, "type": "STRING"},
            {"name": f"request_{i}", "value": request, "type": "STRING"},
        ]
    return f"WITH eval_rows(id, request) AS (VALUES {marks}) SELECT id, {call} AS response FROM eval_rows", params


def table_statement(call: str, table: str, system: str | None, limit: int | None) -> tuple[str, list[dict[str, str]]]:
    """The statement over a Unity Catalog table's ``id`` and ``question`` (its first ``limit`` rows by id)."""
    quoted = _quoted(table)
    source = f"SELECT id, :prefix || question FROM {quoted} ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
    statement = f"WITH eval_rows(id, request) AS ({source}) SELECT id, {call} AS response FROM eval_rows"
    return statement, [{"name": "prefix", "value": prompt("", system), "type": "STRING"}]


def _quoted(table: str) -> str:
    if not _TABLE.fullmatch(table):
        raise ConfigError("evaluation.dataset", table, "a Unity Catalog table catalog.schema.table")
    return ".".join(f"`{part}`" for part in table.split("."))


def batches(rows: list[tuple[str, str]], per_statement: int, budget: int = STATEMENT_BUDGET) -> Iterator[list[tuple[str, str]]]:
    """``rows`` cut into statements of at most ``per_statement`` rows and about ``budget`` bytes of
    text and parameters each (one row over the budget is refused: it cannot be sent)."""
    batch: list[tuple[str, str]] = []
    size = 0
    for row_id, request in rows:
        cost = len(row_id.encode()) + len(request.encode()) + 96  # the marks, names and JSON around them
        if cost > budget:
            raise ConfigError("rows", row_id, f"a row of {cost} bytes does not fit a statement ({budget} bytes at most)")
        if batch and (len(batch) >= per_statement or size + cost > budget):
            yield batch
            batch, size = [], 0
        batch.append((row_id, request))
        size += cost
    if batch:
        yield batch


def parse_response(cell: str | None) -> tuple[str | None, str | None]:
    """``(answer, error message)`` of one ``failOnError => false`` cell: ``{result, errorMessage}`` as JSON text."""
    if cell is None:
        return None, "ai_query returned NULL for this row"
    try:
        struct = json.loads(cell)
    except ValueError:
        return None, f"ai_query returned {cell[:80]!r}, not a {{result, errorMessage}} struct"
    if not isinstance(struct, dict):
        return None, "ai_query returned a value that is not a {result, errorMessage} struct"
    error = struct.get("errorMessage")
    if error:  # on success errorMessage is null (an empty string is taken as none too)
        return None, str(error).splitlines()[0]
    result = struct.get("result")
    if result is None:
        return None, "ai_query returned no result and no errorMessage"
    return str(result), None


def read_table_rows(w: WorkspaceClient, warehouse_id: str, table: str, max_rows: int | None = None) -> list[dict[str, Any]]:
    """The rows of the Unity Catalog table ``table`` (id, question, expected; aliases when it has them), by id,
    read through the same Statement Execution API; the statements then take the table as their source."""
    from llmops_nb.evaluation.datasets import check_row

    statement = f"SELECT * FROM {_quoted(table)} ORDER BY id" + (f" LIMIT {int(max_rows)}" if max_rows else "")
    resp, chunks = run_statement(w, warehouse_id, statement, [], field="evaluation.dataset", what=f"the read of {table}")
    why = failure(resp)
    if why is not None:
        raise ConfigError("evaluation.dataset", table, f"a readable table with id, question and expected ({why})"[:400])
    names, values = columns_and_rows(resp, chunks)
    missing = [c for c in ("id", "question", "expected") if c not in names]
    if missing:
        raise ConfigError(
            "evaluation.dataset", table, f"a table with the columns id, question, expected (missing: {', '.join(missing)})"
        )
    rows = []
    for i, record in enumerate(dict(zip(names, v, strict=False)) for v in values):
        aliases = json.loads(str(record["aliases"])) if record.get("aliases") else []
        row = {"id": record["id"], "question": record["question"], "expected": record["expected"], "aliases": aliases}
        rows.append(check_row(row, f"{table}[{i}]"))
    return rows


def is_table(dataset: str) -> bool:
    """True when ``dataset`` names a Unity Catalog table (``catalog.schema.table``) and no file."""
    return bool(_TABLE.fullmatch(dataset)) and not Path(dataset).expanduser().exists()
