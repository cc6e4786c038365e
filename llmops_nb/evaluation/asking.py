"""Ask the endpoint each dataset row once, concurrently, reusing answers a killed run saved.

:func:`stream_rows` reads rows lazily, sends each question (429s under one AIMD limiter)
and hands each table row over as it is answered; with a resume file every row is noted
when asked and when answered, so a killed run re-asks only the rows then in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.chat.client import chat_iter
from llmops_nb.chat.ratecontrol import AimdLimiter
from llmops_nb.evaluation.resume import ResumeFile, SavedAnswers, read_saved, resume_key
from llmops_nb.evaluation.rows import table_row

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

DEFAULT_SYSTEM = "Answer with a single word or number."


@dataclass
class Asked:
    """How the rows of one evaluation were answered."""

    rows: int = 0
    queried: int = 0
    resumed: int = 0
    reasked: int = 0  # rows in flight when a previous run stopped, asked again now


def stream_rows(
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
    """Ask each row (read lazily from ``rows``) once; ``on_row(position, table row)`` as each is done.

    With ``resume_path``, a row answered by an earlier run with the same settings is handed
    over without asking, and every row is written there as it is asked and as it is
    answered (flushed), so a run killed at any point re-asks only the rows then in flight.
    ``served_entity``: ask that served entity of ``endpoint`` only (not the traffic split).
    ``json_schema``: ask for structured output (OpenAI's ``response_format`` ``json_schema``) and
    score each answer against it (``json_schema_match``).
    """
    from tqdm.auto import tqdm

    target = f"{endpoint}/{served_entity}" if served_entity else endpoint
    key = resume_key(target, max_tokens, temperature, system, json_schema)
    saved = read_saved(Path(resume_path), key) if resume_path else SavedAnswers({}, set())
    sink = ResumeFile(resume_path, key)
    asked = Asked()
    in_flight: dict[int, tuple[int, dict[str, Any]]] = {}

    def questions() -> Iterator[str]:
        for position, row in enumerate(rows):
            if check is not None:
                check(position, row)
            asked.rows += 1
            old = saved.answers.pop(row["id"], None)
            if old is not None and old.get("question") == row["question"]:
                asked.resumed += 1
                on_row(position, old)
                continue
            asked.reasked += row["id"] in saved.in_flight
            in_flight[asked.queried] = (position, row)
            asked.queried += 1
            sink.note({"asking": row["id"]})
            yield row["question"]

    total = len(rows) if isinstance(rows, Sized) else None
    try:
        with tqdm(total=total, desc=f"querying {target}", disable=not progress) as bar:
            for k, result in chat_iter(
                w,
                endpoint,
                questions(),
                concurrency=concurrency,
                limiter=limiter,
                max_tokens=max_tokens,
                temperature=temperature,
                system=system,
                **({"served_entity": served_entity} if served_entity else {}),
                **({"response_format": response_format(json_schema)} if json_schema is not None else {}),
            ):
                position, row = in_flight.pop(k)
                entry = table_row(row, result, json_schema)
                sink.note({"row": entry} if entry["error"] is None else {"failed": row["id"]})
                on_row(position, entry)
                bar.update(asked.resumed + asked.queried - len(in_flight) - bar.n)  # resumed + answered
    finally:
        sink.close()
    return asked


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's structured-output request for ``schema`` (what Databricks' chat endpoints take)."""
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def query_rows(
    w: WorkspaceClient, endpoint: str, rows: list[dict[str, Any]], **settings: Any
) -> tuple[list[dict[str, Any]], int]:
    """(table rows in dataset order, how many were queried now): each missing row asked once.

    ``settings``: the keyword arguments of :func:`stream_rows` (``concurrency``,
    ``max_tokens``, ``temperature``, ``system``, ``progress``, ``resume_path``).
    """
    done: list[dict[str, Any] | None] = [None] * len(rows)
    asked = stream_rows(w, endpoint, rows, done.__setitem__, **settings)
    return done, asked.queried  # type: ignore[return-value]
