"""The register step: check the model source, log it as an MLflow chat model, register a version, set the alias."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.backends import Backend
    from llmops_nb.config.project import ProjectConfig


def register(project: ProjectConfig, backend: Backend, *, alias: str | None = None) -> dict[str, Any]:
    """Register the config's model (``model.source``: bundled, gguf, transformers, code or uc).

    The source is checked first (:func:`llmops_nb.models.sources.prepare`): a bad one is one
    ConfigError line and creates no run, version or alias. A ``uc`` source logs nothing: its
    Unity Catalog version is checked and published as it is.
    """
    from llmops_nb.models import registry, sources

    model = project.model
    source = sources.prepare(model, databricks=backend.kind == "databricks")
    registered = registry.register_model(
        model.name,
        source=source,
        alias=alias or model.alias,
        generation={"max_tokens": model.max_tokens, "temperature": model.temperature},
        experiment=backend.experiment(project.experiment),
        tracking_uri=backend.tracking_uri,
        registry_uri=backend.registry_uri,
        interface=model.interface,
    )
    return {
        "model_name": registered.name,
        "model_version": str(registered.version),
        "model_uri": registered.uri,
        "model_alias": registered.alias,
    }
