"""Secret scopes and the names of their keys: the Databricks Secrets API, without values.

Routes (shapes of databricks-sdk ``service/workspace.py`` and the Databricks CLI's test server,
databricks/cli libs/testserver/secret_scopes.go and secrets.go):

- ``POST /api/2.0/secrets/scopes/create`` ``{scope}``; ``GET /api/2.0/secrets/scopes/list``
  -> ``{scopes: [{name, backend_type}]}``; ``POST /api/2.0/secrets/scopes/delete`` ``{scope}``
- ``POST /api/2.0/secrets/put`` ``{scope, key, string_value | bytes_value}``;
  ``GET /api/2.0/secrets/list?scope=`` -> ``{secrets: [{key, last_updated_timestamp}]}``;
  ``POST /api/2.0/secrets/delete`` ``{scope, key}``

The value of a put is dropped at once: this workspace keeps key names only, and has no
``GET /api/2.0/secrets/get`` (the local workspace resolves ``{{secrets/scope/key}}`` from the
environment or its secrets file, see :mod:`llmops_nb.config.secrets`). These routes let a client
check that a scope and a key exist, as ``llmops-nb preflight`` does, without reading a value.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fastapi import FastAPI, Request

from llmops_nb.workspace.api.requestbody import json_object as _body
from llmops_nb.workspace.apierror import ApiError, invalid, not_found
from llmops_nb.workspace.store import atomic_write_json

#: Scope and key names: letters, digits, '-', '_', '.'; at most 128 characters (Secrets API docs).
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class SecretNames:
    """``{scope: {key: last_updated_ms}}`` in ``<home>/state/secret_scopes.json``."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "state" / "secret_scopes.json"
        self.scopes: dict[str, dict[str, int]] = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}

    def save(self) -> None:
        atomic_write_json(self.path, self.scopes)

    def keys_of(self, scope: str) -> dict[str, int]:
        if scope not in self.scopes:
            raise not_found(f"Scope {scope} does not exist!")
        return self.scopes[scope]


def _name(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise invalid(f"{field}: {value!r} is not allowed; letters, digits, '-', '_' or '.', at most 128 characters")
    return value


def routes(app: FastAPI, ctx: object) -> None:
    """Register the secret scope and secret name routes over ``ctx.home``."""
    names = SecretNames(ctx.home)  # type: ignore[attr-defined]

    @app.post("/api/2.0/secrets/scopes/create")
    async def create_scope(request: Request):
        scope = _name(await _body(request), "scope")
        if scope in names.scopes:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Scope {scope} already exists!")
        names.scopes[scope] = {}
        names.save()
        return {}

    @app.get("/api/2.0/secrets/scopes/list")
    async def list_scopes():
        return {"scopes": [{"name": s, "backend_type": "DATABRICKS"} for s in sorted(names.scopes)]}

    @app.post("/api/2.0/secrets/scopes/delete")
    async def delete_scope(request: Request):
        scope = _name(await _body(request), "scope")
        names.keys_of(scope)
        del names.scopes[scope]
        names.save()
        return {}

    @app.post("/api/2.0/secrets/put")
    async def put_secret(request: Request):
        body = await _body(request)
        scope, key = _name(body, "scope"), _name(body, "key")
        given = [f for f in ("string_value", "bytes_value") if body.get(f) is not None]
        if len(given) != 1:
            raise invalid("string_value, bytes_value: exactly one of them is required")
        names.keys_of(scope)[key] = int(time.time() * 1000)  # the value itself is not kept
        names.save()
        return {}

    @app.get("/api/2.0/secrets/list")
    async def list_secrets(scope: str = ""):
        keys = names.keys_of(scope)
        return {"secrets": [{"key": k, "last_updated_timestamp": t} for k, t in sorted(keys.items())]}

    @app.post("/api/2.0/secrets/delete")
    async def delete_secret(request: Request):
        body = await _body(request)
        scope, key = _name(body, "scope"), _name(body, "key")
        keys = names.keys_of(scope)
        if key not in keys:
            raise not_found(f"Secret {key} does not exist in scope {scope}!")
        del keys[key]
        names.save()
        return {}
