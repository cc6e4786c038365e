"""``llmops-nb``: a thin command line over the package.

Bad input exits with code 2 and one line naming the field, the value and what is allowed;
any other llmops-nb error exits with code 1 and one line.
"""

from __future__ import annotations

import json
import sys
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
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Project config YAML (default: configs/local.yml).",
)


class _Group(click.Group):
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


def _project(config_path: Path | None, backend: str | None = None):  # noqa: ANN202
    """The project config and the backend kind every command uses: ``--backend``, else the config's."""
    from llmops_nb.config import default_config_path, load_project_config

    path = config_path or default_config_path()
    project = load_project_config(path)
    kind = backend or project.backend
    return project, kind


def _backend(kind: str | None):  # noqa: ANN202
    from llmops_nb.backends import resolve_backend

    return resolve_backend(kind)


def _mlflow_backend(kind: str):  # noqa: ANN202
    """The backend for MLflow work only: locally the registry, without starting the workspace."""
    from llmops_nb.backends import Backend, check_kind, local_tracking_uri

    if check_kind(kind) == "local":
        uri = local_tracking_uri()
        return Backend(kind="local", host=None, token=None, tracking_uri=uri, registry_uri=uri)
    return _backend(kind)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmops-nb")
def main() -> None:
    """Register, deploy, serve and evaluate an LLM with MLflow.

    Every command speaks the Databricks serving-endpoints API, to Databricks Model Serving
    or to the local workspace on 127.0.0.1 (the default: no account needed).
    """


# --------------------------------------------------------------------------- lifecycle


@main.command()
@config_option
@backend_option
@click.option("--name", default=None, help="Registered model name (default: the config's model.name).")
@click.option("--alias", default=None, help="Alias to set on the new version (default: the config's model.alias).")
def register(config_path: Path | None, backend: str | None, name: str | None, alias: str | None) -> None:
    """Log SmolLM2-135M-Instruct as an MLflow chat model and register a new version."""
    from llmops_nb import steps

    project, kind = _project(config_path, backend)
    if name:
        project = project.model_copy(update={"model": project.model.model_copy(update={"name": name})})
    target = _mlflow_backend(kind)  # registering needs MLflow only, not the workspace server
    out = steps.register(project, target, alias=alias)
    click.echo(f"registered {out['model_name']} version {out['model_version']} ({out['model_uri']}), alias {out['model_alias']}")


@main.command()
@config_option
@backend_option
@click.option("--model-version", default=None, help="Version of the config's model to serve (default: latest).")
@click.option("--timeout", type=click.FloatRange(min=1), default=1200, show_default=True, help="Seconds to wait for READY.")
@click.option("--recreate", is_flag=True, help="Delete and create the endpoint again when the config changes a field "
              "that cannot change in place (description, route_optimized, registered <-> external model).")
def deploy(config_path: Path | None, backend: str | None, model_version: str | None, timeout: float,
           recreate: bool) -> None:
    """Create or update the config's endpoint (idempotent) and wait until it is READY."""
    from llmops_nb import steps

    project, kind = _project(config_path, backend)
    if model_version is not None and not model_version.isdigit():
        raise ConfigError("--model-version", model_version, "expected a version number such as 3")
    target = _backend(kind)
    final: dict[str, str] = {}

    def on_progress(event: Any) -> None:  # a steps.DeployEvent; the wait's tqdm bar is the deploy's own
        if event.phase == "message":  # warnings (what the workspace does not apply) and notes, on stderr
            click.echo(event.message, err=True)
        elif event.phase == "done":  # the final state: no second GET of the endpoint
            final.update(ready=event.ready, update=event.config_update)

    out = steps.deploy(project, target, model_version=model_version, timeout=timeout, progress=sys.stderr.isatty(),
                       recreate=recreate, log=None, on_progress=on_progress)
    ready, update = final["ready"], final["update"]
    click.echo(f"endpoint {out['endpoint_name']}: {out['deploy_action']}; state {ready}, config_update {update}")
    click.echo(f"serving: {', '.join(out['served_entities'])}")
    click.echo(f"invocation URL: {out['endpoint_url']}")
    click.echo("try: " + steps.curl_command(out["endpoint_url"], target))


