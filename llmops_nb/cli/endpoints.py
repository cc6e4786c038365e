"""``llmops-nb endpoints``: list, inspect, stop serving endpoints and read their logs."""

from __future__ import annotations

import click

from llmops_nb.cli.common import ErrorGroup, backend_of, backend_option, echo_json


@click.group(cls=ErrorGroup)
def endpoints() -> None:
    """List, inspect and stop serving endpoints."""


@endpoints.command("list")
@backend_option
def endpoints_list(backend: str | None) -> None:
    """List the workspace's endpoints with their state."""
    from llmops_nb.endpoints.ops import list_endpoints, state_of

    for e in list_endpoints(backend_of(backend).workspace_client()):
        ready, update = state_of(e)
        click.echo(f"{e.get('name')}\t{ready}\t{update}\t{e.get('task') or ''}")


@endpoints.command("get")
@click.argument("name")
@backend_option
def endpoints_get(name: str, backend: str | None) -> None:
    """Print an endpoint's detailed view as JSON."""
    from llmops_nb.endpoints.ops import get_endpoint
    from llmops_nb.errors import EndpointError

    found = get_endpoint(backend_of(backend).workspace_client(), name)
    if found is None:
        raise EndpointError(f"endpoint {name} does not exist")
    echo_json(found)


@endpoints.command("stop")
@click.argument("name")
@backend_option
def endpoints_stop(name: str, backend: str | None) -> None:
    """Delete endpoint NAME (the local workspace also stops its scoring servers)."""
    from llmops_nb.endpoints.ops import delete_endpoint

    delete_endpoint(backend_of(backend).workspace_client(), name)
    click.echo(f"endpoint {name} deleted")


@endpoints.command("logs")
@click.argument("name")
@click.argument("entity")
@backend_option
@click.option("--build", is_flag=True, help="Build logs instead of server logs.")
def endpoints_logs(name: str, entity: str, backend: str | None, build: bool) -> None:
    """Print the server (or build) logs of served entity ENTITY of endpoint NAME."""
    w = backend_of(backend).workspace_client()
    logs = w.serving_endpoints.build_logs(name, entity) if build else w.serving_endpoints.logs(name, entity)
    click.echo(logs.logs or "")
