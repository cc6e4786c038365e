"""Log the chat model to MLflow, register versions and manage aliases.

Locally the tracking store and the registry are one SQLite file (default
``<cwd>/mlflow.db``) with artifacts under an absolute ``mlruns`` folder next to it, so any
process (the scoring server, a notebook kernel) finds them. On Databricks the registry is
Unity Catalog (``databricks-uc``) and names are ``catalog.schema.model``. mlflow is
imported inside the functions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llmops_nb.backends import is_databricks_tracking, resolve_experiment
from llmops_nb.config.project import UC_NAME_RULE, is_uc_name
from llmops_nb.config.project import check_alias as _check_alias
from llmops_nb.errors import ConfigError
from llmops_nb.models.environment import WHEEL_ARTIFACT, llama_cpp_version
from llmops_nb.models.gguf import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient

UC_REGISTRY = "databricks-uc"
_LOCAL_SCHEMES = {"sqlite", "file", ""}


@dataclass(frozen=True)
class RegisteredModel:
    """One registered model version and the alias set on it."""

    name: str
    version: str
    uri: str
    run_id: str
    alias: str


@dataclass(frozen=True)
class Tracking:
    """Where runs, registered models and (locally) artifacts go."""

    tracking_uri: str
    registry_uri: str
    artifact_root: Path | None


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<abs cwd>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve()}/mlflow.db"


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
    tracking = tracking_uri or default_tracking_uri()
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


def check_model_name(name: str, registry_uri: str) -> None:
    """Unity Catalog needs ``catalog.schema.model`` (:data:`llmops_nb.config.UC_NAME_RE`); any
    registry needs a non-empty name."""
    if registry_uri.startswith(UC_REGISTRY) and not is_uc_name(name):
        raise ConfigError("model name", name, UC_NAME_RULE)
    if not (name or "").strip():
        raise ConfigError("model name", name, "a non-empty registered model name")


def check_alias(alias: str) -> None:
    """MLflow's alias rule (:data:`llmops_nb.config.project.ALIAS_RULE`): one ConfigError line if broken."""
    _check_alias(alias, "alias")


def model_uri(name: str, version: str | int) -> str:
    """``models:/name/version``."""
    return f"models:/{name}/{version}"


def _client(tracking_uri: str | None, registry_uri: str | None) -> MlflowClient:
    from mlflow import MlflowClient

    tracking, registry = resolve_uris(tracking_uri, registry_uri)
    return MlflowClient(tracking_uri=tracking, registry_uri=registry)


def set_alias(
    name: str,
    alias: str,
    version: str | int,
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> None:
    """Point ``alias`` of model ``name`` at ``version``."""
    check_alias(alias)
    _client(tracking_uri, registry_uri).set_registered_model_alias(name, alias, str(version))


def get_version_by_alias(
    name: str, alias: str, *, tracking_uri: str | None = None, registry_uri: str | None = None
) -> str | None:
    """The version ``alias`` points at, or None (no such alias or model)."""
    from mlflow.exceptions import MlflowException

    check_alias(alias)
    try:
        mv = _client(tracking_uri, registry_uri).get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    return str(mv.version)


def latest_version(
    name: str, *, tracking_uri: str | None = None, registry_uri: str | None = None
) -> str:
    """The highest registered version of ``name``; ConfigError if none exists."""
    from mlflow import MlflowClient

    tracking, registry = resolve_uris(tracking_uri, registry_uri)
    versions = MlflowClient(tracking, registry).search_model_versions(f"name = '{name}'")
    if not versions:
        raise ConfigError("model name", name, f"a registered model in {registry}; register it first")
    return str(max(int(mv.version) for mv in versions))


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


def _builds_in_container(tracking_uri: str, registry_uri: str) -> bool:
    """True when a serving container builds the model's environment (Databricks registries)."""
    return is_databricks_tracking(tracking_uri) or is_databricks_tracking(registry_uri)


def _run_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    gguf = Path(kwargs["artifacts"]["gguf"])
    return {**kwargs["model_config"], "gguf_file": gguf.name, "gguf_bytes": gguf.stat().st_size}


def _run_tags(kwargs: dict[str, Any]) -> dict[str, str]:
    from llmops_nb import __version__

    pins = dict(req.split("==") for req in kwargs["pip_requirements"] if "==" in req)
    wheel = kwargs["artifacts"].get(WHEEL_ARTIFACT)
    return {
        "llmops_nb.version": __version__,
        "llmops_nb.step": "register",
        "mlflow.version": pins["mlflow"],
        "llama_cpp.version": llama_cpp_version(),
        # the portable wheel logged in the model, or "pypi" (a serving container compiles it)
        "llama_cpp.wheel": Path(wheel).name if wheel else "pypi",
    }


def register_model(
    name: str = DEFAULT_MODEL_NAME,
    *,
    gguf_path: Path | str | None = None,
    alias: str = "challenger",
    experiment: str | None = None,
    generation: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> RegisteredModel:
    """Log the GGUF chat model (GGUF inside), register a new version, set ``alias`` on it.

    ``experiment``: the MLflow experiment of the run; None is ``llmops-nb`` locally and
    ``/Users/<current user>/llmops-nb`` on Databricks (see
    :func:`llmops_nb.backends.resolve_experiment`); a relative name on Databricks is refused.
    """
    import mlflow

    from llmops_nb.models.pyfunc import pyfunc_kwargs

    check_alias(alias)
    tracking_uri, registry_uri = resolve_uris(tracking_uri, registry_uri)
    check_model_name(name, registry_uri)
    experiment = resolve_experiment(experiment, tracking_uri)
    # validates before anything is created; a Databricks registry's model must carry the wheel
    kwargs = pyfunc_kwargs(gguf_path, generation,
                           require_wheel=_builds_in_container(tracking_uri, registry_uri))
    tracking = tracking_setup(tracking_uri, registry_uri)
    found = experiment_id(experiment, tracking.tracking_uri, tracking.artifact_root)
    with mlflow.start_run(experiment_id=found, run_name=f"register-{name}") as run:
        mlflow.log_params(_run_params(kwargs))
        mlflow.set_tags(_run_tags(kwargs))
        info = mlflow.pyfunc.log_model(name="model", registered_model_name=name, **kwargs)
    version = str(info.registered_model_version)
    set_alias(name, alias, version, tracking_uri=tracking.tracking_uri,
              registry_uri=tracking.registry_uri)
    return RegisteredModel(name, version, model_uri(name, version), run.info.run_id, alias)