@main.command()
@config_option
@backend_option
@click.option("--model-version", default=None, help="Version of the config's model the deploy will serve (default: latest).")
def preflight(config_path: Path | None, backend: str | None, model_version: str | None) -> None:
    """Check in seconds what the workspace would refuse minutes into a deploy or a job; exit 2 on a problem.

    One line per check (ok / problem / skipped): the config, Databricks' serving limits, auth,
    Unity Catalog schemas, secret scopes and keys (no value is read), model versions.
    """
    from llmops_nb import preflight as checks

    report = checks.run_config(config_path or "", backend or "", model_version=model_version)
    for line in report.lines():
        click.echo(line)
    found = len(report.problems)
    total = len(report.checks)
    click.echo(f"preflight: {found} problem{'s' * (found != 1)} in {total} checks" if found
               else f"preflight: {total} checks, no problem")
    if found:
        sys.exit(2)


@main.command()
@click.argument("endpoint")
@click.argument("prompt")
@backend_option
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--system", default=None, help="An optional system message.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer with usage and latency as JSON.")
@click.option("--stream", is_flag=True, help="Print the answer's tokens as they come.")
def query(
    endpoint: str, prompt: str, backend: str | None, max_tokens: int, temperature: float, system: str | None, as_json: bool,
    stream: bool = False,
) -> None:
    """Send PROMPT to ENDPOINT and print the answer."""
    from llmops_nb.client import as_messages, chat, chat_stream, check_generation

    check_generation(max_tokens, temperature)
    as_messages(prompt, system)  # bad input fails before any workspace is started
    w = _backend(backend).workspace_client()
    if stream:
        with chat_stream(w, endpoint, prompt, max_tokens=max_tokens, temperature=temperature, system=system) as s:
            for delta in s:
                if not as_json:
                    click.echo(delta, nl=False)
        result = s.result
        if not as_json:
            click.echo("")
    else:
        result = chat(w, endpoint, prompt, max_tokens=max_tokens, temperature=temperature, system=system)
    if as_json:
        _echo_json(result.to_dict())
    else:
        if not stream:
            click.echo(result.content)
        ttft = f", first token {result.ttft_ms:.0f} ms" if result.ttft_ms is not None else ""
        click.echo(
            f"[{result.served_entity}] {result.latency_ms:.0f} ms{ttft}, "
            f"{result.prompt_tokens} prompt + {result.completion_tokens} completion tokens",
            err=True,
        )


@main.command()
@config_option
@click.option("--steps", default="all", show_default=True, help="Comma-separated steps to run: register,deploy,serve,evaluate.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Parent folder of the run folder (default: runs/).")
@backend_option
@click.option("--resume", is_flag=True, help="Evaluate: skip rows an interrupted run already scored.")
@click.option("--max-rows", type=click.IntRange(min=0), default=None, help="Evaluate only the first N rows.")
@click.option("--warm-kernels/--cold-kernels", default=True, show_default=True,
              help="Start each step's kernel and its imports while the step before runs.")
@click.option("--dataset-source", default=None, help="Evaluate: 'bundled' (the config's dataset) or "
              "'inference_table' (replay the endpoint's logged requests).")
@click.option("--replay-since", default=None, help="Evaluate, replay: requests logged since an ISO "
              "date/time or a duration back from now (30m, 24h, 7d).")
@click.option("--replay-status", type=int, default=None, help="Evaluate, replay: only requests "
              "answered with this HTTP status (default 200; 0 for any).")
@click.option("--replay-endpoint", default=None, help="Evaluate, replay: the endpoint whose inference "
              "table is replayed (default: the evaluated one).")
@click.option("--replay-warehouse-id", default=None, help="Evaluate, replay on Databricks: the SQL "
              "warehouse that reads the table.")
