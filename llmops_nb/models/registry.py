"""Log the chat model to MLflow, register versions and manage aliases.

Where runs and versions go is :mod:`llmops_nb.tracking.uris`. On Databricks the registry is
Unity Catalog (``databricks-uc``) and names are ``catalog.schema.model``. mlflow is
imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.config.project import UC_NAME_RULE, is_uc_name
from llmops_nb.config.project import check_alias as _check_alias
from llmops_nb.errors import ConfigError
from llmops_nb.models.environment import llama_cpp_version
from llmops_nb.models.gguf import DEFAULT_MODEL_NAME
from llmops_nb.tracking.client import mlflow_client
from llmops_nb.tracking.uris import (
    UC_REGISTRY,
    experiment_id,
    is_databricks_tracking,
    resolve_experiment,
    resolve_uris,
    tracking_setup,
)

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.models.pyfunc import GgufPyfunc
    from llmops_nb.models.sources import PreparedSource


@dataclass(frozen=True)
class RegisteredModel:
    """One registered model version and the alias set on it."""

    name: str
    version: str
    uri: str
    run_id: str
    alias: str


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
    mlflow_client(tracking_uri, registry_uri).set_registered_model_alias(name, alias, str(version))


def get_version_by_alias(
    name: str, alias: str, *, tracking_uri: str | None = None, registry_uri: str | None = None
) -> str | None:
    """The version ``alias`` points at, or None (no such alias or model)."""
    from mlflow.exceptions import MlflowException

    check_alias(alias)
    try:
        mv = mlflow_client(tracking_uri, registry_uri).get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    return str(mv.version)


def latest_version(name: str, *, tracking_uri: str | None = None, registry_uri: str | None = None) -> str:
    """The highest registered version of ``name``; ConfigError if none exists."""
    _, registry = resolve_uris(tracking_uri, registry_uri)
    versions = mlflow_client(tracking_uri, registry_uri).search_model_versions(f"name = '{name}'")
    if not versions:
        raise ConfigError("model name", name, f"a registered model in {registry}; register it first")
    return str(max(int(mv.version) for mv in versions))


def _builds_in_container(tracking_uri: str, registry_uri: str) -> bool:
    """True when a serving container builds the model's environment (Databricks registries)."""
    return is_databricks_tracking(tracking_uri) or is_databricks_tracking(registry_uri)


def _interface(kwargs: dict[str, Any]) -> str:
    from llmops_nb.models.pyfunc import INTERFACE_KEY

    return str(kwargs["metadata"].get(INTERFACE_KEY) or "pyfunc")


def _run_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    gguf = Path(kwargs["artifacts"]["gguf"])
    return {**kwargs["model_config"], "gguf_file": gguf.name, "gguf_bytes": gguf.stat().st_size, "interface": _interface(kwargs)}


def _run_tags(model: GgufPyfunc) -> dict[str, str]:
    return {
        **_base_tags(),
        # pyfunc: a PythonModel (answered whole on Databricks); chat_model: a ChatModel (streamed there)
        "llmops_nb.interface": _interface(model.kwargs),
        "llama_cpp.version": llama_cpp_version(),
        # the portable wheel logged in the model (wheels/<file>), or "pypi" (a serving container compiles it)
        "llama_cpp.wheel": model.wheel.name if model.wheel else "pypi",
    }


def _base_tags() -> dict[str, str]:
    import mlflow

    from llmops_nb import __version__

    return {"llmops_nb.version": __version__, "llmops_nb.step": "register", "mlflow.version": mlflow.__version__}


def _gguf_model(
    source: PreparedSource, generation: dict[str, Any] | None, *, require_wheel: bool, interface: str = "pyfunc"
) -> GgufPyfunc:
    """The pyfunc of a GGUF source and its wheel (its serving environment checked: ModelError if unfit)."""
    from llmops_nb.models.pyfunc import gguf_pyfunc

    return gguf_pyfunc(
        source.location,
        generation,
        require_wheel=require_wheel,
        model_name=source.model_label,
        context_length=source.context_length,
        interface=interface,
    )


