"""The lifecycle steps as plain functions: what each notebook (and the CLI) calls.

Each step takes the project config and a backend and returns the outputs it publishes to
the next step (plain JSON values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.backends import Backend
    from llmops_nb.config import EndpointConfig, ProjectConfig


def register(project: ProjectConfig, backend: Backend, *, alias: str | None = None) -> dict[str, Any]:
    """Log the bundled LLM as an MLflow chat model, register a version, set the alias."""
    from llmops_nb import registry

    model = project.model
    registered = registry.register_model(
        model.name,
        alias=alias or model.alias,
        generation={"max_tokens": model.max_tokens, "temperature": model.temperature},
        tracking_uri=backend.tracking_uri,
        registry_uri=backend.registry_uri,
    )
    return {
        "model_name": registered.name,
        "model_version": str(registered.version),
        "model_uri": registered.uri,
        "model_alias": registered.alias,
    }


def resolved_endpoint(
    project: ProjectConfig, backend: Backend, *, model_version: str | None = None
) -> EndpointConfig:
    """The project's endpoint config with every registered entity's version filled in.

    ``model_version`` (published by the register step) pins the project's model; other
    entities without a version get the latest registered version.
    """
    from llmops_nb import registry

    if project.endpoint is None:
        raise ConfigError("endpoint", None, "a deploy needs an endpoint section (this config only queries)")

    def resolve(entity_name: str) -> str:
        if model_version and entity_name == project.model.name:
            return str(model_version)
        return registry.latest_version(
            entity_name, tracking_uri=backend.tracking_uri, registry_uri=backend.registry_uri
        )

    return project.endpoint.with_resolved_versions(resolve)


def deploy(
    project: ProjectConfig,
    backend: Backend,
    *,
    model_version: str | None = None,
    timeout: float = 1200,
    progress: bool = True,
) -> dict[str, Any]:
    """Create or update the endpoint idempotently and wait until it is READY."""
    from llmops_nb import endpoints

    cfg = resolved_endpoint(project, backend, model_version=model_version)
    result = endpoints.deploy(backend.workspace_client(), cfg, timeout=timeout, progress=progress)
    return {
        "endpoint_name": result.name,
        "endpoint_url": result.endpoint_url,
        "config_hash": result.config_hash,
        "deploy_action": result.action,
        "served_entities": list(result.served_entities),
    }
