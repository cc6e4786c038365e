"""Evaluation datasets: JSON-lines question/answer rows, validated, with a stable digest.

A row is ``{"id": "q01", "question": "...", "expected": "...", "aliases": ["..."]}``;
``aliases`` (other accepted answers) is optional. ``"bundled"`` names the dataset shipped in
the package (``llmops_nb/data/qa.jsonl``): short facts a very small chat model can sometimes
answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmops_nb.errors import ConfigError

BUNDLED = "bundled"
BUNDLED_PATH = Path(__file__).resolve().parents[1] / "data" / "qa.jsonl"
FIELDS = ("id", "question", "expected", "aliases")


def dataset_path(name: str | Path) -> Path:
    """The file behind a dataset name: ``"bundled"`` or a path to a ``.jsonl`` file."""
    path = BUNDLED_PATH if str(name) == BUNDLED else Path(name).expanduser()
    if not path.is_file():
        raise ConfigError("dataset", str(name), f"'{BUNDLED}' or the path of an existing .jsonl file")
    return path


def unique_row(row: dict[str, Any], where: str, seen: set[str]) -> dict[str, Any]:
    """``row``, its id added to ``seen``; one ConfigError line when a row before it had that id."""
    if row["id"] in seen:
        raise ConfigError(f"{where}.id", row["id"], "ids must be unique in a dataset")
    seen.add(row["id"])
    return row


def check_row(row: Any, where: str) -> dict[str, Any]:
    """One validated row (``aliases`` defaulted to ``[]``); ConfigError names the row and field."""
    if not isinstance(row, dict):
        raise ConfigError(where, row, "expected a JSON object with id, question, expected")
    extra = sorted(set(row) - set(FIELDS))
    if extra:
        raise ConfigError(f"{where}.{extra[0]}", row[extra[0]], f"allowed fields: {', '.join(FIELDS)}")
    for field in ("id", "question", "expected"):
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{field}", value, "expected a non-empty string")
    aliases = row.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ConfigError(f"{where}.aliases", aliases, "expected a list of non-empty strings")
    return {"id": row["id"], "question": row["question"], "expected": row["expected"], "aliases": list(aliases)}


def parse_rows(lines: list[str], source: str) -> list[dict[str, Any]]:
    """Validated rows from JSON lines (blank lines skipped); ids must be unique."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, line.strip()[:60], f"expected one JSON object per line ({exc.msg})") from None
        rows.append(unique_row(check_row(raw, where), where, seen))
    if not rows:
        raise ConfigError("dataset", source, "expected at least one row")
    return rows


def load_dataset(name: str | Path = BUNDLED, max_rows: int | None = None) -> list[dict[str, Any]]:
    """The dataset's rows (the first ``max_rows`` if given), validated."""
    if max_rows is not None and (not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1):
        raise ConfigError("max_rows", max_rows, "expected an integer >= 1, or None for all rows")
    path = dataset_path(name)
    rows = parse_rows(path.read_text(encoding="utf-8").splitlines(), path.name)
    return rows[:max_rows] if max_rows else rows


def dataset_digest(rows: Sequence[dict[str, Any]]) -> str:
    """sha256 of the canonical rows (key order and whitespace do not matter; row order does)."""
    canonical = json.dumps(
        [check_row(r, f"rows[{i}]") for i, r in enumerate(rows)], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_json_schema(path: str, field: str = "evaluation.json_schema") -> dict[str, Any]:
    """The JSON Schema in ``path`` (a JSON object the schema's own metaschema accepts); one
    ConfigError line naming ``field`` otherwise."""
    import jsonschema

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(field, path, "an existing JSON Schema file (a relative path is from the config file's folder)")
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(field, path, f"a JSON file ({exc})") from None
    if not isinstance(schema, dict):
        raise ConfigError(field, path, "a JSON Schema object ({...}), not a JSON " + type(schema).__name__)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(field, path, f"a valid JSON Schema ({exc.message})") from None
    return schema