def _log(name: str, source: PreparedSource, generation: dict[str, Any] | None, gguf: GgufPyfunc | None) -> Any:
    """Log ``source`` as the run's model (registered as a new version of ``name``); the ModelInfo.
    ``gguf``: a GGUF source's pyfunc and wheel, built (and checked) before the run."""
    import mlflow

    from llmops_nb.models.pyfunc import code_kwargs

    params = {k: v for k, v in source.params.items() if v is not None}
    if gguf is not None:
        mlflow.log_params({**_run_params(gguf.kwargs), **params})
        mlflow.set_tags({**_run_tags(gguf), **source.tags})
        return gguf.log("model", registered_model_name=name)
    mlflow.log_params(params)
    mlflow.set_tags({**_base_tags(), **source.tags})
    if source.kind == "code":
        return mlflow.pyfunc.log_model(name="model", registered_model_name=name, **code_kwargs(source))
    if source.kind == "transformers":
        from llmops_nb.models.hf import log_transformers

        return log_transformers(name, source, generation)
    raise ConfigError("model.source", source.kind, "bundled, gguf, transformers or code (uc logs nothing)")


def register_model(
    name: str = DEFAULT_MODEL_NAME,
    *,
    source: PreparedSource | None = None,
    gguf_path: Path | str | None = None,
    alias: str = "challenger",
    experiment: str | None = None,
    generation: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    interface: str = "pyfunc",
) -> RegisteredModel:
    """Log ``source`` (default: the bundled GGUF, or the GGUF at ``gguf_path``), register a new
    version of ``name``, set ``alias`` on it.

    ``source`` comes checked from :func:`llmops_nb.models.sources.prepare`; a ``uc`` source logs
    nothing: its version is checked in Unity Catalog and returned, no alias set.
    ``experiment``: the MLflow experiment of the run; None is ``llmops-nb`` locally and
    ``/Users/<current user>/llmops-nb`` on Databricks (see
    :func:`llmops_nb.tracking.uris.resolve_experiment`); a relative name on Databricks is refused.
    ``interface``: how a GGUF source is logged, ``pyfunc`` or ``chat_model``
    (:class:`llmops_nb.config.project.ModelSpec`); recorded as the run's param and tag ``interface``.
    """
    import mlflow

    from llmops_nb.models import sources

    check_alias(alias)
    tracking_uri, registry_uri = resolve_uris(tracking_uri, registry_uri)
    check_model_name(name, registry_uri)
    if source is None:
        from llmops_nb.models.gguf import bundled_gguf_path

        path = sources.local_path(str(gguf_path), "gguf_path") if gguf_path else bundled_gguf_path()
        source = sources.gguf_source(
            path, "gguf_path", kind="gguf" if gguf_path else "bundled", label=None if gguf_path else DEFAULT_MODEL_NAME
        )
    if source.kind == "uc":
        return _resolve_uc(name, str(source.uc_version), tracking_uri, registry_uri)
    experiment = resolve_experiment(experiment, tracking_uri)
    require_wheel = _builds_in_container(tracking_uri, registry_uri)
    # a GGUF source's arguments (generation keys, the wheel) are checked before anything is created
    gguf = (
        _gguf_model(source, generation, require_wheel=require_wheel, interface=interface)
        if source.kind in ("bundled", "gguf")
        else None
    )
    if gguf is None and interface != "pyfunc":
        raise ConfigError("model.interface", interface, "chat_model is for the bundled and gguf sources; leave it out")
    tracking = tracking_setup(tracking_uri, registry_uri)
    found = experiment_id(experiment, tracking.tracking_uri, tracking.artifact_root)
    with mlflow.start_run(experiment_id=found, run_name=f"register-{name}") as run:
        info = _log(name, source, generation, gguf)
    version = str(info.registered_model_version)
    set_alias(name, alias, version, tracking_uri=tracking.tracking_uri, registry_uri=tracking.registry_uri)
    return RegisteredModel(name, version, model_uri(name, version), run.info.run_id, alias)


def _resolve_uc(name: str, version: str, tracking_uri: str, registry_uri: str) -> RegisteredModel:
    """A Unity Catalog version as it is (nothing logged, no alias set); ConfigError if it is not there."""
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow_client(tracking_uri, registry_uri).get_model_version(name, version)
    except MlflowException as e:
        raise ConfigError("model.version", version, f"an existing version of {name} in Unity Catalog ({e.error_code})") from None
    return RegisteredModel(name, str(mv.version), model_uri(name, mv.version), mv.run_id or "", "")
