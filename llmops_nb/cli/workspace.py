"""``llmops-nb workspace``: start, stop and inspect the local workspace."""

from __future__ import annotations

import sys
from typing import Any

import click

from llmops_nb.cli.common import ErrorGroup


@click.group(cls=ErrorGroup)
def workspace() -> None:
    """Start, stop and inspect the local workspace (a Databricks-compatible server on 127.0.0.1)."""


@workspace.command("start")
@click.option("--fake", is_flag=True, help="Deterministic responder instead of real models (for tests).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
def workspace_start(fake: bool, port: int) -> None:
    """Start the local workspace in the background (or report the one already running)."""
    import os

    from llmops_nb.backends import ENV_WORKSPACE_TOKEN, local_home
    from llmops_nb.tracking.uris import local_tracking_uri
    from llmops_nb.workspace import launcher

    info = launcher.ensure_running(
        local_home(), local_tracking_uri(), fake=fake, port=port, token=os.environ.get(ENV_WORKSPACE_TOKEN)
    )
    click.echo(f"local workspace{' (fake)' if info.fake else ''} at {info.host} (pid {info.pid}, home {info.home})")
    _echo_env(info)


def _echo_env(info: Any) -> None:
    """The ``export`` lines (of a launcher.WorkspaceInfo) for users' own clients: databricks-sdk, MLflow, OpenAI."""
    import shlex

    click.echo(f"export DATABRICKS_HOST={shlex.quote(info.host)}")
    click.echo(f"export DATABRICKS_TOKEN={shlex.quote(info.token or '')}")


@workspace.command("env")
def workspace_env() -> None:
    """Print `export DATABRICKS_HOST=... DATABRICKS_TOKEN=...` for the running local workspace.

    Use it as `eval "$(llmops-nb workspace env)"`; the token is also in $LLMOPS_HOME/token.
    """
    from llmops_nb.backends import local_home
    from llmops_nb.workspace import launcher

    info = launcher.status(local_home())
    if info is None:
        click.echo(f"error: no local workspace runs in {local_home()}; start one with `llmops-nb workspace start`", err=True)
        sys.exit(3)
    _echo_env(info)


@workspace.command("stop")
def workspace_stop() -> None:
    """Stop the local workspace and every scoring server it started."""
    from llmops_nb.backends import local_home
    from llmops_nb.workspace import launcher

    click.echo("local workspace stopped" if launcher.stop(local_home()) else "no local workspace was running")


@workspace.command("status")
def workspace_status() -> None:
    """Say whether the local workspace runs, and where."""
    from llmops_nb.backends import local_home
    from llmops_nb.workspace import launcher

    info = launcher.status(local_home())
    if info is None:
        click.echo(f"no local workspace runs in {local_home()}")
        sys.exit(3)
    click.echo(f"local workspace{' (fake)' if info.fake else ''} at {info.host} (pid {info.pid}, home {info.home})")
