"""Evaluate an endpoint, then gate and maybe promote: the evaluation's phases in order.

:func:`evaluate_endpoint`: check the input, create the MLflow run while the endpoint
answers (:mod:`~llmops_nb.evaluation.mlflow_run`), ask each row once
(:mod:`~llmops_nb.evaluation.asking`) with each answer's bookkeeping done as it arrives
(:mod:`~llmops_nb.evaluation.bookkeeping`), then plot (:mod:`~llmops_nb.evaluation.plot`), judge if
asked (:mod:`~llmops_nb.evaluation.scorers`) and log. :func:`evaluate_and_promote` adds
the gate, the comparison with the champion and the alias move (:mod:`llmops_nb.evaluation.promotion`).
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
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.asking import DEFAULT_SYSTEM, stream_rows
from llmops_nb.evaluation.bookkeeping import ROWS_ARTIFACT, Bookkeeper
from llmops_nb.evaluation.datasets import dataset_digest
from llmops_nb.evaluation.metrics import KNOWN_METRICS
from llmops_nb.evaluation.mlflow_run import end_prepared, log_outputs, prepare_run, reopened_run
from llmops_nb.evaluation.plot import PLOT_ARTIFACT, plot_results
from llmops_nb.evaluation.promotion import (
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    PromotionDecision,
    compare,
    decide,
    find_champion,
    gate,
    promote,
    record_decision,
)
from llmops_nb.evaluation.report import EvalResult, Evaluation
from llmops_nb.evaluation.rows import StreamDigest, read_table
from llmops_nb.evaluation.scorers import judge_rows_file, sqlite_safe_env
from llmops_nb.tracking.uris import resolve_experiment

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient


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
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "judge_endpoint": judge_endpoint or "",
        **(params or {}),
    }
    if listed is not None:
        run_params.update(dataset_digest=digest, rows=len(listed))
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="llmops-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    limiter = AimdLimiter(concurrency) if isinstance(concurrency, int) and concurrency >= 1 else None
    # The MLflow run is created while the endpoint answers; each row's bookkeeping (the rows
    # file, running metrics, traces of the rows that matter) runs in a thread as it arrives.
    with ThreadPoolExecutor(1, thread_name_prefix="mlflow-run") as pool:
        prepared = pool.submit(prepare_run, tracking_uri, experiment, run_name, run_tags, run_params)
        keeper = Bookkeeper(out / ROWS_ARTIFACT, run=prepared.result if mlflow_scoring else None, trace_rows=trace_rows)
        started = time.perf_counter()
        try:
            with sqlite_safe_env(tracking_uri):
                asked = stream_rows(
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


def evaluate_and_promote(
    w: WorkspaceClient,
    endpoint: str,
    rows: list[dict[str, Any]],
    *,
    model_name: str | None,
    model_version: str | None,
    thresholds: Mapping[str, float],
    margin: float = 0.02,
    alias: str = "champion",
    promote_on_pass: bool = True,
    tracking_uri: str,
    registry_uri: str | None = None,
    **evaluate_kwargs: Any,
) -> Evaluation:
    """Evaluate, gate on ``thresholds``, compare with the current ``alias`` holder, maybe move the alias.

    Thresholds are checked before any request (a threshold on an unknown metric fails
    fast). The comparison is skipped when there is no champion or the candidate is the
    champion. The decision is always recorded as tags on the evaluation run.
    """
    if not evaluate_kwargs.get("judge_endpoint"):  # a judge adds metrics only known afterwards
        gate(dict.fromkeys(KNOWN_METRICS, 0.0), thresholds)  # unknown names fail before any request
    champion = None
    if model_name:
        champion = find_champion(model_name, alias=alias, tracking_uri=tracking_uri, registry_uri=registry_uri)
    tags = dict(evaluate_kwargs.pop("tags", None) or {})
    if model_name:
        tags[TAG_MODEL_NAME] = model_name
    if model_version:
        tags[TAG_MODEL_VERSION] = str(model_version)
    result = evaluate_endpoint(w, endpoint, rows, tracking_uri=tracking_uri, tags=tags, **evaluate_kwargs)
    gate_decision = gate(result.metrics, thresholds)
    comparison = None
    if champion is not None and champion.version != str(model_version):
        comparison = compare(
            result.metrics,
            champion.metrics,
            margin,
            candidate_digest=result.dataset_digest,
            champion_digest=champion.dataset_digest,
        )
    decision = decide(gate_decision, comparison)
    promoted = bool(decision.promote and promote_on_pass and model_name and model_version)
    if promoted and model_name:
        promote(
            model_name,
            str(model_version),
            alias=alias,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            run_id=result.run_id,
            decision=decision,
        )
    else:
        record_decision(
            result.run_id,
            PromotionDecision(False, decision.reasons)
            if not decision.promote
            else PromotionDecision(False, ["not applied", *decision.reasons]),
            alias=alias,
            version=model_version,
            tracking_uri=tracking_uri,
        )
    return Evaluation(
        result,
        gate_decision,
        comparison,
        champion,
        decision,
        promoted,
        model_name,
        str(model_version) if model_version else None,
        alias,
    )
