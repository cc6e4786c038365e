"""Evaluate an endpoint: query each dataset row once, score, log to MLflow, plot, gate.

:func:`evaluate_endpoint` sends every question to the endpoint concurrently (one request
per row), scores the answers with MLflow GenAI scorers (see :mod:`llmops_nb.scoring`),
and logs params, metrics, the per-row table (``eval_table.json``) and a plot to one MLflow
run. With ``resume_path`` each answered row is appended there as it arrives, so a killed
run can be resumed without asking those rows again. Gating and promotion live in
:mod:`llmops_nb.promotion` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llmops_nb import scoring
from llmops_nb.backends import resolve_experiment
from llmops_nb.client import ChatResult, chat_many, check_generation
from llmops_nb.datasets import dataset_digest, load_dataset
from llmops_nb.errors import ConfigError, QueryError
from llmops_nb.promotion import (
    Champion,
    Comparison,
    GateDecision,
    PromotionDecision,
    compare,
    decide,
    find_champion,
    gate,
    promote,
    record_decision,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from databricks.sdk import WorkspaceClient
    from matplotlib.figure import Figure

__all__ = [
    "EvalResult", "evaluate_endpoint", "plot_results", "aggregate", "load_dataset", "dataset_digest",
    "gate", "GateDecision", "compare", "Comparison", "decide", "PromotionDecision", "promote",
    "record_decision", "find_champion", "Champion", "Evaluation", "evaluate_and_promote", "KNOWN_METRICS",
]

DEFAULT_SYSTEM = "Answer with a single word or number."
TABLE_COLUMNS = ("id", "question", "expected", "answer", "exact_match", "contains_match", "response_length",
                 "latency_ms", "prompt_tokens", "completion_tokens", "tokens_per_second", "served_entity", "error")
TABLE_ARTIFACT = "eval_table.json"
# Every metric evaluate_endpoint reports (a judge adds its own, e.g. correctness/mean).
KNOWN_METRICS = ("rows", "error_rate", "exact_match", "exact_match/mean", "contains_match", "contains_match/mean",
                 "latency_p50_ms", "latency_p95_ms", "mean_completion_tokens", "tokens_per_second",
                 "latency_ms/mean", "completion_tokens/mean", "tokens_per_second/mean", "response_length/mean")
PLOT_ARTIFACT = "eval_plot.png"


@dataclass
class EvalResult:
    """What one evaluation produced: its MLflow run, metrics, per-row table and plot."""

    run_id: str
    metrics: dict[str, float]
    table: pd.DataFrame
    plot_path: Path
    dataset_digest: str
    queried: int
    figure: Figure | None = None


def table_row(row: dict[str, Any], result: ChatResult | QueryError) -> dict[str, Any]:
    """One result-table row (plus ``aliases``) for a dataset row and its answer or error."""
    ok = isinstance(result, ChatResult)
    answer = result.content if ok else ""
    return {
        "id": row["id"],
        "question": row["question"],
        "expected": row["expected"],
        "aliases": list(row.get("aliases", [])),
        "answer": answer,
        **scoring.score_answer(answer, row["expected"], row.get("aliases", [])),
        "latency_ms": result.latency_ms if ok else None,
        "prompt_tokens": result.prompt_tokens if ok else None,
        "completion_tokens": result.completion_tokens if ok else None,
        "tokens_per_second": scoring.tokens_per_second(result.completion_tokens, result.latency_ms) if ok else None,
        "served_entity": result.served_entity if ok else None,
        "error": None if ok else str(result),
    }


def _resume_key(endpoint: str, max_tokens: int, temperature: float, system: str | None) -> dict[str, Any]:
    return {"endpoint": endpoint, "max_tokens": max_tokens, "temperature": temperature, "system": system}


def read_resume(path: Path, rows: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Answered rows saved in ``path`` for the same question and settings, by id.

    Lines that do not parse (a run killed mid-write) or were made with other settings are ignored.
    """
    if not path.exists():
        return {}
    questions = {r["id"]: r["question"] for r in rows}
    done: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            saved = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(saved, dict) or saved.get("key") != key:
            continue
        row = saved.get("row") or {}
        if questions.get(row.get("id")) == row.get("question") and not row.get("error"):
            done[row["id"]] = row
    return done


