"""``llmops-nb bundle``: the chain as a scheduled Databricks job (render and validate databricks.yml)."""

from __future__ import annotations

from pathlib import Path

import click

from llmops_nb.cli.common import ErrorGroup


@click.group(cls=ErrorGroup)
def bundle() -> None:
    """The chain as a scheduled Databricks job: render and validate databricks.yml (an Asset Bundle)."""


@bundle.command("render")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Project config the job runs (default: configs/databricks.yml).",
)
@click.option(
    "--target",
    type=click.Choice(["dev", "prod"]),
    default=None,
    help="Print the job body as Databricks gets it in this target (variables filled in) instead of the bundle.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to this file instead of stdout."
)
def bundle_render(config_path: Path | None, target: str | None, out: Path | None) -> None:
    """Render databricks.yml from a project config and the chain's steps."""
    import yaml

    from llmops_nb.chain import bundle as bundle_mod
    from llmops_nb.util.paths import project_root

    root = project_root().resolve()
    config = (config_path or root / "configs" / "databricks.yml").resolve()
    label = config.relative_to(root).as_posix() if config.is_relative_to(root) else str(config)
    text = bundle_mod.render_yaml(config, root, config_label=label)
    if target is not None:
        jobs = bundle_mod.resolve(yaml.safe_load(text), target)
        text = yaml.safe_dump(jobs, sort_keys=False, width=120)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@bundle.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def bundle_validate(file: Path | None) -> None:
    """Check FILE (default: databricks.yml): notebooks, parameters and their types, task values, cycles, JobSettings."""
    from llmops_nb.chain import bundle as bundle_mod
    from llmops_nb.util.paths import project_root

    path = file or project_root() / bundle_mod.BUNDLE_FILE
    data = bundle_mod.validate(path)
    for key, job in data["resources"]["jobs"].items():
        order = bundle_mod.task_order(job.get("tasks") or [])
        click.echo(f"{path}: job {key} ok: {' -> '.join(order)}; targets {', '.join(data.get('targets') or {})}")
