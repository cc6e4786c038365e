"""The lifecycle commands: register, deploy, preflight, query, and run (the whole chain)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from llmops_nb.cli.common import backend_of, backend_option, config_option, echo_json, mlflow_backend, project_and_kind
from llmops_nb.config.project import MODEL_SOURCES
from llmops_nb.errors import ConfigError


@click.command()
@config_option
@backend_option
@click.option("--name", default=None, help="Registered model name (default: the config's model.name).")
@click.option("--alias", default=None, help="Alias to set on the new version (default: the config's model.alias).")
@click.option(
    "--source",
    type=click.Choice(MODEL_SOURCES),
    default=None,
    help="Where the model comes from (default: the config's model.source, else bundled): bundled (SmolLM2-135M), "
    "gguf (a .gguf file), transformers (a Hugging Face model folder), code (an MLflow models-from-code file), "
    "uc (an existing Unity Catalog model version, Databricks only).",
)
@click.option("--path", "model_path", default=None, help="gguf, transformers, code: the local file or folder.")
@click.option("--hf-repo", default=None, help="gguf, transformers: a Hugging Face Hub repo (instead of --path).")
@click.option("--hf-file", default=None, help="gguf with --hf-repo: the .gguf file in the repo.")
@click.option("--revision", default=None, help="With --hf-repo: a branch, tag or commit (default: main).")
@click.option("--requirement", "requirements", multiple=True, help="code: a pip requirement of the model (repeatable).")
@click.option("--uc-version", default=None, help="uc: the Unity Catalog model version to serve.")
@click.option(
    "--interface",
    type=click.Choice(["pyfunc", "chat_model"]),
    default=None,
    help="bundled, gguf: log a plain PythonModel (pyfunc, the default) or an MLflow ChatModel (chat_model: "
    "Databricks streams it; seed, logprobs, response_format, tools and tool_choice go in custom_inputs).",
)
def register(
    config_path: Path | None,
    backend: str | None,
    name: str | None,
    alias: str | None,
    source: str | None = None,
    model_path: str | None = None,
    hf_repo: str | None = None,
    hf_file: str | None = None,
    revision: str | None = None,
    requirements: tuple[str, ...] = (),
    uc_version: str | None = None,
    interface: str | None = None,
) -> None:
    """Register the LLM you want: log it as an MLflow chat model and register a new version.

    By default the config's model section (model.source; bundled: SmolLM2-135M-Instruct). The
    options override it, e.g. `llmops-nb register --name my-llm --source gguf --path my.Q4_K_M.gguf`.
    A bad source is one line and creates nothing.
    """
    from llmops_nb.config.project import with_model
    from llmops_nb.steps.register import register as register_step

    project, kind = project_and_kind(config_path, backend)
    project = with_model(
        project,
        name=name,
        source=source,
        path=str(Path(model_path).expanduser().resolve()) if model_path else None,
        hf_repo=hf_repo,
        hf_file=hf_file,
        revision=revision,
        requirements=list(requirements),
        version=uc_version,
        interface=interface,
    )
    target = mlflow_backend(kind)  # registering needs MLflow only, not the workspace server
    out = register_step(project, target, alias=alias)
    aliased = f"alias {out['model_alias']}" if out["model_alias"] else "a Unity Catalog version: nothing logged, no alias set"
    click.echo(f"registered {out['model_name']} version {out['model_version']} ({out['model_uri']}), {aliased}")


@click.command()
@config_option
@backend_option
@click.option("--model-version", default=None, help="Version of the config's model to serve (default: latest).")
@click.option("--timeout", type=click.FloatRange(min=1), default=1200, show_default=True, help="Seconds to wait for READY.")
@click.option(
    "--recreate",
    is_flag=True,
    help="Delete and create the endpoint again when the config changes a field "
    "that cannot change in place (description, route_optimized, registered <-> external model).",
)
def deploy(config_path: Path | None, backend: str | None, model_version: str | None, timeout: float, recreate: bool) -> None:
    """Create or update the config's endpoint (idempotent) and wait until it is READY."""
    from llmops_nb.steps.deploy import deploy as deploy_step
    from llmops_nb.steps.query import curl_command

    project, kind = project_and_kind(config_path, backend)
    if model_version is not None and not model_version.isdigit():
        raise ConfigError("--model-version", model_version, "expected a version number such as 3")
    target = backend_of(kind)
    final: dict[str, str] = {}

    def on_progress(event: Any) -> None:  # an endpoints.events.DeployEvent; the wait's tqdm bar is the deploy's own
        if event.phase == "message":  # warnings (what the workspace does not apply) and notes, on stderr
            click.echo(event.message, err=True)
        elif event.phase == "done":  # the final state: no second GET of the endpoint
            final.update(ready=event.ready, update=event.config_update)

    out = deploy_step(
        project,
        target,
        model_version=model_version,
        timeout=timeout,
        progress=sys.stderr.isatty(),
        recreate=recreate,
        log=None,
        on_progress=on_progress,
    )
    ready, update = final["ready"], final["update"]
    click.echo(f"endpoint {out['endpoint_name']}: {out['deploy_action']}; state {ready}, config_update {update}")
    click.echo(f"serving: {', '.join(out['served_entities'])}")
    click.echo(f"invocation URL: {out['endpoint_url']}")
    click.echo("try: " + curl_command(out["endpoint_url"], target))


