"""The per-row result table: one row per dataset row, its answer, scores and timing.

:func:`table_row` builds a row from a dataset row and its answer (or error);
:func:`read_table` reads the rows file the bookkeeping wrote back in dataset order;
:class:`StreamDigest` checks rows read one at a time and digests them as
:func:`llmops_nb.evaluation.datasets.dataset_digest` does a whole list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.chat.client import ChatResult
from llmops_nb.errors import ConfigError, QueryError
from llmops_nb.evaluation.datasets import check_row
from llmops_nb.evaluation.metrics import score_answer, tokens_per_second

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

TABLE_COLUMNS = (
    "id",
    "question",
    "expected",
    "answer",
    "exact_match",
    "contains_match",
    "response_length",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_second",
    "served_entity",
    "error",
)


def table_row(row: dict[str, Any], result: ChatResult | QueryError, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """One result-table row (plus ``aliases``) for a dataset row and its answer or error;
    ``schema``: the evaluation's JSON Schema, scored as ``json_schema_match``."""
    ok = result if isinstance(result, ChatResult) else None
    answer = ok.content if ok else ""
    return {
        "id": row["id"],
        "question": row["question"],
        "expected": row["expected"],
        "aliases": list(row.get("aliases", [])),
        "answer": answer,
        **score_answer(answer, row["expected"], row.get("aliases", []), schema),
        "latency_ms": ok.latency_ms if ok else None,
        "prompt_tokens": ok.prompt_tokens if ok else None,
        "completion_tokens": ok.completion_tokens if ok else None,
        "tokens_per_second": tokens_per_second(ok.completion_tokens, ok.latency_ms) if ok else None,
        "served_entity": ok.served_entity if ok else None,
        "error": None if ok else str(result),
    }


def read_table(path: Path) -> pd.DataFrame:
    """The per-row table (dataset order) from a rows file written by the bookkeeping."""
    import pandas as pd

    with path.open(encoding="utf-8") as lines:
        rows = sorted((json.loads(line) for line in lines), key=lambda r: r["position"])
    columns = list(TABLE_COLUMNS)
    if any("json_schema_match" in r for r in rows):  # scored only with evaluation.json_schema
        columns.insert(columns.index("contains_match") + 1, "json_schema_match")
    return pd.DataFrame(rows, columns=columns)


class StreamDigest:
    """:func:`llmops_nb.evaluation.datasets.dataset_digest` of rows seen one at a time (each checked)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"[")
        self._ids: set[str] = set()

    def add(self, position: int, row: dict[str, Any]) -> None:
        checked = check_row(row, f"rows[{position}]")
        if checked["id"] in self._ids:
            raise ConfigError(f"rows[{position}].id", checked["id"], "ids must be unique in a dataset")
        self._ids.add(checked["id"])
        canonical = json.dumps(checked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._hash.update(("," if len(self._ids) > 1 else "").encode() + canonical.encode("utf-8"))

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(b"]")
        return final.hexdigest()
