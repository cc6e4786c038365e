"""Where the workspace is and which MLflow registry goes with it.

A backend is little more than a host, a token and a pair of MLflow URIs:

- ``local``: the local workspace on 127.0.0.1 (started on demand, reused afterwards) with
  MLflow tracking and registry in a SQLite file; its token (required on every request) is
  read from the running workspace's ``server.json`` (also kept in ``$LLMOPS_HOME/token``);
- ``databricks``: the host from the usual Databricks settings (``DATABRICKS_HOST``,
  ``DATABRICKS_TOKEN``, ``DATABRICKS_CONFIG_PROFILE`` or ``~/.databrickscfg``) with the
  Unity Catalog registry (``databricks-uc``).

Everything else (deploy, wait, query) has one path over databricks-sdk.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llmops_nb.errors import ConfigError, WorkspaceError
from llmops_nb.tracking.uris import is_databricks_tracking, local_tracking_uri, resolve_experiment
from llmops_nb.util.paths import project_root

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.project import ProjectConfig

BackendKind = Literal["local", "databricks"]
BACKENDS: tuple[BackendKind, ...] = ("local", "databricks")

#: Environment variables read here (documented in the README).
ENV_BACKEND = "LLMOPS_BACKEND"
ENV_HOME = "LLMOPS_HOME"
ENV_WORKSPACE_TOKEN = "LLMOPS_WORKSPACE_TOKEN"
ENV_RETRY_TIMEOUT = "LLMOPS_RETRY_TIMEOUT_SECONDS"
ENV_HTTP_TIMEOUT = "LLMOPS_HTTP_TIMEOUT_SECONDS"


def in_databricks_runtime() -> bool:
    """True inside a Databricks notebook or job (without importing ``databricks.sdk.runtime``)."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "dbutils" in getattr(shell, "user_ns", {})


def local_home() -> Path:
    """The local workspace's folder: ``$LLMOPS_HOME`` or ``<project>/.llmops``."""
    return Path(os.environ.get(ENV_HOME) or project_root() / ".llmops").resolve()


def state_is_local(kind: str) -> bool:
    """Whether state that must outlive a deploy (rollout records, applied configs) may live in files
    under ``$LLMOPS_HOME``: on the local backend; on Databricks a job's driver goes with its
    cluster, so it lives on the endpoint and in MLflow (:mod:`llmops_nb.rollout.stores`)."""
    return check_kind(kind) == "local"


def check_kind(kind: str) -> BackendKind:
    """Validate a backend name (one-line ConfigError otherwise)."""
    for known in BACKENDS:
        if kind == known:
            return known
    raise ConfigError("backend", kind, f"expected one of {', '.join(BACKENDS)}")


def default_kind(configured: str | None = None) -> BackendKind:
    """The backend to use: an explicit choice, then ``$LLMOPS_BACKEND``, then the runtime."""
    if configured:
        return check_kind(configured)
    if os.environ.get(ENV_BACKEND):
        return check_kind(os.environ[ENV_BACKEND])
    return "databricks" if in_databricks_runtime() else "local"


@dataclass(frozen=True)
class Backend:
    """A workspace to talk to, and the MLflow registry that goes with it."""

    kind: BackendKind
    host: str | None
    token: str | None = field(repr=False)
    tracking_uri: str
    registry_uri: str
    home: Path | None = None
    profile: str | None = None

    def workspace_client(
        self,
        *,
        retry_timeout_seconds: int | None = None,
        http_timeout_seconds: int | None = None,
    ) -> WorkspaceClient:
        """A databricks-sdk client for this workspace.

        429 and 503 are retried by the SDK, honouring Retry-After, for up to
        ``retry_timeout_seconds`` (``$LLMOPS_RETRY_TIMEOUT_SECONDS``, default 300).
        """
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        retry = retry_timeout_seconds or int(os.environ.get(ENV_RETRY_TIMEOUT, "300"))
        http = http_timeout_seconds or int(os.environ.get(ENV_HTTP_TIMEOUT, "120"))
        kwargs: dict[str, object] = {
            "retry_timeout_seconds": retry,
            "http_timeout_seconds": http,
            "max_connection_pools": 4,
            "max_connections_per_pool": 64,
        }
        if self.kind == "local":
            kwargs.update(host=self.host, token=self.token, auth_type="pat")
        elif self.host:
            kwargs.update(host=self.host)
            if self.token:
                kwargs.update(token=self.token)
        if self.profile:
            kwargs["profile"] = self.profile
        try:
            return WorkspaceClient(config=Config(**kwargs))  # type: ignore[arg-type]
        except ValueError as exc:  # the SDK's "cannot configure default credentials"
            raise WorkspaceError(f"{self.kind} workspace: {exc}".splitlines()[0]) from None

    def experiment(self, configured: str | None = None) -> str:
        """The MLflow experiment of this backend's runs (see :func:`resolve_experiment`)."""
        if configured or not is_databricks_tracking(self.tracking_uri):
            return resolve_experiment(configured, self.tracking_uri)
        return resolve_experiment(None, self.tracking_uri, self.workspace_client())

    def endpoint_url(self, name: str) -> str:
        """The full invocation URL of an endpoint."""
        host = (self.host or self.workspace_client().config.host or "").rstrip("/")
        return f"{host}/serving-endpoints/{name}/invocations"


def resolve_backend(kind: str | None = None, *, start: bool = True, profile: str | None = None) -> Backend:
    """Build the backend for ``kind`` (see :func:`default_kind`).

    For ``local`` this starts the local workspace if it is not running (unless
    ``start=False``, which raises when none runs).
    """
    chosen = default_kind(kind)
    if chosen == "local":
        return _local_backend(start=start)
    return Backend(
        kind="databricks",
        host=os.environ.get("DATABRICKS_HOST"),
        token=os.environ.get("DATABRICKS_TOKEN"),
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "databricks"),
        registry_uri=os.environ.get("MLFLOW_REGISTRY_URI", "databricks-uc"),
        profile=profile or os.environ.get("DATABRICKS_CONFIG_PROFILE"),
    )


def _local_backend(*, start: bool) -> Backend:
    from llmops_nb.workspace import launcher

    home = local_home()
    tracking_uri = local_tracking_uri()
    token = os.environ.get(ENV_WORKSPACE_TOKEN)
    if start:
        # Never the fake one, unless asked for (--backend databricks pointed at it): a local
        # run would evaluate echo answers and promote on them. It is not stopped either.
        info = launcher.ensure_running(home, tracking_uri, token=token, fake=False, refuse_fake=True)
    else:
        found = launcher.status(home)
        if found is None:
            raise WorkspaceError(f"no local workspace runs in {home}; start one with `llmops-nb workspace start`")
        if found.fake:
            raise launcher.fake_refused(found)
        info = found
    return Backend(
        kind="local",
        host=info.host,
        token=info.token or token or "local",
        tracking_uri=tracking_uri,
        registry_uri=tracking_uri,
        home=home,
    )


def load_project(config_path: str = "", backend: str = "") -> tuple[ProjectConfig, Backend]:
    """The one loader: the project config (default ``configs/local.yml``) and its backend
    (``backend``, else the config's; started if local)."""
    from llmops_nb.config.io import default_config_path
    from llmops_nb.config.project import load_project_config

    project = load_project_config(config_path or default_config_path())
    return project, resolve_backend(backend or project.backend)
