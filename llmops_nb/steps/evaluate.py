"""The evaluate step: score the dataset through the endpoint, log to MLflow, gate and promote."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.backends import Backend
    from llmops_nb.config.project import ProjectConfig


def served_version(project: ProjectConfig, backend: Backend, endpoint_name: str, model_name: str) -> str | None:
    """The version of ``model_name`` the endpoint serves (the entity with the most traffic)."""
    from llmops_nb.endpoints.ops import get_endpoint

    found = get_endpoint(backend.workspace_client(), endpoint_name) or {}
    config = found.get("config") or {}
    share = {
        r.get("served_entity_name"): r.get("traffic_percentage", 0)
        for r in (config.get("traffic_config") or {}).get("routes") or []
    }
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
    output_dir: str = "",
    dataset: str = "",
    thresholds: str = "",
) -> Any:
    """Score the dataset through the endpoint, log it to MLflow, gate and maybe promote.

    Each row is queried once; finished rows are appended to a resume file under
    ``$LLMOPS_HOME/eval/`` (default ``<project>/.llmops/eval/``) so that ``resume=True`` after an interrupted run only asks
    the rows that are missing. ``dataset_source="inference_table"`` takes the rows from the
    inference table of ``replay_endpoint`` (default: the evaluated endpoint) instead of the
    config's dataset, and adds the diff with the logged answers to the run (:mod:`llmops_nb.evaluation.replay`).
    ``output_dir``: where ``decision.json``, the rows file and the plot go (``llmops-nb run``: the
    run folder); "" means a temporary folder. ``dataset`` and ``thresholds``
    (``"metric=value,..."``) replace the config's (``llmops-nb run --dataset --threshold``).
    """
    from pathlib import Path

    from llmops_nb.backends import local_home
    from llmops_nb.config.project import with_evaluation
    from llmops_nb.evaluation import ai_query_engine, ai_query_sql, datasets, replay
    from llmops_nb.evaluation.orchestrate import evaluate_and_promote
    from llmops_nb.evaluation.spark_data import is_spark_source
    from llmops_nb.evaluation.spark_engine import engine_for
    from llmops_nb.steps.query import target_endpoint
    from llmops_nb.tracking.provenance import environment_record
    from llmops_nb.util.paths import private_file

    project = with_evaluation(project, dataset=dataset, thresholds=thresholds)
    ev = project.evaluation
    name = target_endpoint(project, endpoint_name)
    model = model_name or (project.model.name if project.endpoint is not None else "")
    version = model_version or (served_version(project, backend, name, model) if model else None)
    w = backend.workspace_client()
    if ev.engine == "ai_query":  # SQL on a warehouse: the warehouse id checked by the config
        engine: Any = ai_query_engine.engine_for(ev.ai_query)
        if not ev.candidates:
            ai_query_sql.check_endpoint(w, name)  # foundation or external chat: before anything is read or asked
    else:
        engine = engine_for(ev.engine, ev.spark)  # spark: pyspark and Java checked before anything is asked
    replayed = None
    if replay.check_source(dataset_source) == replay.INFERENCE_TABLE:
        replayed = replay.load_replay(
            backend.workspace_client(),
            replay_endpoint or name,
            home=backend.home if backend.kind == "local" else None,
            warehouse_id=replay_warehouse_id,
            since=replay_since,
            status=replay_status,
            max_rows=max_rows or ev.max_rows,
        )
        print(replayed.summary())
        rows = replayed.rows
    elif ev.engine == "ai_query" and ai_query_sql.is_table(ev.dataset):  # a UC table: the statements' source
        rows = engine.load_rows(w, ev.dataset, max_rows or ev.max_rows)
    elif engine is not None and ev.engine == "spark" and is_spark_source(ev.dataset):  # CSV, Parquet, Delta, a table
        rows = engine.load_rows(ev.dataset, max_rows or ev.max_rows)
    else:
        rows = datasets.load_dataset(ev.dataset, max_rows or ev.max_rows)
    suffix = "-replay" if replayed else ""
    resume_path = local_home() / "eval" / f"{name}-v{version or 'x'}{suffix}.jsonl"
    if not resume:
        resume_path.unlink(missing_ok=True)
        if engine is not None:
            engine.forget(resume_path)  # its result files
    private_file(resume_path)  # the answers of the endpoint: the user's alone, as $LLMOPS_HOME
    env = environment_record()
    tags = {
        "llmops_nb.git_commit": str(env["git_commit"]),
        "llmops_nb.backend": backend.kind,
        **{f"llmops_nb.version.{k}": str(v) for k, v in env["packages"].items() if v},
    }
    common: dict[str, Any] = {
        "model_name": model or None,
        "thresholds": ev.thresholds,
        "decision": ev.decision,
        "prices": ev.prices,
        "alias": ev.promote_alias,
        "promote_on_pass": promote,
        "tracking_uri": backend.tracking_uri,
        "registry_uri": backend.registry_uri,
        "concurrency": ev.concurrency,
        "max_tokens": project.model.max_tokens,
        "temperature": project.model.temperature,
        "resume_path": resume_path,
        "output_dir": Path(output_dir) if output_dir else None,
        "judge_endpoint": ev.judge_endpoint,
        "experiment": backend.experiment(project.experiment),
        "progress": progress,
        "engine": engine,
        "tags": tags,
        "params": {"config_hash": project.endpoint.config_hash() if project.endpoint else "", "endpoint_kind": backend.kind},
        **({"system": replayed.system} if replayed else {}),  # the logged requests' system prompt
        **({"json_schema": datasets.load_json_schema(ev.json_schema)} if ev.json_schema else {}),
    }
    if ev.candidates:  # every candidate on the same rows, one parent run
        from llmops_nb.evaluation.candidates import resolve
        from llmops_nb.evaluation.orchestrate import evaluate_candidates

        targets = resolve(
            w,
            ev.candidates,
            endpoint=name,
            model_name=model or None,
            model_version=version,
            tracking_uri=backend.tracking_uri,
            registry_uri=backend.registry_uri,
        )
        if ev.engine == "ai_query":  # each endpoint one ai_query can ask, before any run or request
            for endpoint in dict.fromkeys(t.endpoint for t in targets):
                ai_query_sql.check_endpoint(w, endpoint)
        evaluation = evaluate_candidates(w, targets, rows, baseline=ev.baseline, **common)
    else:
        evaluation = evaluate_and_promote(w, name, rows, model_version=version, **common)
    if replayed:
        evaluation.result.metrics.update(
            replay.log_diff(evaluation.run_id, evaluation.table, replayed, tracking_uri=backend.tracking_uri)
        )
    record_run(evaluation.run_id, project, backend, env)
    return evaluation


def record_run(run_id: str, project: ProjectConfig, backend: Backend, env: dict[str, Any]) -> None:
    """Attach the project config and the environment to an MLflow run, so it can be repeated."""
    import json
    import tempfile
    from pathlib import Path

    from llmops_nb.tracking.client import mlflow_client

    client = mlflow_client(backend.tracking_uri, backend.registry_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        project.to_yaml(path)  # secrets are references only: nothing to hide
        client.log_artifact(run_id, str(path), "reproducibility")
    client.log_text(run_id, json.dumps(env, indent=2), "reproducibility/environment.json")
