"""Evaluate an endpoint: query each dataset row once, score, log to MLflow, plot, gate.

:func:`evaluate_endpoint` sends every question to the endpoint concurrently (one request
per row, 429s under one AIMD limiter), scores each answer as it arrives and hands it to the
bookkeeping thread (:mod:`llmops_nb.bookkeeping`: the rows file, running metrics, traces
with assessments for the rows that matter), and logs params, metrics, the per-row table
(``eval_table.json``, ``eval_rows.jsonl``) and a plot to one MLflow run. With
``resume_path`` each row is noted there when asked and when answered, so a killed run can be
resumed without asking the answered rows again. Gating and promotion live in
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llmops_nb import scoring
from llmops_nb.backends import resolve_experiment
from llmops_nb.bookkeeping import ROWS_ARTIFACT, Bookkeeper, RunningMetrics
from llmops_nb.client import ChatResult, chat_iter, check_generation
from llmops_nb.datasets import check_row, dataset_digest, load_dataset
from llmops_nb.errors import ConfigError, QueryError
from llmops_nb.ratecontrol import AimdLimiter
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
    reasked: int = 0  # rows in flight when a previous run stopped, asked again


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


@dataclass
class SavedAnswers:
    """What a resume file holds for one evaluation's settings: answers by id, rows asked but unanswered."""

    answers: dict[str, dict[str, Any]]
    in_flight: set[str]


def read_saved(path: Path, key: dict[str, Any]) -> SavedAnswers:
    """Answered rows saved in ``path`` for the same settings, and the ids asked with no outcome.

    An id asked (an ``asking`` line) with neither an answer nor a failure was in flight
    when that run stopped. Lines that do not parse (a run killed mid-write) or were made
    with other settings are ignored.
    """
    answers: dict[str, dict[str, Any]] = {}
    asking: set[str] = set()
    settled: set[str] = set()
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    saved = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(saved, dict) or saved.get("key") != key:
                    continue
                if "asking" in saved:
                    asking.add(str(saved["asking"]))
                elif "failed" in saved:
                    settled.add(str(saved["failed"]))
                elif isinstance(row := saved.get("row"), dict) and "id" in row and not row.get("error"):
                    answers[row["id"]] = row
    return SavedAnswers(answers, asking - settled - set(answers))


