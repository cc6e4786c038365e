"""Evaluate an endpoint, then gate and maybe promote: the evaluation's phases in order.

:func:`evaluate_endpoint`: check the input, create the MLflow run while the endpoint
answers (:mod:`~llmops_nb.evaluation.mlflow_run`), ask each row once
(:mod:`~llmops_nb.evaluation.asking`) with each answer's bookkeeping done as it arrives
(:mod:`~llmops_nb.evaluation.bookkeeping`), then plot (:mod:`~llmops_nb.evaluation.plot`), judge if
asked (:mod:`~llmops_nb.evaluation.scorers`) and log. :func:`evaluate_and_promote` adds
the intervals and paired comparisons (:mod:`~llmops_nb.evaluation.statistics`), the decision
(:mod:`~llmops_nb.evaluation.decision`) and the alias move (:mod:`llmops_nb.evaluation.promotion`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.chat.client import check_generation
from llmops_nb.chat.ratecontrol import AimdLimiter
from llmops_nb.config.project import DecisionConfig, PriceConfig
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.asking import DEFAULT_SYSTEM, stream_rows
from llmops_nb.evaluation.bookkeeping import ROWS_ARTIFACT, Bookkeeper
from llmops_nb.evaluation.candidates import Target, cost_per_1k
from llmops_nb.evaluation.datasets import dataset_digest
from llmops_nb.evaluation.decision import decide, decision_record, write_decision
from llmops_nb.evaluation.html_report import write_report
from llmops_nb.evaluation.metrics import KNOWN_METRICS
from llmops_nb.evaluation.mlflow_run import active_experiment, end_prepared, log_outputs, prepare_run, reopened_run
from llmops_nb.evaluation.plot import DECISION_PLOT, PLOT_ARTIFACT, plot_decision, plot_results
from llmops_nb.evaluation.promotion import (
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    Champion,
    PromotionDecision,
    check_threshold_names,
    find_champion,
    promote,
    record_decision,
)
from llmops_nb.evaluation.report import EvalResult, Evaluation
from llmops_nb.evaluation.rows import StreamDigest, read_table
from llmops_nb.evaluation.scorers import judge_rows_file, sqlite_safe_env
from llmops_nb.evaluation.statistics import compare_candidates, row_columns, summarize
from llmops_nb.tracking.uris import resolve_experiment

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from databricks.sdk import WorkspaceClient

    from llmops_nb.evaluation.ai_query_engine import AiQueryEngine
    from llmops_nb.evaluation.spark_engine import SparkEngine


def _schema_digest(schema: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def evaluate_endpoint(
    w: WorkspaceClient,
    endpoint: str,
    rows: Iterable[dict[str, Any]],
    *,
    concurrency: int = 8,
    max_tokens: int = 64,
    temperature: float = 0.0,
    system: str | None = DEFAULT_SYSTEM,
    tracking_uri: str,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    progress: bool = True,
    resume_path: Path | None = None,
    judge_endpoint: str | None = None,
    mlflow_scoring: bool = True,
    output_dir: Path | None = None,
    trace_rows: int = 25,
    served_entity: str | None = None,
    limiter: AimdLimiter | None = None,
    json_schema: dict[str, Any] | None = None,
    engine: SparkEngine | AiQueryEngine | None = None,
) -> EvalResult:
    """Query each row once (``concurrency`` at a time), score, and log everything to one MLflow run.

    ``rows``: a list (checked whole before any request) or any iterable of rows, read lazily
    (each checked as it comes): results stream out to ``eval_rows.jsonl`` as answers arrive,
    so memory does not grow with the rows in flight. A row that fails after retries is kept
    with its error (``error_rate``); with ``resume_path`` answered rows are saved as they
    arrive and not asked again on a rerun (``EvalResult.reasked`` counts rows that were in
    flight when the earlier run stopped). ``mlflow_scoring``: a trace per row that matters
    (every failed row and the first ``trace_rows`` rows) with the row's scores as
    assessments, logged while the endpoint answers; every row's scores are in the per-row
    table artifacts either way, and the metrics are the same. ``experiment``: None is
    ``llmops-nb`` locally and ``/Users/<current user of w>/llmops-nb`` on Databricks.
    ``served_entity``: ask that served entity of ``endpoint`` only. ``limiter``: the rate
    control of this evaluation's requests (default: a new AIMD limiter at ``concurrency``).
    ``json_schema``: every row asks for structured output against it and scores ``json_schema_match``.
    ``engine``: a :class:`~llmops_nb.evaluation.spark_engine.SparkEngine` asks the rows on Spark, an
    :class:`~llmops_nb.evaluation.ai_query_engine.AiQueryEngine` in ai_query statements on a SQL warehouse
    (None: this process's threads); the bookkeeping and the logging are the same.
    """
    import mlflow

    listed = rows if isinstance(rows, Sequence) else None
    sized = listed is not None
    if listed is not None and not listed:
        raise ConfigError("rows", rows, "expected at least one dataset row")
    experiment = resolve_experiment(experiment, tracking_uri, w)
    streamed = None if sized else StreamDigest()
    digest = dataset_digest(listed) if listed is not None else ""  # a list is checked whole before any request
    check_generation(max_tokens, temperature)
    run_tags = {"llmops_nb.step": "evaluate", "llmops_nb.endpoint": endpoint, **(tags or {})}
    run_params: dict[str, Any] = {
        "endpoint": endpoint,
        **({"served_entity": served_entity} if served_entity else {}),
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "judge_endpoint": judge_endpoint or "",
        **(engine.run_params(resume_path) if engine is not None else {"engine": "threads"}),
        **({"json_schema_sha256": _schema_digest(json_schema)} if json_schema is not None else {}),
        **(params or {}),
    }
    if listed is not None:
        run_params.update(dataset_digest=digest, rows=len(listed))
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="llmops-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    if limiter is None:
        limiter = AimdLimiter(concurrency) if isinstance(concurrency, int) and concurrency >= 1 else None
    # The MLflow run is created while the endpoint answers; each row's bookkeeping (the rows
    # file, running metrics, traces of the rows that matter) runs in a thread as it arrives.
    with ThreadPoolExecutor(1, thread_name_prefix="mlflow-run") as pool:
        prepared = pool.submit(prepare_run, tracking_uri, experiment, run_name, run_tags, run_params)
        keeper = Bookkeeper(out / ROWS_ARTIFACT, run=prepared.result if mlflow_scoring else None, trace_rows=trace_rows)
        started = time.perf_counter()
        try:
            with sqlite_safe_env(tracking_uri):
                asked = (engine.stream_rows if engine is not None else stream_rows)(
                    w,
                    endpoint,
                    rows,
                    keeper.put,
                    concurrency=concurrency,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    system=system,
                    progress=progress,
                    resume_path=Path(resume_path) if resume_path else None,
                    check=streamed.add if streamed else None,
                    limiter=limiter,
                    served_entity=served_entity,
                    json_schema=json_schema,
                )
                running = keeper.close()
            if not asked.rows:
                raise ConfigError("rows", [], "expected at least one dataset row")
        except BaseException:
            with contextlib.suppress(BaseException):
                keeper.close()
            end_prepared(prepared, tracking_uri, "FAILED")
            raise
        query_seconds = time.perf_counter() - started
        experiment_id, run_id = prepared.result()
    metrics = running.metrics()
    if streamed is not None:
        digest = streamed.hexdigest()

    table = read_table(out / ROWS_ARTIFACT)
    figure = plot_results(table)
    plot_path = out / PLOT_ARTIFACT
    figure.savefig(plot_path, dpi=100)

    with reopened_run(tracking_uri, experiment_id, run_id) as run:
        late: dict[str, Any] = {"resumed_rows": asked.resumed, "reasked_in_flight": asked.reasked}
        if not sized:
            late.update(dataset_digest=digest, rows=asked.rows)
        mlflow.log_params(late)
        if judge_endpoint:
            metrics.update(judge_rows_file(out / ROWS_ARTIFACT, judge_endpoint, concurrency, limiter))
        log_outputs(
            {**metrics, "query_seconds": query_seconds, "traced_rows": keeper.traced},
            table,
            [plot_path, out / ROWS_ARTIFACT],
            keeper.trace_failures,
        )
    return EvalResult(run.info.run_id, metrics, table, plot_path, digest, asked.queried, figure, asked.reasked)


def champion_rows(champion: Champion, tracking_uri: str | None) -> pd.DataFrame | None:
    """The per-row table of the evaluation that promoted ``champion`` (its rows artifact), or None."""
    from llmops_nb.tracking.client import mlflow_client

    client = mlflow_client(tracking_uri, tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(champion.run_id, ROWS_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - an older run without the rows artifact: no paired rows
            return None
        return read_table(Path(path))


#: The candidate names of :func:`evaluate_and_promote`: the evaluated version and the champion's stored rows.
NEW, CHAMPION = "new", "champion"


def _log_intervals(run_id: str, estimates: Mapping[str, Any], record_path: Path, tracking_uri: str) -> None:
    """``<metric>/ci_low`` and ``/ci_high`` for each metric with an interval, and ``decision.json``, on the run."""
    import math

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    bounds = [
        Metric(f"{metric}/{side}", value, now, 0)
        for metric, e in estimates.items()
        for side, value in (("ci_low", e.ci_low), ("ci_high", e.ci_high))
        if isinstance(value, float) and math.isfinite(value)
    ]
    client = MlflowClient(tracking_uri)
    client.log_batch(run_id, metrics=bounds)
    client.log_artifact(run_id, str(record_path))


def evaluate_and_promote(
    w: WorkspaceClient,
    endpoint: str,
    rows: list[dict[str, Any]],
    *,
    model_name: str | None,
    model_version: str | None,
    thresholds: Mapping[str, float],
    margin: float | None = None,
    decision: DecisionConfig | None = None,
    alias: str = "champion",
    promote_on_pass: bool = True,
    tracking_uri: str,
    registry_uri: str | None = None,
    prices: Mapping[str, PriceConfig] | None = None,
    **evaluate_kwargs: Any,
) -> Evaluation:
    """Evaluate, decide against the champion (:mod:`llmops_nb.evaluation.decision`), maybe move the alias.

    Threshold names are checked before any request. The baseline is the champion's own rows
    (the rows artifact of the evaluation that promoted it) when it was scored on the same
    dataset; on other rows nothing is promoted. ``decision``: the rule (default
    :class:`~llmops_nb.config.project.DecisionConfig`, with ``margin`` if given). The decision is
    recorded as tags on the evaluation run and as ``decision.json`` (in ``output_dir`` and the run).
    """
    rule = decision or DecisionConfig(**({"margin": margin} if margin is not None else {}))
    if not evaluate_kwargs.get("judge_endpoint"):  # a judge adds metrics only known afterwards
        check_threshold_names(thresholds, KNOWN_METRICS)  # unknown names fail before any request
    champion = None
    if model_name:
        champion = find_champion(model_name, alias=alias, tracking_uri=tracking_uri, registry_uri=registry_uri)
    tags = dict(evaluate_kwargs.pop("tags", None) or {})
    if model_name:
        tags[TAG_MODEL_NAME] = model_name
    if model_version:
        tags[TAG_MODEL_VERSION] = str(model_version)
    out = Path(evaluate_kwargs.pop("output_dir", None) or tempfile.mkdtemp(prefix="llmops-eval-"))
    started = time.perf_counter()
    result = evaluate_endpoint(w, endpoint, rows, tracking_uri=tracking_uri, tags=tags, output_dir=out, **evaluate_kwargs)
    seconds = time.perf_counter() - started
    columns = {NEW: row_columns(result.table)}
    baseline, rows_differ = None, ""
    stored_tables: dict[str, pd.DataFrame] = {}
    if champion is not None and champion.version != str(model_version):
        baseline = CHAMPION
        if champion.dataset_digest != result.dataset_digest:
            rows_differ = (
                f"the champion (version {champion.version}) was evaluated on other rows (another dataset or max_rows); "
                "evaluate on its rows, or name it as a candidate to ask it the same rows"
            )
        else:
            stored = champion_rows(champion, tracking_uri)
            if stored is None or list(stored["id"]) != list(result.table["id"]):
                rows_differ = f"the champion's (version {champion.version}) per-row results are not on these rows"
            else:
                columns[CHAMPION] = row_columns(stored)
                stored_tables[CHAMPION] = stored
    estimates = {name: summarize(cols, rule.confidence) for name, cols in columns.items()}
    known: dict[str, dict[str, Any]] = {
        NEW: {**{k: v for k, v in result.metrics.items() if k not in estimates[NEW]}, **estimates[NEW]}
    }
    if CHAMPION in estimates:
        known[CHAMPION] = dict(estimates[CHAMPION])
    comparisons = compare_candidates(columns, CHAMPION, confidence=rule.confidence) if CHAMPION in columns else []
    decided = decide(
        known,
        comparisons,
        rule=rule,
        thresholds=thresholds,
        challengers=[NEW],
        baseline=baseline,
        rows=int(result.metrics["rows"]),
        rows_differ=rows_differ,
    )
    cost = {NEW: cost_per_1k((prices or {}).get(NEW), result.table, seconds)}
    record = decision_record(decided, estimates, comparisons, cost_per_1k=cost)
    record["model"] = {"name": model_name, "version": model_version, "alias": alias}
    record_path = write_decision(record, out)
    _log_intervals(result.run_id, estimates[NEW], record_path, tracking_uri)
    shown_plot = _decision_plot(estimates, cost, rule.primary, out, result.run_id, tracking_uri)
    promoted = bool(decided.promote and promote_on_pass and model_name and model_version)
    reasons = [decided.paragraph()]
    recorded = PromotionDecision(
        promoted, reasons if promoted or not decided.promote else ["not applied", *reasons], decided.action, decided.winner
    )
    if promoted and model_name:
        promote(
            model_name,
            str(model_version),
            alias=alias,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            run_id=result.run_id,
            decision=recorded,
        )
    else:
        record_decision(result.run_id, recorded, alias=alias, version=model_version, tracking_uri=tracking_uri)
    evaluation = Evaluation(
        result,
        decided,
        comparisons,
        estimates,
        champion,
        promoted,
        model_name,
        str(model_version) if model_version else None,
        alias,
        record,
        {NEW: result},
        decision_plot=shown_plot,
        baseline_tables=stored_tables,
    )
    evaluation.html_report = _html_report(evaluation, out, tracking_uri)
    return evaluation


def _decision_plot(
    estimates: Mapping[str, Any], costs: Mapping[str, float | None], primary: str, out: Path, run_id: str, tracking_uri: str
) -> Path:
    """The candidates' plot with intervals (:func:`~llmops_nb.evaluation.plot.plot_decision`), saved and logged to ``run_id``."""
    from mlflow import MlflowClient

    path = out / DECISION_PLOT
    plot_decision(estimates, costs, primary).savefig(path, dpi=100)
    MlflowClient(tracking_uri).log_artifact(run_id, str(path))
    return path


def _html_report(evaluation: Evaluation, out: Path, tracking_uri: str) -> Path:
    """``decision_report.html`` (:mod:`~llmops_nb.evaluation.html_report`) in ``out``, logged to the decision's run."""
    from mlflow import MlflowClient

    decision = evaluation.decision
    path = write_report(evaluation.record, decision.paragraph(), out, evaluation.disagreements, evaluation.decision_plot)
    MlflowClient(tracking_uri).log_artifact(evaluation.run_id, str(path))
    return path


def _parent_run(
    tracking_uri: str, experiment: str, run_name: str | None, tags: Mapping[str, str], params: Mapping[str, Any]
) -> tuple[str, str]:
    """The decision's MLflow run (the candidates' runs are its children): (experiment id, run id)."""
    return prepare_run(tracking_uri, experiment, run_name, {"llmops_nb.step": "evaluate-decision", **tags}, params)


def evaluate_candidates(
    w: WorkspaceClient,
    targets: Sequence[Target],
    rows: list[dict[str, Any]],
    *,
    model_name: str | None,
    thresholds: Mapping[str, float],
    decision: DecisionConfig | None = None,
    baseline: str | None = None,
    prices: Mapping[str, PriceConfig] | None = None,
    alias: str = "champion",
    promote_on_pass: bool = True,
    tracking_uri: str,
    registry_uri: str | None = None,
    experiment: str | None = None,
    concurrency: int = 8,
    resume_path: Path | None = None,
    output_dir: Path | None = None,
    **evaluate_kwargs: Any,
) -> Evaluation:
    """Ask every candidate the same ``rows`` at once (each under its own rate control), decide, maybe promote.

    One parent MLflow run holds the decision (tags, ``decision.json``); each candidate's
    evaluation is a child run (``mlflow.parentRunId``) named after it, so MLflow's run
    comparison view lines them up. ``baseline``: the candidate the others face (default: the
    one serving the champion's version, else the first). The winner takes ``alias`` when it is
    a registered version of ``model_name``.
    """
    from mlflow import MlflowClient

    rule = decision or DecisionConfig()
    if not targets:
        raise ConfigError("evaluation.candidates", [], "expected at least one candidate")
    if not evaluate_kwargs.get("judge_endpoint"):
        check_threshold_names(thresholds, KNOWN_METRICS)
    if not rows:
        raise ConfigError("rows", rows, "expected at least one dataset row")
    digest = dataset_digest(rows)  # checked whole before any request
    experiment = resolve_experiment(experiment, tracking_uri, w)
    champion = (
        find_champion(model_name, alias=alias, tracking_uri=tracking_uri, registry_uri=registry_uri) if model_name else None
    )
    names = [t.name for t in targets]
    if baseline is None:
        held = [t.name for t in targets if champion is not None and t.version == champion.version]
        baseline = held[0] if held else names[0]
    if baseline not in names:
        raise ConfigError("evaluation.baseline", baseline, f"the name of a candidate: {', '.join(names)}")
    out = Path(output_dir or tempfile.mkdtemp(prefix="llmops-eval-"))
    tags = dict(evaluate_kwargs.pop("tags", None) or {})
    if model_name:
        tags[TAG_MODEL_NAME] = model_name
    experiment_id, parent = _parent_run(
        tracking_uri,
        experiment,
        evaluate_kwargs.pop("run_name", None),
        tags,
        {"candidates": ",".join(names), "baseline": baseline, "dataset_digest": digest, "rows": len(rows), **rule.model_dump()},
    )

    def one(target: Target) -> tuple[EvalResult, float]:
        child_tags = {**tags, "mlflow.parentRunId": parent, "llmops_nb.candidate": target.name}
        if target.version:
            child_tags[TAG_MODEL_VERSION] = target.version
        started = time.perf_counter()
        result = evaluate_endpoint(
            w,
            target.endpoint,
            rows,
            served_entity=target.served_entity,
            concurrency=concurrency,
            limiter=AimdLimiter(concurrency),  # each candidate under its own rate control
            tracking_uri=tracking_uri,
            experiment=experiment,
            run_name=target.name,
            tags=child_tags,
            output_dir=out / target.name,
            resume_path=resume_path.with_name(f"{resume_path.stem}-{target.name}{resume_path.suffix}") if resume_path else None,
            **evaluate_kwargs,
        )
        return result, time.perf_counter() - started

    client = MlflowClient(tracking_uri)
    try:
        # one active experiment and one SQLite setting around all candidates: each evaluation's own
        # set-and-restore would race with the others' (the last to finish would restore a stale one)
        with (
            active_experiment(experiment_id),
            sqlite_safe_env(tracking_uri),
            ThreadPoolExecutor(len(targets), thread_name_prefix="candidate") as pool,
        ):
            done = dict(zip(names, pool.map(one, targets), strict=True))
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    results = {name: r for name, (r, _) in done.items()}
    columns = {name: row_columns(r.table) for name, r in results.items()}
    ids = {name: list(r.table["id"]) for name, r in results.items()}
    differ = next((n for n in names if ids[n] != ids[baseline]), None)
    estimates = {name: summarize(cols, rule.confidence) for name, cols in columns.items()}
    known: dict[str, dict[str, Any]] = {
        name: {**{k: v for k, v in results[name].metrics.items() if k not in estimates[name]}, **estimates[name]}
        for name in names
    }
    comparisons = compare_candidates(columns, baseline, confidence=rule.confidence)
    decided = decide(
        known,
        comparisons,
        rule=rule,
        thresholds=thresholds,
        challengers=[n for n in names if n != baseline],
        baseline=baseline,
        rows=len(rows),
        rows_differ=f"candidate {differ} answered other rows" if differ else "",
    )
    costs = {n: cost_per_1k((prices or {}).get(n), results[n].table, seconds) for n, (_, seconds) in done.items()}
    record = decision_record(decided, estimates, comparisons, cost_per_1k=costs)
    by_name = {t.name: t for t in targets}
    record["candidates"] = [
        {
            **c,
            "endpoint": by_name[c["name"]].endpoint,
            "served_entity": by_name[c["name"]].served_entity,
            "version": by_name[c["name"]].version,
            "run_id": results[c["name"]].run_id,
        }
        for c in record["candidates"]
    ]
    record["model"] = {"name": model_name, "alias": alias, "champion": champion.version if champion else None}
    record_path = write_decision(record, out)
    for name, r in results.items():
        _log_intervals(r.run_id, estimates[name], record_path, tracking_uri)
    winner = by_name.get(decided.winner or "")
    version = winner.version if winner else None
    promoted = bool(decided.promote and promote_on_pass and model_name and version)
    reasons = [decided.paragraph()]
    if decided.promote and not version:
        reasons.append(f"the winner {decided.winner} is not a registered version of {model_name}: nothing to alias")
    recorded = PromotionDecision(
        promoted, reasons if promoted or not decided.promote else ["not applied", *reasons], decided.action, decided.winner
    )
    if promoted and model_name and winner is not None and version:
        promote(
            model_name,
            version,
            alias=alias,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            run_id=results[winner.name].run_id,
            decision=recorded,
        )
    record_decision(parent, recorded, alias=alias, version=version, tracking_uri=tracking_uri)
    client.log_artifact(parent, str(record_path))
    shown_plot = _decision_plot(estimates, costs, rule.primary, out, parent, tracking_uri)
    shown = next((n for n in names if n != baseline), baseline)
    evaluation = Evaluation(
        results[shown],
        decided,
        comparisons,
        estimates,
        champion,
        promoted,
        model_name,
        version,
        alias,
        record,
        results,
        parent_run_id=parent,
        decision_plot=shown_plot,
    )
    evaluation.html_report = _html_report(evaluation, out, tracking_uri)
    client.set_terminated(parent, "FINISHED")
    return evaluation
