"""Endpoint records persisted as one JSON file under the workspace home (atomic writes)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EndpointStore:
    """The endpoints of one workspace home: ``{name: record}`` in ``<home>/state/endpoints.json``.

    A record holds what the API shows except runtime entity states: name, id, creator,
    timestamps, description, tags, ai_gateway, task, config, pending_config, config_update.
    """

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "state" / "endpoints.json"
        self.records: dict[str, dict] = {}
        if self.path.exists():
            self.records = json.loads(self.path.read_text(encoding="utf-8"))

    def save(self) -> None:
        atomic_write_json(self.path, self.records)

    def get(self, name: str) -> dict | None:
        return self.records.get(name)

    def put(self, record: dict) -> None:
        self.records[record["name"]] = record
        self.save()

    def delete(self, name: str) -> None:
        self.records.pop(name, None)
        self.save()