def run(config_path: Path | None, steps: str, out: Path | None, backend: str | None, resume: bool,
        max_rows: int | None, warm_kernels: bool, dataset_source: str | None = None,
        replay_since: str | None = None, replay_status: int | None = None,
        replay_endpoint: str | None = None, replay_warehouse_id: str | None = None) -> None:
    """Run the notebooks in order with papermill, passing each step's outputs to the next.

    Leaves the executed notebooks and a summary.json in a new run folder.
    """
    # jsonschema (imported by nbformat, through papermill) loads the optional rfc3987_syntax
    # for its "iri" format check, which compiles a Lark grammar on import: 1.5 s of every run
    # here. No notebook schema uses that format; this process never validates one.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from llmops_nb import pipeline

    overrides: dict[str, dict[str, Any]] = {"evaluate": {}}
    if resume:
        overrides["evaluate"]["resume"] = True
    if max_rows is not None:
        overrides["evaluate"]["max_rows"] = max_rows
    replay_options = {"dataset_source": dataset_source, "replay_since": replay_since,
                      "replay_status": replay_status, "replay_endpoint": replay_endpoint,
                      "replay_warehouse_id": replay_warehouse_id}
    overrides["evaluate"].update({k: v for k, v in replay_options.items() if v is not None})
    chosen = pipeline.parse_steps(steps)
    result = pipeline.run(
        config_path,
        steps=chosen,
        out=out,
        backend=backend or "",
        overrides={k: v for k, v in overrides.items() if v and k in chosen},
        progress=sys.stderr.isatty(),
        log=lambda line: click.echo(line, err=True),
        warm_kernels=warm_kernels,
    )
    published = result.published
    project, kind = _project(config_path, backend)  # the chain's backend rule (chain.runner: the same)
    click.echo(f"run folder: {result.run_dir}")
    for step in result.steps:
        click.echo(f"  {step}: {result.seconds.get(step, 0):.1f} s -> {pipeline.NOTEBOOKS[step]}")
    if "eval_run_id" in published:
        from llmops_nb.backends import check_kind, local_tracking_uri

        click.echo(f"MLflow evaluation run: {published['eval_run_id']}")
        if check_kind(kind) == "local":
            click.echo(f"  see it with: mlflow ui --backend-store-uri {local_tracking_uri()}")
        for line in _gate_report(published["eval_run_id"], project, _mlflow_backend(kind)):
            click.echo(line)
        click.echo(f"promoted: {published.get('promoted')}")
    if "endpoint_url" in published:
        from llmops_nb.backends import resolve_backend
        from llmops_nb.steps import curl_command

        click.echo(f"endpoint: {published['endpoint_url']}")
        click.echo(f"  try: {curl_command(published['endpoint_url'], resolve_backend(kind, start=False))}")
        click.echo(f"  stop it: llmops-nb endpoints stop {published['endpoint_name']}   (everything: llmops-nb workspace stop)")


def _gate_report(run_id: str, project: Any, target: Any) -> list[str]:
    """The gate's decision as 04_evaluate shows it, from MLflow: each threshold with the eval
    run's value and ok/FAIL, the decision the run's tags record, and the version the alias
    points to now (the registry)."""
    from mlflow import MlflowClient

    from llmops_nb import registry
    from llmops_nb.promotion import gate

    run = MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri).get_run(run_id)
    thresholds = project.evaluation.thresholds
    metrics = {**dict.fromkeys(thresholds), **run.data.metrics}  # a missing metric: a FAIL line, not an error
    tags = run.data.tags
    lines = ["Gate:", *(f"  {line}" for line in gate(metrics, thresholds).summary())]
    model = tags.get("llmops_nb.model_name")
    version = tags.get("llmops_nb.candidate_version") or tags.get("llmops_nb.model_version")
    alias = tags.get("llmops_nb.promote_alias") or project.evaluation.promote_alias
    target_name = f"{model} version {version}" if model and version else "this model"
    reasons = [r for r in (tags.get("llmops_nb.decision") or "").split("; ") if r]
    if tags.get("llmops_nb.promoted") == "true":
        lines.append(f"PROMOTED: alias '{alias}' -> {target_name}")
    elif reasons[:1] == ["not applied"]:
        reasons = reasons[1:]
        lines.append(f"promotion allowed, but not applied (promote=False or no version) for {target_name}")
    else:
        lines.append(f"NOT promoted: {target_name} keeps its aliases")
    lines += [f"  {r}" for r in reasons]
    if model:
        now = registry.get_version_by_alias(model, alias, tracking_uri=target.tracking_uri,
                                            registry_uri=target.registry_uri)
        lines.append(f"alias '{alias}' of {model} now points to "
                     + (f"version {now}" if now else "no version (not set yet)"))
    return lines


