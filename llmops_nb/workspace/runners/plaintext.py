"""Plaintext provider keys in a request body, kept as the workspace's own secrets.

Databricks accepts ``*_plaintext`` API keys (``openai_api_key_plaintext``, ...), stores them
as secrets and returns only the reference field on GET (CLI
bundle/direct/dresources/resources.yml "Write-only secrets"; libs/testserver
``clearExternalModelSecrets``). The local workspace does the same: before the schema (which
takes references only) sees the body, each plaintext value is replaced by a
``{{secrets/llmops-endpoint/<endpoint>.<entity>.<field>}}`` reference; the values are written to
``<home>/state/endpoint-secrets.json`` (mode 0600) only once the write is accepted, and are
resolved from there at request time. No value is logged, echoed or put in a message.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from llmops_nb.workspace.apierror import invalid
from llmops_nb.workspace.store import atomic_write_json

SCOPE = "llmops-endpoint"
_FILE = Path("state") / "endpoint-secrets.json"
_lock = threading.Lock()
# custom_provider_config keeps its keys one level down (serving.ApiKeyAuth, BearerTokenAuth)
_NESTED = ("api_key_auth", "bearer_token_auth")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in text)[:40] or "x"


def take(endpoint: str, config: Any) -> tuple[Any, dict[str, str]]:
    """``config`` with every plaintext key turned into a reference, and ``{key: value}``."""
    if not isinstance(config, dict) or not isinstance(config.get("served_entities"), list):
        return config, {}
    found: dict[str, str] = {}
    entities = []
    for i, entity in enumerate(config["served_entities"]):
        ext = entity.get("external_model") if isinstance(entity, dict) else None
        if not isinstance(ext, dict):
            entities.append(entity)
            continue
        label = _safe(str(entity.get("name") or ext.get("name") or i))
        ext = dict(ext)
        for section, value in list(ext.items()):
            if section.endswith("_config") and isinstance(value, dict):
                where = f"config.served_entities[{i}].external_model.{section}"
                ext[section] = _replace(value, where, f"{_safe(endpoint)}.{label}", found)
        entities.append({**entity, "external_model": ext})
    return {**config, "served_entities": entities}, found


def _replace(section: dict, where: str, prefix: str, found: dict[str, str]) -> dict:
    out = dict(section)
    for key, value in section.items():
        if key in _NESTED and isinstance(value, dict):
            out[key] = _replace(value, f"{where}.{key}", f"{prefix}.{key}", found)
        elif key.endswith("_plaintext") and value is not None:
            field = key[: -len("_plaintext")]
            if section.get(field) is not None:
                raise invalid(f"{where}.{key}: not allowed with {field}; give one of the two")
            if not isinstance(value, str) or not value:
                raise invalid(f"{where}.{key}: is not allowed; a non-empty string")
            name = f"{prefix}.{_safe(field)}"
            found[name] = value
            del out[key]
            out[field] = f"{{{{secrets/{SCOPE}/{name}}}}}"
    return out


def store(home: Path, values: dict[str, str]) -> None:
    """Keep ``values`` in the workspace's secrets file (owner-only)."""
    if not values:
        return
    path = Path(home) / _FILE
    with _lock:
        data = _read(path)
        data.update(values)
        atomic_write_json(path, data)
        os.chmod(path, 0o600)


def lookup(home: Path, ref: str | None) -> str | None:
    """The value behind a reference this module made, else None."""
    prefix = f"{{{{secrets/{SCOPE}/"
    if not ref or not ref.startswith(prefix) or home is None:
        return None
    return _read(Path(home) / _FILE).get(ref[len(prefix) : -2])


def _read(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


_SECRET_VALUES = ("string_value", "bytes_value")


def masked(body: Any) -> Any:
    """``body`` with every ``*_plaintext`` value, and a secret put's ``string_value`` /
    ``bytes_value`` (``POST /api/2.0/secrets/put``), shown as ``***`` (for the fake's request record)."""
    if isinstance(body, dict):
        return {
            k: "***" if (k.endswith("_plaintext") or k in _SECRET_VALUES) and v is not None else masked(v)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [masked(v) for v in body]
    return body