def query_rows(
    w: WorkspaceClient,
    endpoint: str,
    rows: list[dict[str, Any]],
    *,
    concurrency: int,
    max_tokens: int,
    temperature: float,
    system: str | None,
    progress: bool,
    resume_path: Path | None,
) -> tuple[list[dict[str, Any]], int]:
    """(table rows in dataset order, how many were queried now): each missing row asked once."""
    key = _resume_key(endpoint, max_tokens, temperature, system)
    done = read_resume(Path(resume_path), rows, key) if resume_path else {}
    pending = [r for r in rows if r["id"] not in done]
    sink = None
    if resume_path and pending:
        Path(resume_path).parent.mkdir(parents=True, exist_ok=True)
        sink = open(resume_path, "a", encoding="utf-8")  # noqa: SIM115 (closed below)

    def on_result(i: int, result: ChatResult | QueryError) -> None:
        done[pending[i]["id"]] = entry = table_row(pending[i], result)
        if sink is not None and entry["error"] is None:
            sink.write(json.dumps({"key": key, "row": entry}) + "\n")
            sink.flush()

    try:
        if pending:
            chat_many(w, endpoint, [r["question"] for r in pending], concurrency=concurrency, progress=progress,
                      on_result=on_result, max_tokens=max_tokens, temperature=temperature, system=system)
    finally:
        if sink is not None:
            sink.close()
    return [done[r["id"]] for r in rows], len(pending)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (as numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def aggregate(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Run-level metrics; a failed row scores 0 on matches and is left out of latency and tokens."""
    ok = [r for r in rows if not r["error"]]
    latencies = [float(r["latency_ms"]) for r in ok]
    tokens = [float(r["completion_tokens"]) for r in ok]
    rates = [float(r["tokens_per_second"]) for r in ok if r["tokens_per_second"] is not None]
    metrics = {
        "rows": float(len(rows)),
        "error_rate": (len(rows) - len(ok)) / len(rows) if rows else math.nan,
        "latency_p50_ms": _quantile(latencies, 0.5),
        "latency_p95_ms": _quantile(latencies, 0.95),
        "mean_completion_tokens": _mean(tokens),
        "tokens_per_second": sum(tokens) / (sum(latencies) / 1000) if sum(latencies) > 0 else math.nan,
        "latency_ms/mean": _mean(latencies),
        "completion_tokens/mean": _mean(tokens),
        "tokens_per_second/mean": _mean(rates),
        "response_length/mean": _mean([float(r["response_length"]) for r in rows]),
    }
    for name in ("exact_match", "contains_match"):
        metrics[name] = metrics[f"{name}/mean"] = _mean([float(r[name]) for r in rows])
    return metrics


def _use_headless_backend() -> None:
    """Agg when nothing can show a window (no display, no notebook kernel, no choice made)."""
    import matplotlib

    if ("matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND")
            and "ipykernel" not in sys.modules and not os.environ.get("DISPLAY")):
        matplotlib.use("Agg")


def plot_results(table: pd.DataFrame) -> Figure:
    """Match rates (bars) and the latency histogram, side by side."""
    _use_headless_backend()
    import matplotlib.pyplot as plt

    fig, (scores, latency) = plt.subplots(1, 2, figsize=(10, 3.6))
    # Fixed margins rather than tight_layout(), which draws the whole figure once more (~0.1 s).
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.91, wspace=0.18)
    plt.close(fig)  # returned, not auto-shown: a notebook displays it once
    names = ["exact_match", "contains_match"]
    means = [float(table[n].mean()) if len(table) else 0.0 for n in names]
    bars = scores.bar(["exact match", "contains match"], means, color=["#4C72B0", "#55A868"])
    scores.bar_label(bars, labels=[f"{m:.0%}" for m in means])
    scores.set_ylim(0, 1.1)
    scores.set_title(f"Answer scores ({len(table)} rows)")
    ok = table[table["error"].isna()]["latency_ms"].astype(float)
    latency.hist(ok, bins=min(20, max(1, len(ok))), color="#8172B3")
    if len(ok):
        latency.axvline(ok.median(), color="black", linestyle="--", label=f"p50 {ok.median():.0f} ms")
        latency.legend()
    errors = int(table["error"].notna().sum())
    latency.set_title("Latency per request" + (f" ({errors} failed)" if errors else ""))
    latency.set_xlabel("ms")
    latency.set_ylabel("requests")
    return fig


def _experiment(name: str, tracking_uri: str) -> str:
    """The experiment id; created with artifacts next to a SQLite file, wherever the cwd is."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if urlparse(tracking_uri).scheme == "sqlite":
        root = Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
        location = (root / re.sub(r"[^\w.-]", "_", name)).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def _active_experiment(experiment_id: str) -> Iterator[None]:
    """Make ``experiment_id`` mlflow's active experiment, then restore the caller's.

    genai.evaluate writes its traces to the active experiment, not the active run's; left
    set, it would break the caller's next run on another tracking store.
    """
    import mlflow
    from mlflow.tracking import fluent

    before, env = fluent._active_experiment_id, os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        fluent._active_experiment_id = before
        if env is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = env


def _log_mlflow_scores(rows: list[dict[str, Any]], tracking_uri: str, judge_endpoint: str | None) -> dict[str, float]:
    """Scores from mlflow.genai.evaluate, or {} (with a warning tag) if it fails."""
    import mlflow

    try:
        return scoring.run_mlflow_scorers([scoring.mlflow_record(r) for r in rows], tracking_uri, judge_endpoint)
    except Exception as exc:  # noqa: BLE001 - the answers are already in; keep our own scores
        mlflow.set_tag("llmops_nb.mlflow_scoring", f"failed: {exc}".splitlines()[0][:500])
        return {}


def _prepare_run(tracking_uri: str, experiment: str, run_name: str | None, tags: Mapping[str, str],
                 params: Mapping[str, Any]) -> tuple[str, str]:
    """(experiment id, run id) of a new RUNNING run with ``params``; warms pandas and matplotlib."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.tracking.context.registry import resolve_tags

    import pandas  # noqa: F401 - imported here, off the critical path

    _use_headless_backend()
    import matplotlib.pyplot  # noqa: F401

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = _experiment(experiment, tracking_uri)
    client = MlflowClient(tracking_uri)
    # resolve_tags adds what mlflow.start_run records (source, user, git commit)
    run = client.create_run(experiment_id, run_name=run_name, tags=resolve_tags(dict(tags)))
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return experiment_id, run.info.run_id


def _end_prepared(prepared: Any, tracking_uri: str, status: str) -> None:
    """Mark the run made by :func:`_prepare_run` ``status`` (once it exists), quietly."""
    from mlflow import MlflowClient

    try:
        _, run_id = prepared.result()
        MlflowClient(tracking_uri).set_terminated(run_id, status)
    except Exception:  # noqa: BLE001 - the querying error is the one to report
        pass


def evaluate_endpoint(
    w: WorkspaceClient,
    endpoint: str,
    rows: list[dict[str, Any]],
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
) -> EvalResult:
    """Query each row once (``concurrency`` at a time), score, and log everything to one MLflow run.

    A row that fails after retries is kept with its error (``error_rate``); with
    ``resume_path`` answered rows are saved as they arrive and not asked again on a rerun.
    ``mlflow_scoring`` runs the scorers through ``mlflow.genai.evaluate`` (per-row
    assessments in the MLflow UI); the metrics are the same either way. ``experiment``: None is
    ``llmops-nb`` locally and ``/Users/<current user of w>/llmops-nb`` on Databricks.
    """
    import mlflow

    if not rows:
        raise ConfigError("rows", rows, "expected at least one dataset row")
    experiment = resolve_experiment(experiment, tracking_uri, w)
    digest = dataset_digest(rows)
    check_generation(max_tokens, temperature)
    run_tags = {"llmops_nb.step": "evaluate", "llmops_nb.endpoint": endpoint, **(tags or {})}
    run_params = {"endpoint": endpoint, "concurrency": concurrency, "max_tokens": max_tokens,
                  "temperature": temperature, "dataset_digest": digest, "rows": len(rows),
                  "judge_endpoint": judge_endpoint or "", **(params or {})}
    # The MLflow run is created while the endpoint answers (the querying waits on the network).
    with ThreadPoolExecutor(1, thread_name_prefix="mlflow-run") as pool:
        prepared = pool.submit(_prepare_run, tracking_uri, experiment, run_name, run_tags, run_params)
        started = time.perf_counter()
        try:
            answered, queried = query_rows(w, endpoint, rows, concurrency=concurrency, max_tokens=max_tokens,
                                           temperature=temperature, system=system, progress=progress,
                                           resume_path=Path(resume_path) if resume_path else None)
        except BaseException:
            _end_prepared(prepared, tracking_uri, "FAILED")
            raise
        query_seconds = time.perf_counter() - started
        experiment_id, run_id = prepared.result()
    metrics = aggregate(answered)

    import pandas as pd

    table = pd.DataFrame(answered, columns=list(TABLE_COLUMNS))
    figure = plot_results(table)
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="llmops-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    plot_path = out / PLOT_ARTIFACT
    figure.savefig(plot_path, dpi=100)

    mlflow.set_tracking_uri(tracking_uri)
    with _active_experiment(experiment_id), mlflow.start_run(run_id=run_id) as run:
        mlflow.log_param("resumed_rows", len(rows) - queried)
        logged = _log_mlflow_scores(answered, tracking_uri, judge_endpoint) if mlflow_scoring else {}
        extra = {k: v for k, v in logged.items() if k not in metrics}
        metrics.update(extra)
        mlflow.log_metrics({k: v for k, v in metrics.items()
                            if not (k in logged and math.isclose(logged[k], v, rel_tol=1e-9))
                            and k not in extra})
        mlflow.log_metric("query_seconds", query_seconds)
        mlflow.log_table(data=table, artifact_file=TABLE_ARTIFACT)
        mlflow.log_artifact(str(plot_path))
    return EvalResult(run.info.run_id, metrics, table, plot_path, digest, queried, figure)


@dataclass
class Evaluation:
    """An evaluation and what it decided: what the evaluate notebook shows and publishes."""

    result: EvalResult
    gate: GateDecision
    comparison: Comparison | None
    champion: Champion | None
    decision: PromotionDecision
    promoted: bool
    model_name: str | None
    model_version: str | None
    alias: str

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics

    @property
    def figure(self) -> Figure | None:
        return self.result.figure

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table

    @property
    def comparison_table(self) -> pd.DataFrame | None:
        """Champion vs candidate side by side, or None when there is no champion to compare with."""
        return self.comparison.table if self.comparison else None

    def report(self) -> str:
        """Human-readable: metrics, each threshold, the comparison, and the decision."""
        m = self.metrics
        lines = [
            f"MLflow run {self.run_id}: {int(m['rows'])} rows ({self.result.queried} queried now), "
            f"exact {m['exact_match']:.1%}, contains {m['contains_match']:.1%}, errors {m['error_rate']:.1%}, "
            f"latency p50 {m['latency_p50_ms']:.0f} ms / p95 {m['latency_p95_ms']:.0f} ms",
            "Gate:", *(f"  {line}" for line in self.gate.summary()),
        ]
        if self.comparison is not None and self.champion is not None:
            lines += [f"Versus champion (version {self.champion.version}):",
                      *(f"  {line}" for line in self.comparison.summary())]
        target = f"{self.model_name} version {self.model_version}" if self.model_version else "this model"
        verdict = (f"PROMOTED: alias '{self.alias}' -> {target}" if self.promoted
                   else f"promotion allowed, but not applied (promote=False or no version) for {target}"
                   if self.decision.promote else f"NOT promoted: {target} keeps its aliases")
        return "\n".join([*lines, verdict, *(f"  {r}" for r in self.decision.reasons)])


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
        tags["llmops_nb.model_name"] = model_name
    if model_version:
        tags["llmops_nb.model_version"] = str(model_version)
    result = evaluate_endpoint(w, endpoint, rows, tracking_uri=tracking_uri, tags=tags, **evaluate_kwargs)
    gate_decision = gate(result.metrics, thresholds)
    comparison = None
    if champion is not None and champion.version != str(model_version):
        comparison = compare(result.metrics, champion.metrics, margin,
                             candidate_digest=result.dataset_digest, champion_digest=champion.dataset_digest)
    decision = decide(gate_decision, comparison)
    promoted = bool(decision.promote and promote_on_pass and model_name and model_version)
    if promoted:
        promote(model_name, str(model_version), alias=alias, tracking_uri=tracking_uri,  # type: ignore[arg-type]
                registry_uri=registry_uri, run_id=result.run_id, decision=decision)
    else:
        record_decision(result.run_id, PromotionDecision(False, decision.reasons) if not decision.promote
                        else PromotionDecision(False, ["not applied", *decision.reasons]),
                        alias=alias, version=model_version, tracking_uri=tracking_uri)
    return Evaluation(result, gate_decision, comparison, champion, decision, promoted, model_name,
                      str(model_version) if model_version else None, alias)