# --------------------------------------------------------------------------- endpoints


@main.group(cls=_Group)
def endpoints() -> None:
    """List, inspect and stop serving endpoints."""


@endpoints.command("list")
@backend_option
def endpoints_list(backend: str | None) -> None:
    """List the workspace's endpoints with their state."""
    from llmops_nb import endpoints as ep

    for e in ep.list_endpoints(_backend(backend).workspace_client()):
        ready, update = ep.state_of(e)
        click.echo(f"{e.get('name')}\t{ready}\t{update}\t{e.get('task') or ''}")


@endpoints.command("get")
@click.argument("name")
@backend_option
def endpoints_get(name: str, backend: str | None) -> None:
    """Print an endpoint's detailed view as JSON."""
    from llmops_nb import endpoints as ep
    from llmops_nb.errors import EndpointError

    found = ep.get_endpoint(_backend(backend).workspace_client(), name)
    if found is None:
        raise EndpointError(f"endpoint {name} does not exist")
    _echo_json(found)


@endpoints.command("stop")
@click.argument("name")
@backend_option
def endpoints_stop(name: str, backend: str | None) -> None:
    """Delete endpoint NAME (the local workspace also stops its scoring servers)."""
    from llmops_nb import endpoints as ep

    ep.delete_endpoint(_backend(backend).workspace_client(), name)
    click.echo(f"endpoint {name} deleted")


@endpoints.command("logs")
@click.argument("name")
@click.argument("entity")
@backend_option
@click.option("--build", is_flag=True, help="Build logs instead of server logs.")
def endpoints_logs(name: str, entity: str, backend: str | None, build: bool) -> None:
    """Print the server (or build) logs of served entity ENTITY of endpoint NAME."""
    w = _backend(backend).workspace_client()
    logs = w.serving_endpoints.build_logs(name, entity) if build else w.serving_endpoints.logs(name, entity)
    click.echo(logs.logs or "")


# --------------------------------------------------------------------------- workspace


@main.group(cls=_Group)
def workspace() -> None:
    """Start, stop and inspect the local workspace (a Databricks-compatible server on 127.0.0.1)."""


@workspace.command("start")
@click.option("--fake", is_flag=True, help="Deterministic responder instead of real models (for tests).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
def workspace_start(fake: bool, port: int) -> None:
    """Start the local workspace in the background (or report the one already running)."""
    import os

    from llmops_nb.backends import ENV_WORKSPACE_TOKEN, local_home, local_tracking_uri
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
        click.echo(f"error: no local workspace runs in {local_home()}; start one with `llmops-nb workspace start`",
                   err=True)
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


# --------------------------------------------------------------------------- bundle


@main.group(cls=_Group)
def bundle() -> None:
    """The chain as a scheduled Databricks job: render and validate databricks.yml (an Asset Bundle)."""


@bundle.command("render")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Project config the job runs (default: configs/databricks.yml).")
@click.option("--target", type=click.Choice(["dev", "prod"]), default=None,
              help="Print the job body as Databricks gets it in this target (variables filled in) instead of the bundle.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to this file instead of stdout.")
def bundle_render(config_path: Path | None, target: str | None, out: Path | None) -> None:
    """Render databricks.yml from a project config and the chain's steps."""
    import yaml

    from llmops_nb import bundle as bundle_mod
    from llmops_nb.paths import project_root

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
    from llmops_nb import bundle as bundle_mod
    from llmops_nb.paths import project_root

    path = file or project_root() / bundle_mod.BUNDLE_FILE
    data = bundle_mod.validate(path)
    for key, job in data["resources"]["jobs"].items():
        order = bundle_mod.task_order(job.get("tasks") or [])
        click.echo(f"{path}: job {key} ok: {' -> '.join(order)}; targets {', '.join(data.get('targets') or {})}")


if __name__ == "__main__":  # pragma: no cover
    main()
