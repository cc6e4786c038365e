"""The register step: log the LLM as an MLflow chat model, register a version, set the alias."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.backends import Backend
    from llmops_nb.config.project import ProjectConfig


def register(project: ProjectConfig, backend: Backend, *, alias: str | None = None) -> dict[str, Any]:
    """Log the bundled LLM as an MLflow chat model, register a version, set the alias."""
    from llmops_nb.models import registry

    model = project.model
    registered = registry.register_model(
        model.name,
        alias=alias or model.alias,
        generation={"max_tokens": model.max_tokens, "temperature": model.temperature},
        experiment=backend.experiment(project.experiment),
        tracking_uri=backend.tracking_uri,
        registry_uri=backend.registry_uri,
    )
    return {
        "model_name": registered.name,
        "model_version": str(registered.version),
        "model_uri": registered.uri,
        "model_alias": registered.alias,
    }
