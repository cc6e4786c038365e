"""The lifecycle steps as plain functions: what each notebook (and the CLI) calls.

Each step takes the project config and a backend and returns the outputs it publishes to
the next step (plain JSON values): :func:`register`, :func:`deploy`, :func:`query` (the
chain's "serve" step: it queries the deployed endpoint; ``serve`` is kept as its old name)
and :func:`evaluate`. :func:`deploy_endpoint` is the one deploy path of the CLI, the
notebook and the widget form: the deploy lock, then :func:`llmops_nb.endpoints.deploy`,
with an optional progress callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.backends import Backend
    from llmops_nb.config import EndpointConfig, ProjectConfig
    from llmops_nb.endpoints import DeployEvent, DeployResult


def register(project: ProjectConfig, backend: Backend, *, alias: str | None = None) -> dict[str, Any]:
    """Log the bundled LLM as an MLflow chat model, register a version, set the alias."""
    from llmops_nb import registry

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
    recreate: bool = False,
    log: Callable[[str], None] | None = print,
    on_progress: Callable[[DeployEvent], None] | None = None,
) -> dict[str, Any]:
    """Create or update the endpoint idempotently and wait until it is READY (``recreate``:
    delete and create it again when the config changes a field that cannot change in place).

    Each warning (what the workspace accepts but does not apply) and note (e.g. a recovered
    failed update) goes to ``log`` as one line, ``warning: ...`` / ``note: ...``; printed by
    default, so they show in the executed notebook (``log=None``: not printed). The returned
    outputs do not include them. ``on_progress`` gets each :class:`DeployEvent` (see
    :func:`deploy_endpoint`).
    """
    cfg = resolved_endpoint(project, backend, model_version=model_version)
    result = deploy_endpoint(backend.workspace_client(), cfg, backend=backend, timeout=timeout, progress=progress,
                             recreate=recreate, on_progress=on_progress)
    for line in result.messages():
        if log is not None:
            log(line)
    return {
        "endpoint_name": result.name,
        "endpoint_url": result.endpoint_url,
        "config_hash": result.config_hash,
        "deploy_action": result.action,
        "served_entities": list(result.served_entities),
    }


def deploy_endpoint(
    w: WorkspaceClient,
    cfg: EndpointConfig,
    *,
    backend: Backend | None = None,
    timeout: float = 1200,
    poll_interval: float = 1.0,
    progress: bool = False,
    recreate: bool = False,
    on_progress: Callable[[DeployEvent], None] | None = None,
) -> DeployResult:
    """The one deploy path: under the deploy lock of ``backend`` (see :func:`_deploy_lock`),
    :func:`llmops_nb.endpoints.deploy` with every version of ``cfg`` resolved, waiting for READY.

    ``on_progress`` gets a :class:`DeployEvent` when the writes are made (``written``, with the
    action), at each state poll (``polled``), for each warning/note line (``message``) and at
    the end (``done``, with the final state); ``progress`` shows a tqdm bar while waiting.
    """
    from llmops_nb import endpoints
    from llmops_nb.endpoints import DeployEvent

    with _deploy_lock(backend, cfg.name):
        result = endpoints.deploy(w, cfg, timeout=timeout, poll_interval=poll_interval, progress=progress,
                                  recreate=recreate, on_event=on_progress)
    if on_progress is not None:
        for line in result.messages():
            on_progress(DeployEvent("message", cfg.name, result.ready, result.config_update, result.action, line))
        on_progress(DeployEvent("done", cfg.name, result.ready, result.config_update, result.action))
    return result


def _deploy_lock(backend: Backend | None, name: str) -> Any:
    """Locally, one deploy of an endpoint at a time (a file lock); on Databricks, the API's 409s
    are waited out and retried by :func:`llmops_nb.endpoints.deploy` instead."""
    import contextlib

    if backend is None or backend.kind != "local" or backend.home is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    from llmops_nb.paths import private_dir

    return FileLock(str(private_dir(backend.home / "locks") / f"deploy-{name}.lock"), mode=0o600)


def load(config_path: str = "", backend: str = "") -> tuple[ProjectConfig, Backend]:
    """The project config (default ``configs/local.yml``) and its backend (started if local)."""
    from llmops_nb.backends import resolve_backend
    from llmops_nb.config import default_config_path, load_project_config

    project = load_project_config(config_path or default_config_path())
    return project, resolve_backend(backend or project.backend)


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
    from llmops_nb import client, endpoints

    name = target_endpoint(project, endpoint_name)
    w = backend.workspace_client()
    found = endpoints.get_endpoint(w, name)
    if found is None:
        raise ConfigError("endpoint_name", name, "no such endpoint on this workspace; run the deploy step first")
    ready, update = endpoints.state_of(found)
    generation = {
        "max_tokens": max_tokens or project.model.max_tokens,
        "temperature": project.model.temperature if temperature is None else temperature,
    }
    answers = [client.chat(w, name, p, **generation) for p in prompts]
    url = endpoints.endpoint_url(w, name)
    return {
        "endpoint_name": name,
        "endpoint_url": url,
        "state": {"ready": ready, "config_update": update},
        "config": found.get("config") or {},
        "answers": [{"prompt": p, **a.to_dict()} for p, a in zip(prompts, answers)],
        "curl": curl_command(url, backend, prompts[0] if prompts else "Hello"),
        "sample_latency_ms": round(sum(a.latency_ms for a in answers) / max(1, len(answers)), 1),
    }


serve = query  # its name before issue 17; notebooks and scripts that call it keep working


def curl_command(url: str, backend: Backend, prompt: str = "What is MLflow?", max_tokens: int = 64) -> str:
    """The equivalent curl command; it carries the token by reference, never its value.

    Locally the token is read from the workspace's token file (mode 0600, see
    ``llmops_nb.workspace.token``); on Databricks from ``$DATABRICKS_TOKEN``.
    """
    import json
    import shlex

    if backend.kind == "local" and backend.home is not None:
        auth = f"Bearer $(cat {shlex.quote(str(backend.home / 'token'))})"
    else:
        auth = "Bearer $DATABRICKS_TOKEN"
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens})
    return f"curl -s {url} -H \"Authorization: {auth}\" -H 'Content-Type: application/json' -d '{body}'"


def served_version(project: ProjectConfig, backend: Backend, endpoint_name: str, model_name: str) -> str | None:
    """The version of ``model_name`` the endpoint serves (the entity with the most traffic)."""
    from llmops_nb import endpoints

    found = endpoints.get_endpoint(backend.workspace_client(), endpoint_name) or {}
    config = found.get("config") or {}
    share = {r.get("served_entity_name"): r.get("traffic_percentage", 0) for r in (config.get("traffic_config") or {}).get("routes") or []}
    candidates = [e for e in config.get("served_entities") or [] if e.get("entity_name") == model_name]
    if not candidates:
        return None
    best = max(candidates, key=lambda e: share.get(e.get("name"), 100 if len(candidates) == 1 else 0))
    return str(best.get("entity_version"))


def evaluate(
    project: ProjectConfig,
    backend: Backend,
    *,
    endpoint_name: str = "",
    model_name: str = "",
    model_version: str = "",
    max_rows: int | None = None,
    resume: bool = False,
    promote: bool = True,
    progress: bool = True,
    dataset_source: str = "bundled",
    replay_endpoint: str = "",
    replay_since: str = "",
    replay_status: int = 200,
    replay_warehouse_id: str = "",
) -> Any:
    """Score the dataset through the endpoint, log it to MLflow, gate and maybe promote.

    Each row is queried once; finished rows are appended to a resume file under
    ``$LLMOPS_HOME/eval/`` (default ``<project>/.llmops/eval/``) so that ``resume=True`` after an interrupted run only asks
    the rows that are missing. ``dataset_source="inference_table"`` takes the rows from the
    inference table of ``replay_endpoint`` (default: the evaluated endpoint) instead of the
    config's dataset, and adds the diff with the logged answers to the run (:mod:`llmops_nb.replay`).
    """
    from llmops_nb import datasets, replay
    from llmops_nb.evaluation import evaluate_and_promote
    from llmops_nb.backends import local_home
    from llmops_nb.paths import private_file
    from llmops_nb.provenance import environment_record

    ev = project.evaluation
    name = target_endpoint(project, endpoint_name)
    model = model_name or (project.model.name if project.endpoint is not None else "")
    version = model_version or (served_version(project, backend, name, model) if model else None)
    replayed = None
    if replay.check_source(dataset_source) == replay.INFERENCE_TABLE:
        replayed = replay.load_replay(
            backend.workspace_client(), replay_endpoint or name,
            home=backend.home if backend.kind == "local" else None, warehouse_id=replay_warehouse_id,
            since=replay_since, status=replay_status, max_rows=max_rows or ev.max_rows)
        print(replayed.summary())
        rows = replayed.rows
    else:
        rows = datasets.load_dataset(ev.dataset, max_rows or ev.max_rows)
    suffix = "-replay" if replayed else ""
    resume_path = local_home() / "eval" / f"{name}-v{version or 'x'}{suffix}.jsonl"
    if not resume:
        resume_path.unlink(missing_ok=True)
    private_file(resume_path)  # the answers of the endpoint: the user's alone, as $LLMOPS_HOME
    env = environment_record()
    tags = {
        "llmops_nb.git_commit": str(env["git_commit"]),
        "llmops_nb.backend": backend.kind,
        **{f"llmops_nb.version.{k}": str(v) for k, v in env["packages"].items() if v},
    }
    evaluation = evaluate_and_promote(
        backend.workspace_client(),
        name,
        rows,
        model_name=model or None,
        model_version=version,
        thresholds=ev.thresholds,
        margin=ev.margin,
        alias=ev.promote_alias,
        promote_on_pass=promote,
        tracking_uri=backend.tracking_uri,
        registry_uri=backend.registry_uri,
        concurrency=ev.concurrency,
        max_tokens=project.model.max_tokens,
        temperature=project.model.temperature,
        resume_path=resume_path,
        judge_endpoint=ev.judge_endpoint,
        experiment=backend.experiment(project.experiment),
        progress=progress,
        tags=tags,
        params={"config_hash": project.endpoint.config_hash() if project.endpoint else "", "endpoint_kind": backend.kind},
        **({"system": replayed.system} if replayed else {}),  # the logged requests' system prompt
    )
    if replayed:
        evaluation.result.metrics.update(replay.log_diff(
            evaluation.run_id, evaluation.table, replayed, tracking_uri=backend.tracking_uri))
    record_run(evaluation.run_id, project, backend, env)
    return evaluation


def record_run(run_id: str, project: ProjectConfig, backend: Backend, env: dict[str, Any]) -> None:
    """Attach the project config and the environment to an MLflow run, so it can be repeated."""
    import json
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=backend.tracking_uri, registry_uri=backend.registry_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        project.to_yaml(path)  # secrets are references only: nothing to hide
        client.log_artifact(run_id, str(path), "reproducibility")
    client.log_text(run_id, json.dumps(env, indent=2), "reproducibility/environment.json")
