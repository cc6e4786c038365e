"""Offline test helpers: the fake workspace (our server with --fake) and a fake LLM provider.

with fake_workspace() as ws:
    w = ws.client()                       # a real databricks-sdk WorkspaceClient
    w.serving_endpoints.create(...)
    ws.set_faults(rate_429=0.5)           # the SDK retries through them
    assert ws.write_calls()[0]["method"] == "POST"
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops_nb.testing.provider import FakeProvider, fake_provider
from llmops_nb.workspace import launcher

__all__ = ["FakeProvider", "FakeWorkspace", "fake_provider", "fake_workspace"]

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class FakeWorkspace:
    """A running fake workspace: where it is, a client for it, and its admin API."""

    def __init__(self, info: launcher.WorkspaceInfo, options: dict) -> None:
        self.info, self.options = info, options

    @property
    def host(self) -> str:
        return self.info.host

    @property
    def token(self) -> str:
        return self.info.token or "fake-token"

    @property
    def home(self) -> Path:
        return self.info.home

    def client(self, *, retry_timeout_seconds: int = 30, http_timeout_seconds: int = 10, **kwargs: Any):
        """A databricks-sdk ``WorkspaceClient`` pointed at this workspace."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        config = Config(
            host=self.host,
            token=self.token,
            auth_type="pat",
            retry_timeout_seconds=retry_timeout_seconds,
            http_timeout_seconds=http_timeout_seconds,
            **kwargs,
        )
        return WorkspaceClient(config=config)

    def env(self) -> dict[str, str]:
        """Environment for child processes (nbval kernels, papermill) to reach this workspace."""
        return {"DATABRICKS_HOST": self.host, "DATABRICKS_TOKEN": self.token}

    def _admin(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.host}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def requests(self) -> list[dict]:
        """Every request the workspace received: method, path, body (secret refs as refs), status."""
        return self._admin("GET", "/_fake/requests")["requests"]

    def write_calls(self) -> list[dict]:
        """The POST/PUT/PATCH/DELETE requests under /api/2.0."""
        return [r for r in self.requests() if r["method"] in WRITE_METHODS and r["path"].startswith("/api/2.0/")]

    def uc_model(self, full_name: str, *, versions: int = 1, finalize: bool = True) -> None:
        """Create a Unity Catalog model ``catalog.schema.model`` (its catalog and schema if missing)
        with ``versions`` versions, READY unless ``finalize`` is False, through the workspace's own
        API with the real databricks-sdk, as MLflow's databricks-uc registry creates them."""
        from databricks.sdk.errors import ResourceConflict

        catalog, schema, name = full_name.split(".")
        w = self.client()
        for create in (lambda: w.catalogs.create(catalog), lambda: w.schemas.create(schema, catalog)):
            try:
                create()
            except ResourceConflict:  # 409 CATALOG_/SCHEMA_ALREADY_EXISTS
                pass
        w.registered_models.create(catalog_name=catalog, schema_name=schema, name=name)
        for _ in range(versions):
            created = w.api_client.do(
                "POST",
                "/api/2.0/mlflow/unity-catalog/model-versions/create",
                body={"name": full_name, "source": f"dbfs:/models/{name}"},
            )
            if finalize:
                version = created["model_version"]["version"]
                w.api_client.do(
                    "POST", "/api/2.0/mlflow/unity-catalog/model-versions/finalize", body={"name": full_name, "version": version}
                )

    def set_faults(self, **faults: Any) -> dict:
        """Merge ``faults`` into the active ones (see llmops_nb.workspace.runners.faults.Faults)."""
        return self._admin("POST", "/_fake/faults", faults)

    def reset(self) -> None:
        """Clear faults and the request record."""
        self._admin("POST", "/_fake/reset", {})

    def restart(self) -> None:
        """Stop the server and start it again on the same home (state survives; port changes)."""
        launcher.stop(self.home)
        self.info = launcher.ensure_running(self.home, None, fake=True, token=self.info.token, fake_options=self.options)


@contextlib.contextmanager
def fake_workspace(
    home: Path | None = None, *, ready_seconds: float = 0.3, latency_ms: float = 0, token: str | None = None
) -> Iterator[FakeWorkspace]:
    """Start the fake workspace on a free port; stop it (and every child) on exit."""
    tmp = None
    if home is None:
        tmp = home = Path(tempfile.mkdtemp(prefix="llmops-fake-ws-"))
    options = {"ready_seconds": ready_seconds, "latency_ms": latency_ms}
    info = launcher.ensure_running(Path(home), None, fake=True, token=token, fake_options=options)
    ws = FakeWorkspace(info, options)
    try:
        yield ws
    finally:
        launcher.stop(ws.home)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
