"""The answer metrics as MLflow GenAI scorers, and the optional LLM judge.

:func:`mlflow_scorers` wraps :mod:`llmops_nb.evaluation.metrics` as ``mlflow.genai``
``@scorer`` objects and :func:`run_mlflow_scorers` runs them with ``mlflow.genai.evaluate``
over precomputed answers (no predict_fn: the endpoint was already queried once per row). No
scorer needs an LLM or a download; the optional judge (:func:`judge_rows`) scores with a
serving endpoint (``endpoints:/<name>``), never a default provider. mlflow is imported
inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops_nb.chat.ratecontrol import AimdLimiter
from llmops_nb.evaluation.metrics import contains_match, exact_match, response_length, tokens_per_second
from llmops_nb.evaluation.statistics import kappa

__all__ = [
    "SCORERS",
    "SQLITE_EVAL_ENV",
    "judge_rows",
    "judge_rows_file",
    "mlflow_record",
    "mlflow_scorers",
    "run_mlflow_scorers",
    "sqlite_safe_env",
]

SCORERS = ("exact_match", "contains_match", "response_length", "latency_ms", "completion_tokens", "tokens_per_second")

# mlflow.genai.evaluate defaults (10 workers, async trace export) exhaust SQLAlchemy's
# connection pool on a SQLite store: traces time out after 30 s and are dropped.
SQLITE_EVAL_ENV = {
    "MLFLOW_GENAI_EVAL_MAX_WORKERS": "2",
    "MLFLOW_GENAI_EVAL_MAX_SCORER_WORKERS": "1",
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
}


def mlflow_record(row: dict[str, Any]) -> dict[str, Any]:
    """An ``mlflow.genai.evaluate`` data row from a result-table row."""
    return {
        "inputs": {"question": row["question"]},
        "outputs": {
            "answer": row["answer"],
            "error": row["error"],
            "latency_ms": row["latency_ms"],
            "completion_tokens": row["completion_tokens"],
        },
        "expectations": {"expected_response": row["expected"], "aliases": list(row["aliases"])},
    }


def mlflow_scorers(judge_endpoint: str | None = None) -> list[Any]:
    """The scorers as ``mlflow.genai`` scorer objects (plus a Correctness judge if asked)."""
    from mlflow.genai.scorers import scorer

    def expected(expectations: dict[str, Any]) -> tuple[str, list[str]]:
        return expectations["expected_response"], expectations.get("aliases") or []

    @scorer(name="exact_match")
    def _exact(outputs: dict[str, Any], expectations: dict[str, Any]) -> float:
        return exact_match(outputs["answer"], *expected(expectations))

    @scorer(name="contains_match")
    def _contains(outputs: dict[str, Any], expectations: dict[str, Any]) -> float:
        return contains_match(outputs["answer"], *expected(expectations))

    @scorer(name="response_length")
    def _length(outputs: dict[str, Any]) -> int:
        return response_length(outputs["answer"])

    @scorer(name="latency_ms")
    def _latency(outputs: dict[str, Any]) -> float | None:
        return outputs["latency_ms"]

    @scorer(name="completion_tokens")
    def _tokens(outputs: dict[str, Any]) -> int | None:
        return outputs["completion_tokens"]

    @scorer(name="tokens_per_second")
    def _tps(outputs: dict[str, Any]) -> float | None:
        return tokens_per_second(outputs["completion_tokens"], outputs["latency_ms"])

    scorers = [_exact, _contains, _length, _latency, _tokens, _tps]
    if judge_endpoint:
        from mlflow.genai.scorers import Correctness

        scorers.append(Correctness(model=f"endpoints:/{judge_endpoint}"))
    return scorers


@contextlib.contextmanager
def sqlite_safe_env(tracking_uri: str) -> Iterator[None]:
    """Apply :data:`SQLITE_EVAL_ENV` (unless the user set those variables) for a SQLite store."""
    changed = {}
    if tracking_uri.startswith("sqlite:"):
        changed = {k: v for k, v in SQLITE_EVAL_ENV.items() if k not in os.environ}
    os.environ.update(changed)
    try:
        yield
    finally:
        for key in changed:
            os.environ.pop(key, None)


def run_mlflow_scorers(records: list[dict[str, Any]], tracking_uri: str, judge_endpoint: str | None = None) -> dict[str, float]:
    """Run ``mlflow.genai.evaluate`` in the active run; return the metrics it logged."""
    import mlflow

    with sqlite_safe_env(tracking_uri):
        result = mlflow.genai.evaluate(data=records, scorers=mlflow_scorers(judge_endpoint))
    return {k: float(v) for k, v in result.metrics.items()}


def _judge_429(exc: BaseException) -> float | None:
    """Seconds to wait if a judge call failed with 429 (MLflow's own 429 retry is off), else None."""
    text = f"{exc}"
    if "429" in text or "REQUEST_LIMIT_EXCEEDED" in text or "RATE_LIMIT" in text.upper():
        return float(getattr(exc, "retry_after_secs", None) or 1.0)
    return None


def _databricks_deployments_target() -> None:
    """Point MLflow's ``endpoints:/`` judges at the Databricks serving API unless a target is set.

    Without a target ``get_deploy_client()`` returns None and every judge call fails
    (``mlflow/metrics/genai/model_utils.py``, ``get_endpoint_type``). Our endpoints speak the
    Databricks serving-endpoints API, reached with DATABRICKS_HOST/DATABRICKS_TOKEN
    (``mlflow/deployments/databricks``), on Databricks and on the local or fake workspace.
    """
    from mlflow.deployments import get_deployments_target, set_deployments_target
    from mlflow.exceptions import MlflowException

    try:
        get_deployments_target()
    except MlflowException:
        set_deployments_target("databricks")


def judge_rows(rows: Iterator[dict[str, Any]], judge_endpoint: str, *, concurrency: int, limiter: Any) -> dict[str, float]:
    """The Correctness judge (``endpoints:/<judge_endpoint>``) on each answered row, at most
    ``concurrency`` at once, its 429s through ``limiter`` (the endpoint calls' AIMD policy).

    Returns ``correctness/mean`` (share of rows judged correct; a failed row counts as not),
    ``correctness/errors`` (judge calls that failed for another reason) and
    ``correctness/kappa_contains_match`` with its interval: Cohen's kappa of the judge's verdicts
    against ``contains_match`` on the same rows (:func:`~llmops_nb.evaluation.statistics.kappa`).
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.genai.scorers import Correctness
    from mlflow.utils.rest_utils import disable_429_retry

    _databricks_deployments_target()
    judge = Correctness(model=f"endpoints:/{judge_endpoint}")

    def one(row: dict[str, Any]) -> float | None:
        if row["error"]:
            return 0.0

        def ask() -> Any:
            with disable_429_retry():  # the 429 reaches the limiter, which waits and asks again
                feedback = judge(
                    inputs={"question": row["question"]},
                    outputs=row["answer"],
                    expectations={"expected_response": row["expected"]},
                )
            if getattr(feedback, "error", None) is not None and _judge_429(Exception(feedback.error)) is not None:
                raise RuntimeError(f"429 {feedback.error}")
            return feedback

        try:
            feedback = limiter.call(ask, retry_after_of=_judge_429)
        except Exception:  # noqa: BLE001 - counted as a judge error
            return None
        value = str(getattr(feedback, "value", "")).lower()
        return None if getattr(feedback, "error", None) is not None else float(value in ("yes", "true", "1"))

    labels: list[float] = []

    def labelled(row: dict[str, Any]) -> dict[str, Any]:
        labels.append(float(row.get("contains_match") or 0.0))
        return row

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="judge") as pool:
        scores = list(pool.map(one, (labelled(r) for r in rows)))
    judged = [s for s in scores if s is not None]
    # the judge's agreement with the labelled metric on the same rows: does the judge deserve trust?
    agreement = kappa([math.nan if s is None else s for s in scores], labels)
    return {
        "correctness/mean": sum(judged) / len(scores) if scores else math.nan,
        "correctness/errors": float(len(scores) - len(judged)),
        "correctness/kappa_contains_match": agreement.value,
        "correctness/kappa_contains_match/ci_low": agreement.ci_low,
        "correctness/kappa_contains_match/ci_high": agreement.ci_high,
    }


def judge_rows_file(rows_path: Path, judge_endpoint: str, concurrency: int, limiter: AimdLimiter | None) -> dict[str, float]:
    """The judge's metrics over a rows file, its calls under the same limiter as the endpoint's."""
    with rows_path.open(encoding="utf-8") as lines:
        rows = (json.loads(line) for line in lines)
        return judge_rows(rows, judge_endpoint, concurrency=concurrency, limiter=limiter or AimdLimiter(max(1, int(concurrency))))
