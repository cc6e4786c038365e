"""What every command shares: the options, the error-to-exit-code group, the config and backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from llmops_nb.errors import ConfigError, LlmopsError

BACKEND_CHOICE = click.Choice(["local", "databricks"])
backend_option = click.option(
    "--backend",
    type=BACKEND_CHOICE,
    default=None,
    help="Workspace to use: local (default outside Databricks) or databricks (DATABRICKS_HOST/TOKEN or a profile).",
)
config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Project config YAML (default: configs/local.yml).",
)


class ErrorGroup(click.Group):
    """Turns llmops-nb errors into one line and an exit code (2 for bad input)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except LlmopsError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except Exception as exc:  # the workspace's API errors (databricks-sdk) and unreachable hosts
            if not type(exc).__module__.startswith(("databricks.sdk", "requests", "urllib3")):
                raise
            click.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", err=True)
            ctx.exit(1)


def project_and_kind(config_path: Path | None, backend: str | None = None):  # noqa: ANN202
    """The project config and the backend kind every command uses: ``--backend``, else the config's."""
    from llmops_nb.config.io import default_config_path
    from llmops_nb.config.project import load_project_config

    path = config_path or default_config_path()
    project = load_project_config(path)
    kind = backend or project.backend
    return project, kind


def backend_of(kind: str | None):  # noqa: ANN202
    from llmops_nb.backends import resolve_backend

    return resolve_backend(kind)


def mlflow_backend(kind: str):  # noqa: ANN202
    """The backend for MLflow work only: locally the registry, without starting the workspace."""
    from llmops_nb.backends import Backend, check_kind
    from llmops_nb.tracking.uris import local_tracking_uri

    if check_kind(kind) == "local":
        uri = local_tracking_uri()
        return Backend(kind="local", host=None, token=None, tracking_uri=uri, registry_uri=uri)
    return backend_of(kind)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))
