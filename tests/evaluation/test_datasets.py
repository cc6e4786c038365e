"""The bundled dataset and dataset validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.datasets import BUNDLED_PATH, dataset_digest, load_dataset


def test_the_bundled_dataset_has_short_answers_and_unique_ids() -> None:
    rows = load_dataset()
    assert len(rows) >= 48
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(1 <= len(r["expected"].split()) <= 3 for r in rows)
    assert load_dataset("bundled", max_rows=5) == rows[:5]


def test_the_digest_is_stable_and_tracks_content_not_formatting(tmp_path: Path) -> None:
    rows = load_dataset()
    assert dataset_digest(rows) == dataset_digest(load_dataset(BUNDLED_PATH))
    reordered_keys = tmp_path / "qa.jsonl"
    reordered_keys.write_text("\n".join(json.dumps(dict(reversed(list(r.items()))), indent=None) for r in rows))
    assert dataset_digest(load_dataset(reordered_keys)) == dataset_digest(rows)
    changed = [dict(rows[0], expected="Lyon"), *rows[1:]]
    assert dataset_digest(changed) != dataset_digest(rows)
    assert dataset_digest(rows[:10]) != dataset_digest(rows)


def test_aliases_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "question": "2+2?", "expected": "4"}\n\n')
    assert load_dataset(path) == [{"id": "a", "question": "2+2?", "expected": "4", "aliases": []}]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"id": "a", "question": "q?"}', "d.jsonl:2.expected"),
        ('{"id": "a", "question": "", "expected": "x"}', "d.jsonl:2.question"),
        ('{"id": "a", "question": "q", "expected": "x", "aliases": "y"}', "d.jsonl:2.aliases"),
        ('{"id": "a", "question": "q", "expected": "x", "answer": "y"}', "d.jsonl:2.answer"),
        ('{"id": "ok", "question": "q", "expected": "x"}', "d.jsonl:2.id"),
        ('["not", "an", "object"]', "d.jsonl:2"),
        ('{"id": "a", "question": ', "d.jsonl:2"),
    ],
)
def test_a_bad_row_is_one_line_naming_the_row_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "ok", "question": "q", "expected": "x"}\n' + line + "\n")
    with pytest.raises(ConfigError) as err:
        load_dataset(path)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_unknown_dataset_and_bad_max_rows_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^dataset:"):
        load_dataset(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="^max_rows:"):
        load_dataset(max_rows=0)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="^dataset:"):
        load_dataset(empty)
