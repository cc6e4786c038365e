"""The query step (the chain's "serve" step, notebook 03_serve): describe the endpoint, send it
a few prompts, print the equivalent curl."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.backends import Backend
    from llmops_nb.config.project import ProjectConfig


def target_endpoint(project: ProjectConfig, endpoint_name: str = "") -> str:
    """The endpoint a step talks to: given, else the config's endpoint, else its foundation model."""
    name = endpoint_name or (project.endpoint.name if project.endpoint else None) or project.foundation_endpoint
    if not name:
        raise ConfigError("endpoint_name", endpoint_name, "name an endpoint, or give the config an endpoint section")
    return name


def query(
    project: ProjectConfig,
    backend: Backend,
    prompts: list[str],
    *,
    endpoint_name: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Describe the endpoint and send it a few chat prompts; returns info, answers and a curl line.

    The chain's "serve" step (notebook 03_serve) calls it.
    """
    from llmops_nb.chat import client
    from llmops_nb.endpoints.ops import endpoint_url, get_endpoint, state_of

    name = target_endpoint(project, endpoint_name)
    w = backend.workspace_client()
    found = get_endpoint(w, name)
    if found is None:
        raise ConfigError("endpoint_name", name, "no such endpoint on this workspace; run the deploy step first")
    ready, update = state_of(found)
    tokens = max_tokens or project.model.max_tokens
    heat = project.model.temperature if temperature is None else temperature
    answers = [client.chat(w, name, p, max_tokens=tokens, temperature=heat) for p in prompts]
    url = endpoint_url(w, name, found)
    return {
        "endpoint_name": name,
        "endpoint_url": url,
        "state": {"ready": ready, "config_update": update},
        "config": found.get("config") or {},
        "answers": [{"prompt": p, **a.to_dict()} for p, a in zip(prompts, answers)],
        "curl": curl_command(url, backend, prompts[0] if prompts else "Hello"),
        "sample_latency_ms": round(sum(a.latency_ms for a in answers) / max(1, len(answers)), 1),
    }


def curl_command(url: str, backend: Backend, prompt: str = "What is MLflow?", max_tokens: int = 64) -> str:
    """The equivalent curl command; it carries the token by reference, never its value.

    Locally the token is read from the workspace's token file (mode 0600, see
    ``llmops_nb.workspace.api.token``); on Databricks from ``$DATABRICKS_TOKEN``; at a
    route-optimized endpoint's data-plane URL (not under the workspace host) from
    ``$DATABRICKS_DATA_PLANE_TOKEN``, with how to get one.
    """
    import json
    import shlex

    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens})
    from urllib.parse import urlparse

    host = (backend.host or "").rstrip("/")
    at, workspace = urlparse(url), urlparse(host if "://" in host else f"https://{host}")
    if host and (at.netloc != workspace.netloc or not at.path.startswith("/serving-endpoints/")):
        # a route-optimized endpoint's data-plane URL: only an OAuth token made for it is accepted
        # (databricks/sdk/data_plane.py exchanges one at <host>/oidc/v1/token; a PAT is refused)
        return (
            f"curl -s {url} -H \"Authorization: Bearer $DATABRICKS_DATA_PLANE_TOKEN\" -H 'Content-Type: application/json' "
            f"-d '{body}'  # DATABRICKS_DATA_PLANE_TOKEN: an OAuth token for this endpoint (POST {host}/oidc/v1/token, "
            "grant_type urn:ietf:params:oauth:grant-type:jwt-bearer, its data_plane_info.query_info.authorization_details)"
        )
    if backend.kind == "local" and backend.home is not None:
        auth = f"Bearer $(cat {shlex.quote(str(backend.home / 'token'))})"
    else:
        auth = "Bearer $DATABRICKS_TOKEN"
    return f"curl -s {url} -H \"Authorization: {auth}\" -H 'Content-Type: application/json' -d '{body}'"
