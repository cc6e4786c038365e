"""The ai_query engine (``evaluation.engine: ai_query``): the rows asked as SQL on a SQL warehouse.

Databricks' ``ai_query(endpoint, request [, returnType] [, failOnError] [, modelParameters]
[, responseFormat])`` (docs.databricks.com, sql/language-manual/functions/ai_query) invokes a serving
endpoint per row of a query, batched and retried by the warehouse. For a foundation model or an
external model endpoint "the request must be a STRING" and the value is the answer's text;
``modelParameters => named_struct('max_tokens', ..., 'temperature', ...)`` carries the generation
settings, which ai_query refuses on a custom model endpoint (error class
AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE: "AI_QUERY function does not support the
modelParameters argument for custom model endpoint"); with ``failOnError => false`` a row that fails
is a struct ``{result: null, errorMessage: ...}`` instead of failing the query. So this engine asks
foundation and external (chat) endpoints only, through their traffic split (ai_query names an
endpoint, not a served entity).

Each statement (databricks-sdk ``statement_execution``, :func:`~llmops_nb.evaluation.statements.run_statement`:
EXTERNAL_LINKS chunks) is::

    WITH eval_rows(id, request) AS (VALUES (:id_0, :request_0), (:id_1, :request_1), ...)
    SELECT id, ai_query('<endpoint>', request, modelParameters => named_struct('max_tokens',
           CAST(64 AS INT), 'temperature', CAST(0.0 AS DOUBLE)), failOnError => false) AS response
    FROM eval_rows

with the rows as named parameters (never formatted into the text), at most ``rows_per_statement``
rows and :data:`STATEMENT_BUDGET` bytes each (the API's 16 MiB). A dataset that is a Unity Catalog
table (``catalog.schema.table``) is its own source instead: ``SELECT id, :prefix || question FROM
<table>``, read first (id, question, expected) through the same API. The request is one user
message: a system prompt goes in front of the question (``<system>\\n\\n<question>``), as ai_query
has no system message for these endpoints. The answers are scored as the threads engine scores
them (:func:`~llmops_nb.evaluation.rows.table_row`); ai_query returns the text alone, so a row has
no latency, token usage or served entity (None). A resume file is honoured: rows answered by an
earlier run with the same settings are not asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError, QueryError, WorkspaceError
from llmops_nb.evaluation.ai_query_sql import (
    ENGINE,
    FIELD,
    STATEMENT_BUDGET,
    ai_query_call,
    batches,
    check_endpoint,
    parse_response,
    prompt,
    read_table_rows,
    table_statement,
    values_statement,
)
from llmops_nb.evaluation.asking import Asked
from llmops_nb.evaluation.resume import ResumeFile, read_saved, resume_key
from llmops_nb.evaluation.statements import columns_and_rows, failure, run_statement

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.chat.ratecontrol import AimdLimiter
    from llmops_nb.config.project import AiQueryConfig


def answered_row(row: dict[str, Any], answer: str | None, error: str | None, endpoint: str) -> dict[str, Any]:
    """The result-table row of one answer: :func:`~llmops_nb.evaluation.rows.table_row` (the same
    scores), with no latency, tokens or served entity (ai_query returns the text alone)."""
    from llmops_nb.chat.types import ChatResult
    from llmops_nb.evaluation.rows import table_row

    if answer is None:
        return table_row(row, QueryError(f"endpoint {endpoint} (ai_query): {error}"))
    entry = table_row(row, ChatResult(answer, 0, 0, 0, 0.0, None, None))
    entry.update(latency_ms=None, prompt_tokens=None, completion_tokens=None, tokens_per_second=None, served_entity=None)
    return entry


@dataclass
class AiQueryEngine:
    """``evaluation.engine: ai_query``: :meth:`stream_rows` has :func:`~llmops_nb.evaluation.asking.stream_rows`'
    signature, so :func:`~llmops_nb.evaluation.orchestrate.evaluate_endpoint` does the same bookkeeping."""

    warehouse_id: str
    rows_per_statement: int = 1000
    wait_seconds: float = 1800
    table: str | None = None  # the dataset is this Unity Catalog table: the statement's source
    table_limit: int | None = None
    budget: int = STATEMENT_BUDGET
    name: str = ENGINE
    statements: int = 0  # run by the last stream_rows

    def __post_init__(self) -> None:
        if not self.warehouse_id:
            raise ConfigError(FIELD, self.warehouse_id, "engine ai_query runs its statements on a SQL warehouse: give its id")
        if (
            isinstance(self.rows_per_statement, bool)
            or not isinstance(self.rows_per_statement, int)
            or self.rows_per_statement < 1
        ):
            raise ConfigError("evaluation.ai_query.rows_per_statement", self.rows_per_statement, "an integer >= 1")

    def stream_rows(
        self,
        w: WorkspaceClient,
        endpoint: str,
        rows: Iterable[dict[str, Any]],
        on_row: Callable[[int, dict[str, Any]], None],
        *,
        concurrency: int,
        max_tokens: int,
        temperature: float,
        system: str | None,
        progress: bool,
        resume_path: Path | None,
        check: Callable[[int, dict[str, Any]], None] | None = None,
        limiter: AimdLimiter | None = None,
        served_entity: str | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Asked:
        """Ask the rows (not answered in the resume file) in ai_query statements; ``on_row`` for every row."""
        from tqdm.auto import tqdm

        if served_entity:
            raise ConfigError("served_entity", served_entity, "engine ai_query asks an endpoint through its traffic split")
        if json_schema is not None:
            raise ConfigError("json_schema", "(set)", "not built for engine ai_query; use engine threads or spark")
        listed = list(rows)
        for position, row in enumerate(listed):
            if check is not None:
                check(position, row)
        check_endpoint(w, endpoint)  # before anything is asked
        key = {**resume_key(endpoint, max_tokens, temperature, system), "engine": ENGINE}
        saved = read_saved(Path(resume_path), key).answers if resume_path else {}
        sink = ResumeFile(resume_path, key)
        asked = Asked(rows=len(listed))
        positions = {row["id"]: (k, row) for k, row in enumerate(listed)}
        todo: list[tuple[str, str]] = []
        for k, row in enumerate(listed):
            old = saved.get(row["id"])
            if old is not None and old.get("question") == row["question"]:
                asked.resumed += 1
                on_row(k, old)
            else:
                todo.append((row["id"], prompt(row["question"], system)))
        call = ai_query_call(endpoint, max_tokens, temperature)
        if self.table:
            work = [table_statement(call, self.table, system, self.table_limit)] if todo else []
        else:
            work = [values_statement(call, batch) for batch in batches(todo, self.rows_per_statement, self.budget)]
        wanted = {row_id for row_id, _ in todo}
        self.statements = 0
        try:
            with tqdm(total=len(todo), desc=f"querying {endpoint} with ai_query", disable=not progress) as bar:
                for n, (statement, params) in enumerate(work, start=1):
                    what = f"ai_query of {endpoint} (statement {n} of {len(work)})"
                    resp, chunks = run_statement(
                        w, self.warehouse_id, statement, params, field=FIELD, what=what, wait_seconds=self.wait_seconds
                    )
                    self.statements += 1
                    why = failure(resp)
                    if why is not None:
                        raise WorkspaceError(f"{what} did not succeed: {why}".splitlines()[0][:400])
                    names, result = columns_and_rows(resp, chunks)
                    for values in result:
                        cell = dict(zip(names, values, strict=False))
                        row_id = str(cell.get("id"))
                        if row_id not in wanted:
                            continue
                        wanted.discard(row_id)
                        k, row = positions[row_id]
                        entry = answered_row(row, *parse_response(cell.get("response")), endpoint)
                        sink.note({"row": entry} if entry["error"] is None else {"failed": row_id})
                        asked.queried += 1
                        on_row(k, entry)
                        bar.update(1)
        finally:
            sink.close()
        if wanted:
            raise WorkspaceError(
                f"ai_query of {endpoint}: no result for {len(wanted)} of the rows asked (e.g. {sorted(wanted)[0]})"
            )
        return asked

    def load_rows(self, w: WorkspaceClient, table: str, max_rows: int | None = None) -> list[dict[str, Any]]:
        """The rows of the Unity Catalog table ``table`` (:func:`~llmops_nb.evaluation.ai_query_sql.read_table_rows`);
        the statements then take the table as their source."""
        rows = read_table_rows(w, self.warehouse_id, table, max_rows)
        self.table, self.table_limit = table, max_rows
        return rows

    def run_params(self, resume_path: Path | None) -> dict[str, str]:
        """The run params of this engine: its name, the warehouse, what the statements read."""
        return {"engine": self.name, "ai_query_warehouse_id": self.warehouse_id, "ai_query_source": self.table or "inline VALUES"}

    def forget(self, resume_path: Path) -> None:
        """Nothing to forget: the answers are in the resume file (the step removes it when not resuming)."""


def engine_for(config: AiQueryConfig) -> AiQueryEngine:
    """The engine of ``evaluation.ai_query`` (its warehouse checked)."""
    return AiQueryEngine(
        warehouse_id=config.warehouse_id or "", rows_per_statement=config.rows_per_statement, wait_seconds=config.wait_seconds
    )