def read_resume(path: Path, rows: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Answered rows saved in ``path`` for the same question and settings, by id."""
    questions = {r["id"]: r["question"] for r in rows}
    return {i: r for i, r in read_saved(Path(path), key).answers.items() if questions.get(i) == r.get("question")}


@dataclass
class Asked:
    """How the rows of one evaluation were answered."""

    rows: int = 0
    queried: int = 0
    resumed: int = 0
    reasked: int = 0  # rows in flight when a previous run stopped, asked again now


def stream_rows(
    w: WorkspaceClient,
    endpoint: str,
    rows: Iterable[dict[str, Any]],
    on_row: Callable[[int, dict[str, Any]], None],
    *,
    concurrency: int,
    max_tokens: int,
    temperature: float,
    system: str | None,
    progress: bool,
    resume_path: Path | None,
    check: Callable[[int, dict[str, Any]], None] | None = None,
    limiter: AimdLimiter | None = None,
) -> Asked:
    """Ask each row (read lazily from ``rows``) once; ``on_row(position, table row)`` as each is done.

    With ``resume_path``, a row answered by an earlier run with the same settings is handed
    over without asking, and every row is written there as it is asked and as it is
    answered (flushed), so a run killed at any point re-asks only the rows then in flight.
    """
    from tqdm.auto import tqdm

    key = _resume_key(endpoint, max_tokens, temperature, system)
    saved = read_saved(Path(resume_path), key) if resume_path else SavedAnswers({}, set())
    sink = None
    if resume_path:
        Path(resume_path).parent.mkdir(parents=True, exist_ok=True)
        sink = open(resume_path, "a", encoding="utf-8")  # noqa: SIM115 (closed below)

    def note(line: dict[str, Any]) -> None:
        if sink is not None:
            sink.write(json.dumps({"key": key, **line}) + "\n")
            sink.flush()

    asked = Asked()
    in_flight: dict[int, tuple[int, dict[str, Any]]] = {}

    def questions() -> Iterator[str]:
        for position, row in enumerate(rows):
            if check is not None:
                check(position, row)
            asked.rows += 1
            old = saved.answers.pop(row["id"], None)
            if old is not None and old.get("question") == row["question"]:
                asked.resumed += 1
                on_row(position, old)
                continue
            asked.reasked += row["id"] in saved.in_flight
            in_flight[asked.queried] = (position, row)
            asked.queried += 1
            note({"asking": row["id"]})
            yield row["question"]

    total = len(rows) if isinstance(rows, Sized) else None
    try:
        with tqdm(total=total, desc=f"querying {endpoint}", disable=not progress) as bar:
            for k, result in chat_iter(w, endpoint, questions(), concurrency=concurrency, limiter=limiter,
                                       max_tokens=max_tokens, temperature=temperature, system=system):
                position, row = in_flight.pop(k)
                entry = table_row(row, result)
                note({"row": entry} if entry["error"] is None else {"failed": row["id"]})
                on_row(position, entry)
                bar.update(asked.resumed + asked.queried - len(in_flight) - bar.n)  # resumed + answered
    finally:
        if sink is not None:
            sink.close()
    return asked


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
    done: list[dict[str, Any] | None] = [None] * len(rows)
    asked = stream_rows(w, endpoint, rows, done.__setitem__, concurrency=concurrency, max_tokens=max_tokens,
                        temperature=temperature, system=system, progress=progress, resume_path=resume_path)
    return done, asked.queried  # type: ignore[return-value]


def aggregate(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Run-level metrics; a failed row scores 0 on matches and is left out of latency and tokens."""
    running = RunningMetrics()
    for row in rows:
        running.add(row)
    return running.metrics()


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

    sized = isinstance(rows, Sequence)
    if sized and not rows:
        raise ConfigError("rows", rows, "expected at least one dataset row")
    experiment = resolve_experiment(experiment, tracking_uri, w)
    streamed = None if sized else StreamDigest()
    digest = dataset_digest(rows) if sized else ""  # a list is checked whole before any request
    check_generation(max_tokens, temperature)
    run_tags = {"llmops_nb.step": "evaluate", "llmops_nb.endpoint": endpoint, **(tags or {})}
    run_params = {"endpoint": endpoint, "concurrency": concurrency, "max_tokens": max_tokens,
                  "temperature": temperature, "judge_endpoint": judge_endpoint or "", **(params or {})}
    if sized:
        run_params.update(dataset_digest=digest, rows=len(rows))
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="llmops-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    limiter = AimdLimiter(concurrency) if isinstance(concurrency, int) and concurrency >= 1 else None
    # The MLflow run is created while the endpoint answers; each row's bookkeeping (the rows
    # file, running metrics, traces of the rows that matter) runs in a thread as it arrives.
    with ThreadPoolExecutor(1, thread_name_prefix="mlflow-run") as pool:
        prepared = pool.submit(_prepare_run, tracking_uri, experiment, run_name, run_tags, run_params)
        keeper = Bookkeeper(out / ROWS_ARTIFACT, run=prepared.result if mlflow_scoring else None,
                            trace_rows=trace_rows)
        started = time.perf_counter()
        try:
            with scoring.sqlite_safe_env(tracking_uri):
                asked = stream_rows(w, endpoint, rows, keeper.put, concurrency=concurrency, max_tokens=max_tokens,
                                    temperature=temperature, system=system, progress=progress,
                                    resume_path=Path(resume_path) if resume_path else None,
                                    check=streamed.add if streamed else None, limiter=limiter)
                running = keeper.close()
            if not asked.rows:
                raise ConfigError("rows", [], "expected at least one dataset row")
        except BaseException:
            with contextlib.suppress(BaseException):
                keeper.close()
            _end_prepared(prepared, tracking_uri, "FAILED")
            raise
        query_seconds = time.perf_counter() - started
        experiment_id, run_id = prepared.result()
    metrics = running.metrics()
    digest = digest or streamed.hexdigest()  # type: ignore[union-attr]

    table = read_table(out / ROWS_ARTIFACT)
    figure = plot_results(table)
    plot_path = out / PLOT_ARTIFACT
    figure.savefig(plot_path, dpi=100)

    mlflow.set_tracking_uri(tracking_uri)
    with _active_experiment(experiment_id), mlflow.start_run(run_id=run_id) as run:
        late = {"resumed_rows": asked.resumed, "reasked_in_flight": asked.reasked}
        if not sized:
            late.update(dataset_digest=digest, rows=asked.rows)
        mlflow.log_params(late)
        if judge_endpoint:
            metrics.update(_judge(out / ROWS_ARTIFACT, judge_endpoint, concurrency, limiter))
        if keeper.trace_failures:
            mlflow.set_tag("llmops_nb.mlflow_scoring", f"{len(keeper.trace_failures)} row traces failed: "
                           f"{keeper.trace_failures[0]}"[:500])
        mlflow.log_metrics({**metrics, "query_seconds": query_seconds, "traced_rows": keeper.traced})
        mlflow.log_table(data=table, artifact_file=TABLE_ARTIFACT)
        mlflow.log_artifact(str(plot_path))
        mlflow.log_artifact(str(out / ROWS_ARTIFACT))
    return EvalResult(run.info.run_id, metrics, table, plot_path, digest, asked.queried, figure, asked.reasked)


class StreamDigest:
    """:func:`llmops_nb.datasets.dataset_digest` of rows seen one at a time (each checked)."""

    def __init__(self) -> None:
        import hashlib

        self._hash = hashlib.sha256(b"[")
        self._ids: set[str] = set()

    def add(self, position: int, row: dict[str, Any]) -> None:
        checked = check_row(row, f"rows[{position}]")
        if checked["id"] in self._ids:
            raise ConfigError(f"rows[{position}].id", checked["id"], "ids must be unique in a dataset")
        self._ids.add(checked["id"])
        canonical = json.dumps(checked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._hash.update(("," if len(self._ids) > 1 else "").encode() + canonical.encode("utf-8"))

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(b"]")
        return final.hexdigest()


def read_table(path: Path) -> pd.DataFrame:
    """The per-row table (dataset order) from a rows file written by the bookkeeping."""
    import pandas as pd

    with path.open(encoding="utf-8") as lines:
        rows = sorted((json.loads(line) for line in lines), key=lambda r: r["position"])
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _judge(rows_path: Path, judge_endpoint: str, concurrency: int, limiter: AimdLimiter | None) -> dict[str, float]:
    """The judge's metrics over the answered rows, its calls under the same limiter as the endpoint's."""
    with rows_path.open(encoding="utf-8") as lines:
        rows = (json.loads(line) for line in lines)
        return scoring.judge_rows(rows, judge_endpoint, concurrency=concurrency,
                                  limiter=limiter or AimdLimiter(max(1, int(concurrency))))


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
            *([f"{self.result.reasked} row(s) were in flight when the previous run stopped: asked again"]
              if self.result.reasked else []),
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