@click.command()
@config_option
@backend_option
@click.option("--model-version", default=None, help="Version of the config's model the deploy will serve (default: latest).")
def preflight(config_path: Path | None, backend: str | None, model_version: str | None) -> None:
    """Check in seconds what the workspace would refuse minutes into a deploy or a job; exit 2 on a problem.

    One line per check (ok / problem / skipped): the config, Databricks' serving limits, auth,
    Unity Catalog schemas, secret scopes and keys (no value is read), model versions.
    """
    from llmops_nb.endpoints import preflight as checks

    report = checks.run_config(config_path or "", backend or "", model_version=model_version)
    for line in report.lines():
        click.echo(line)
    found = len(report.problems)
    total = len(report.checks)
    for status, line in evaluation_checks(config_path, backend, deploying=True):  # the evaluation section (issue 30)
        click.echo(f"{status:<7} evaluation.{line}")
        found += status == "problem"
        total += 1
    click.echo(
        f"preflight: {found} problem{'s' * (found != 1)} in {total} checks" if found else f"preflight: {total} checks, no problem"
    )
    if found:
        sys.exit(2)


FILE = click.Path(dir_okay=False, path_type=Path)


def _output_files(json_schema: Path | None, tool_files: tuple[Path, ...], stream: bool) -> dict[str, Any]:
    """``response_format`` from a JSON schema file and ``tools`` (forced: ``tool_choice``) from
    function files, as OpenAI's chat body takes them; ConfigError naming the option and file."""

    def load(option: str, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(option, str(path), f"a readable JSON file ({type(e).__name__}: {e})") from None

    out: dict[str, Any] = {}
    if json_schema is not None:
        schema = load("--json-schema", json_schema)
        if not isinstance(schema, dict):
            raise ConfigError("--json-schema", str(json_schema), "a JSON schema object")
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": json_schema.stem, "schema": schema}}
    if tool_files:
        if stream:
            raise ConfigError("--tool", str(tool_files[0]), "without --stream (a tool call is printed whole)")
        tools = []
        for path in tool_files:
            spec = load("--tool", path)
            tools.append(
                spec if isinstance(spec, dict) and spec.get("type") == "function" else {"type": "function", "function": spec}
            )
        names = [(t.get("function") or {}).get("name") for t in tools]
        out["tools"] = tools
        out["tool_choice"] = {"type": "function", "function": {"name": names[0]}} if len(tools) == 1 else "required"
    return out


def evaluation_checks(
    config_path: Path | str | None, backend: str | None, *, deploying: bool = False, raising: bool = False
) -> list[tuple[str, str]]:
    """(status, line) per check of the config's evaluation section (llmops_nb.evaluation.checks),
    asking the workspace about candidates; one ("problem", line) for the first problem, or its
    ConfigError when ``raising``."""
    from llmops_nb.backends import resolve_backend
    from llmops_nb.config.io import default_config_path
    from llmops_nb.config.project import load_project_config
    from llmops_nb.evaluation.checks import check_evaluation

    try:
        project = load_project_config(config_path or default_config_path())
        foreign = any(
            (c.endpoint or project.endpoint_name) != project.endpoint_name or not deploying for c in project.evaluation.candidates
        )
        w = resolve_backend(backend or project.backend, start=True).workspace_client() if foreign else None
        return [("ok", line) for line in check_evaluation(project, w=w, deploying=deploying)]
    except ConfigError as e:
        if raising:
            raise
        return [("problem", str(e).removeprefix("evaluation."))]


@click.command()
@click.argument("endpoint")
@click.argument("prompt")
@backend_option
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--system", default=None, help="An optional system message.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer with usage and latency as JSON.")
@click.option("--stream", is_flag=True, help="Print the answer's tokens as they come.")
@click.option("--json-schema", type=FILE, help="A JSON schema file: the answer is JSON matching it (response_format).")
@click.option(
    "--tool", "tool_files", type=FILE, multiple=True, help="A function file {name, description, parameters}: the answer calls it."
)
def query(
    endpoint: str,
    prompt: str,
    backend: str | None,
    max_tokens: int,
    temperature: float,
    system: str | None,
    as_json: bool,
    stream: bool = False,
    json_schema: Path | None = None,
    tool_files: tuple[Path, ...] = (),
) -> None:
    """Send PROMPT to ENDPOINT and print the answer."""
    from llmops_nb.chat.client import as_messages, chat, chat_stream, check_generation, output_fields

    check_generation(max_tokens, temperature)
    as_messages(prompt, system)  # bad input fails before any workspace is started
    shaping = _output_files(json_schema, tool_files, stream)
    output_fields(**shaping)
    w = backend_of(backend).workspace_client()
    if stream:
        fmt = shaping.get("response_format")
        with chat_stream(
            w, endpoint, prompt, max_tokens=max_tokens, temperature=temperature, system=system, response_format=fmt
        ) as s:
            for delta in s:
                if not as_json:
                    click.echo(delta, nl=False)
        result = s.result
        assert result is not None  # set by ChatStream.close(), which the with block's exit calls
        if not as_json:
            click.echo("")
    else:
        result = chat(w, endpoint, prompt, max_tokens=max_tokens, temperature=temperature, system=system, **shaping)
    if as_json:
        echo_json(result.to_dict())
    else:
        if not stream:
            click.echo(result.content)
        for call in result.tool_calls or []:
            fn = call.get("function") or {}
            click.echo(f"{fn.get('name')}({fn.get('arguments')})")
        ttft = f", first token {result.ttft_ms:.0f} ms" if result.ttft_ms is not None else ""
        click.echo(
            f"[{result.served_entity}] {result.latency_ms:.0f} ms{ttft}, "
            f"{result.prompt_tokens} prompt + {result.completion_tokens} completion tokens",
            err=True,
        )


@click.command()
@config_option
@click.option("--steps", default="all", show_default=True, help="Comma-separated steps to run: register,deploy,serve,evaluate.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Parent folder of the run folder (default: runs/).",
)
@backend_option
@click.option("--resume", is_flag=True, help="Evaluate: skip rows an interrupted run already scored.")
@click.option("--max-rows", type=click.IntRange(min=0), default=None, help="Evaluate only the first N rows.")
@click.option(
    "--dataset",
    "dataset",
    type=click.Path(path_type=Path),
    default=None,
    help="Evaluate on this .jsonl file instead of the config's dataset (one JSON object a line: id, question, expected, aliases).",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="METRIC=VALUE",
    help="Evaluate with this threshold instead of the config's (repeatable; held at the interval's bound).",
)
@click.option(
    "--warm-kernels/--cold-kernels",
    default=True,
    show_default=True,
    help="Start each step's kernel and its imports while the step before runs.",
)
@click.option(
    "--dataset-source",
    default=None,
    help="Evaluate: 'bundled' (the config's dataset) or 'inference_table' (replay the endpoint's logged requests).",
)
@click.option(
    "--replay-since",
    default=None,
    help="Evaluate, replay: requests logged since an ISO date/time or a duration back from now (30m, 24h, 7d).",
)
@click.option(
    "--replay-status",
    type=int,
    default=None,
    help="Evaluate, replay: only requests answered with this HTTP status (default 200; 0 for any).",
)
@click.option(
    "--replay-endpoint",
    default=None,
    help="Evaluate, replay: the endpoint whose inference table is replayed (default: the evaluated one).",
)
@click.option(
    "--replay-warehouse-id", default=None, help="Evaluate, replay on Databricks: the SQL warehouse that reads the table."
)
def run(
    config_path: Path | None,
    steps: str,
    out: Path | None,
    backend: str | None,
    resume: bool,
    max_rows: int | None,
    warm_kernels: bool,
    dataset: Path | None = None,
    thresholds: tuple[str, ...] = (),
    dataset_source: str | None = None,
    replay_since: str | None = None,
    replay_status: int | None = None,
    replay_endpoint: str | None = None,
    replay_warehouse_id: str | None = None,
) -> None:
    """Run the notebooks in order with papermill, passing each step's outputs to the next.

    Leaves the executed notebooks and a summary.json in a new run folder.
    """
    # jsonschema (imported by nbformat, through papermill) loads the optional rfc3987_syntax
    # for its "iri" format check, which compiles a Lark grammar on import: 1.5 s of every run
    # here. No notebook schema uses that format; this process never validates one.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from llmops_nb.chain.runner import parse_steps
    from llmops_nb.chain.runner import run as run_chain
    from llmops_nb.chain.table import NOTEBOOKS

    overrides: dict[str, dict[str, Any]] = {"evaluate": {}}
    if resume:
        overrides["evaluate"]["resume"] = True
    if max_rows is not None:
        overrides["evaluate"]["max_rows"] = max_rows
    if dataset is not None:  # a path from where the command runs
        overrides["evaluate"]["dataset"] = str(dataset.expanduser().resolve())
    if thresholds:
        overrides["evaluate"]["thresholds"] = ",".join(thresholds)
    replay_options = {
        "dataset_source": dataset_source,
        "replay_since": replay_since,
        "replay_status": replay_status,
        "replay_endpoint": replay_endpoint,
        "replay_warehouse_id": replay_warehouse_id,
    }
    overrides["evaluate"].update({k: v for k, v in replay_options.items() if v is not None})
    chosen = parse_steps(steps)
    if "evaluate" in chosen:  # candidates on other endpoints: asked before the first step changes anything
        evaluation_checks(config_path, backend, deploying="deploy" in chosen, raising=True)
    result = run_chain(
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
    project, kind = project_and_kind(config_path, backend)  # the chain's backend rule (chain.runner: the same)
    click.echo(f"run folder: {result.run_dir}")
    for step in result.steps:
        click.echo(f"  {step}: {result.seconds.get(step, 0):.1f} s -> {NOTEBOOKS[step]}")
    if "eval_run_id" in published:
        from llmops_nb.backends import check_kind
        from llmops_nb.tracking.uris import local_tracking_uri

        click.echo(f"MLflow evaluation run: {published['eval_run_id']}")
        if check_kind(kind) == "local":
            click.echo(f"  see it with: mlflow ui --backend-store-uri {local_tracking_uri()}")
        from llmops_nb.evaluation.promotion import decision_report

        target = mlflow_backend(kind)
        for line in decision_report(
            published["eval_run_id"],
            project.evaluation.promote_alias,
            target.tracking_uri,
            target.registry_uri,
        ):
            click.echo(line)
        click.echo(f"promoted: {published.get('promoted')}")
    if "endpoint_url" in published:
        from llmops_nb.backends import resolve_backend
        from llmops_nb.steps.query import curl_command

        click.echo(f"endpoint: {published['endpoint_url']}")
        click.echo(f"  try: {curl_command(published['endpoint_url'], resolve_backend(kind, start=False))}")
        click.echo(f"  stop it: llmops-nb endpoints stop {published['endpoint_name']}   (everything: llmops-nb workspace stop)")
