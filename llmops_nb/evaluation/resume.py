"""Saved answers: the resume file that lets a killed evaluation re-ask only the rows in flight.

Each line is JSON with the evaluation's settings (``key``) and one of ``asking`` (an id
sent), ``row`` (an answered table row) or ``failed`` (an id that failed). :class:`ResumeFile`
writes them, flushed, as rows are asked and answered; :func:`read_saved` reads them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def resume_key(
    endpoint: str, max_tokens: int, temperature: float, system: str | None, json_schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The settings a saved answer must share to be reused (a JSON schema only when one is asked for)."""
    key: dict[str, Any] = {"endpoint": endpoint, "max_tokens": max_tokens, "temperature": temperature, "system": system}
    if json_schema is not None:
        key["json_schema"] = json_schema
    return key


@dataclass
class SavedAnswers:
    """What a resume file holds for one evaluation's settings: answers by id, rows asked but unanswered."""

    answers: dict[str, dict[str, Any]]
    in_flight: set[str]


def read_saved(path: Path, key: dict[str, Any]) -> SavedAnswers:
    """Answered rows saved in ``path`` for the same settings, and the ids asked with no outcome.

    An id asked (an ``asking`` line) with neither an answer nor a failure was in flight
    when that run stopped. Lines that do not parse (a run killed mid-write) or were made
    with other settings are ignored.
    """
    answers: dict[str, dict[str, Any]] = {}
    asking: set[str] = set()
    settled: set[str] = set()
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    saved = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(saved, dict) or saved.get("key") != key:
                    continue
                if "asking" in saved:
                    asking.add(str(saved["asking"]))
                elif "failed" in saved:
                    settled.add(str(saved["failed"]))
                elif isinstance(row := saved.get("row"), dict) and "id" in row and not row.get("error"):
                    answers[row["id"]] = row
    return SavedAnswers(answers, asking - settled - set(answers))


def read_resume(path: Path, rows: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Answered rows saved in ``path`` for the same question and settings, by id."""
    questions = {r["id"]: r["question"] for r in rows}
    return {i: r for i, r in read_saved(Path(path), key).answers.items() if questions.get(i) == r.get("question")}


class ResumeFile:
    """Appends ``{"key": key, **line}`` lines to ``path`` (flushed each); a no-op without a path."""

    def __init__(self, path: Path | None, key: dict[str, Any]) -> None:
        self.key = key
        self._sink = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def note(self, line: dict[str, Any]) -> None:
        if self._sink is not None:
            self._sink.write(json.dumps({"key": self.key, **line}) + "\n")
            self._sink.flush()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
