"""``llmops-nb``: a thin command line over the package, one module per command group.

Bad input exits with code 2 and one line naming the field, the value and what is allowed;
any other llmops-nb error exits with code 1 and one line.
"""

from __future__ import annotations

import click

from llmops_nb.cli import bundle, endpoints, lifecycle, rollout, workspace
from llmops_nb.cli.common import ErrorGroup


@click.group(cls=ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmops-nb")
def main() -> None:
    """Register, deploy, serve and evaluate an LLM with MLflow.

    Every command speaks the Databricks serving-endpoints API, to Databricks Model Serving
    or to the local workspace on 127.0.0.1 (the default: no account needed).
    """


for command in (
    lifecycle.register,
    lifecycle.deploy,
    lifecycle.preflight,
    lifecycle.query,
    lifecycle.run,
    endpoints.endpoints,
    workspace.workspace,
    bundle.bundle,
    rollout.rollout,
    rollout.rollback,
):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
