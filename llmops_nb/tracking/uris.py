"""Where MLflow runs, registered models and (locally) artifacts go: one resolver for every caller.

Locally the tracking store and the registry are one SQLite file, ``<project>/mlflow.db``
(:func:`llmops_nb.util.paths.project_root`), unless ``MLFLOW_TRACKING_URI`` says otherwise,
with artifacts under an absolute ``mlruns`` folder next to it, so any process (the scoring
server, a notebook kernel) finds them. On Databricks the registry is Unity Catalog
(``databricks-uc``). mlflow is imported inside the functions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from llmops_nb.errors import ConfigError
from llmops_nb.util.paths import project_root

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

UC_REGISTRY = "databricks-uc"
_LOCAL_SCHEMES = {"sqlite", "file", ""}

DEFAULT_EXPERIMENT = "llmops-nb"
EXPERIMENT_RULE = "Databricks takes an absolute workspace path such as /Users/<you>/llmops-nb or /Shared/llmops-nb"


def is_databricks_tracking(tracking_uri: str) -> bool:
    """True for ``databricks`` and ``databricks://<profile>`` tracking URIs."""
    return tracking_uri.split("://")[0] in ("databricks", "databricks-uc")


def check_experiment(name: str, tracking_uri: str) -> str:
    """A configured experiment name; on Databricks it must be an absolute workspace path."""
    if not name.strip():
        raise ConfigError("experiment", name, "a non-empty MLflow experiment name")
    if is_databricks_tracking(tracking_uri) and not name.startswith("/"):
        raise ConfigError("experiment", name, EXPERIMENT_RULE)
    return name


def resolve_experiment(configured: str | None, tracking_uri: str, w: WorkspaceClient | None = None) -> str:
    """The MLflow experiment: ``configured`` (checked), else ``llmops-nb`` locally and
    ``/Users/<current user>/llmops-nb`` on Databricks (``w.current_user.me()``; without ``w``
    a client of the tracking URI's profile)."""
    if configured:
        return check_experiment(configured, tracking_uri)
    if not is_databricks_tracking(tracking_uri):
        return DEFAULT_EXPERIMENT
    if w is None:
        from databricks.sdk import WorkspaceClient

        profile = tracking_uri.partition("://")[2] or None
        w = WorkspaceClient(profile=profile) if profile else WorkspaceClient()
    return f"/Users/{w.current_user.me().user_name}/{DEFAULT_EXPERIMENT}"


def local_tracking_uri() -> str:
    """MLflow tracking/registry URI of the local backend: ``$MLFLOW_TRACKING_URI`` or ``<project>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


@dataclass(frozen=True)
class Tracking:
    """Where runs, registered models and (locally) artifacts go."""

    tracking_uri: str
    registry_uri: str
    artifact_root: Path | None


def _is_local(uri: str) -> bool:
    return urlparse(uri).scheme in _LOCAL_SCHEMES


def default_artifact_root(tracking_uri: str) -> Path | None:
    """``mlruns`` next to a SQLite file (or inside a file store); None for remote stores."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
    if parsed.scheme in ("file", ""):
        return Path(parsed.path or tracking_uri).resolve()
    return None


def resolve_uris(tracking_uri: str | None = None, registry_uri: str | None = None) -> tuple[str, str]:
    """(tracking, registry): arguments, then what mlflow has set (or env), then our defaults."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if tracking_uri is None and is_tracking_uri_set():
        return mlflow.get_tracking_uri(), registry_uri or mlflow.get_registry_uri()
    tracking = tracking_uri or local_tracking_uri()
    default_registry = UC_REGISTRY if tracking.startswith("databricks") else tracking
    return tracking, registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or default_registry


def tracking_setup(
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    artifact_root: Path | None = None,
) -> Tracking:
    """Point mlflow at the tracking store and registry; return where artifacts go."""
    import mlflow

    tracking, registry = resolve_uris(tracking_uri, registry_uri)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    root = Path(artifact_root).resolve() if artifact_root else default_artifact_root(tracking)
    return Tracking(tracking, registry, root if _is_local(tracking) else None)


def experiment_id(name: str, tracking_uri: str, artifact_root: Path | None = None) -> str:
    """The id of experiment ``name`` in mlflow's current tracking store, created if missing.

    Created locally with artifacts under ``artifact_root`` (default: ``mlruns`` next to the
    SQLite file, :func:`default_artifact_root`) so any process, whatever its cwd, finds them.
    The one helper of the register and evaluate runs.
    """
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root or default_artifact_root(tracking_uri)
    location = (root / re.sub(r"[^\w.-]", "_", name)).as_uri() if root is not None else None
    return mlflow.create_experiment(name, artifact_location=location)
