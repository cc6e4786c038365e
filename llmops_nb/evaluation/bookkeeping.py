"""An evaluation's bookkeeping, done while the endpoint answers: rows out, metrics, traces.

:class:`Bookkeeper` takes each result-table row as its answer arrives (a bounded queue,
one consumer thread) and

- appends it to a JSON-lines file (``eval_rows.jsonl``, every row, logged as an artifact at
  the end): results stream out, nothing per row is kept in memory but its latency and
  token count (for the run's quantiles);
- adds it to the running metrics (:class:`~llmops_nb.evaluation.metrics.RunningMetrics`, the
  same figures as :func:`~llmops_nb.evaluation.metrics.aggregate` over all rows);
- for the rows that matter, logs an MLflow trace of the question and answer with the row's
  scores as assessments: every failed row and the first ``trace_rows`` rows, up to
  ``max_traces`` (each trace is an export to the tracking store, its scores included: one per
  row of 5,000 would cost minutes on a remote server, while the per-row table holds every
  row's scores anyway).

The queue is bounded, so a slow tracking store slows the consumer, not memory.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops_nb.evaluation.metrics import RunningMetrics

ROWS_ARTIFACT = "eval_rows.jsonl"
#: MLflow's trace exporter: it logs a failed export (a warning or an error) instead of raising.
EXPORT_LOGGER = "mlflow.tracing.export.mlflow_v3"
TRACED_SCORES = ("exact_match", "contains_match", "response_length", "latency_ms", "completion_tokens")
_STOP = object()


def log_row_trace(row: dict[str, Any], experiment_id: str, run_id: str) -> str:
    """One trace (question in, answer or error out) linked to ``run_id``, scores as assessments.

    The assessments are logged while the trace is the active one, so MLflow keeps them on the
    trace in memory and exports them with it, in its ``StartTraceV3`` call
    (``mlflow/tracing/client.py``, ``log_assessment``; the SQL store persists
    ``trace_info.assessments`` in ``start_trace``): one export per trace whatever the number of
    scores. The trace is an evaluation trace, as ``mlflow.genai.evaluate`` makes them
    (``mlflow/genai/evaluation/harness.py``: a prediction context with ``is_evaluate=True``):
    exported at once, in this (bookkeeping) thread, one at a time while the endpoint answers.
    Measured on a SQLite-backed ``mlflow server``: MLflow's default async export (10 workers)
    made the store's writes contend and cost 1.84x the query floor for 200 rows against 1.30x
    this way (bench/README.md).
    """
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType
    from mlflow.entities.trace_location import MlflowExperimentLocation
    from mlflow.pyfunc.context import Context, set_prediction_context

    source = AssessmentSource(AssessmentSourceType.CODE, "llmops_nb.evaluation.metrics")
    evaluation = Context(request_id=f"llmops-row-{row['id']}", is_evaluate=True)
    where = MlflowExperimentLocation(experiment_id)
    with set_prediction_context(evaluation), mlflow.start_span("evaluate_row", trace_destination=where, run_id=run_id) as span:
        span.set_inputs({"question": row["question"]})
        span.set_outputs({"answer": row["answer"], "error": row["error"]})
        mlflow.update_current_trace(tags={"llmops_nb.row_id": str(row["id"])})
        mlflow.log_expectation(
            trace_id=span.trace_id,
            name="expected_response",
            value=row["expected"],
            source=AssessmentSource(AssessmentSourceType.HUMAN, "dataset"),
        )
        for name in TRACED_SCORES:
            if row[name] is not None:
                mlflow.log_feedback(trace_id=span.trace_id, name=name, value=row[name], source=source)
        if row["error"]:
            span.set_status("ERROR")
    return span.trace_id


class Bookkeeper:
    """A consumer thread: rows to a JSONL file, running metrics, traces for the rows that matter."""

    def __init__(
        self,
        rows_path: Path,
        *,
        run: Callable[[], tuple[str, str]] | None,
        trace_rows: int = 25,
        max_traces: int = 200,
        queue_size: int = 256,
    ) -> None:
        self.rows_path = Path(rows_path)
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        self.metrics = RunningMetrics()
        self.traced = 0
        self.trace_failures: list[str] = []
        self._run, self._trace_rows, self._max_traces = run, trace_rows, max_traces
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, name="eval-bookkeeping", daemon=True)
        self._thread.start()

    def put(self, position: int, row: dict[str, Any]) -> None:
        """Hand over the row at dataset ``position`` (blocks while the queue is full)."""
        if self._error is not None:
            raise self._error
        self._queue.put((position, row))

    def close(self) -> RunningMetrics:
        """Wait for every row handed over; the running metrics."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self.traced:  # a trace left on MLflow's async queue (none of ours should): in the store after this
            import mlflow

            mlflow.flush_trace_async_logging()
        return self.metrics

    def _wants_trace(self, position: int, row: dict[str, Any]) -> bool:
        return self._run is not None and self.traced < self._max_traces and (position < self._trace_rows or bool(row["error"]))

    def _consume(self) -> None:
        try:
            with self.rows_path.open("w", encoding="utf-8") as out:
                while (item := self._queue.get()) is not _STOP:
                    position, row = item
                    out.write(json.dumps({"position": position, **row}) + "\n")
                    self.metrics.add(row)
                    if self._wants_trace(position, row):
                        self._trace(row)
        except BaseException as exc:  # noqa: BLE001 - raised in the producer
            self._error = exc
            while self._queue.get() is not _STOP:  # let the producer finish
                pass

    def _trace(self, row: dict[str, Any]) -> None:
        experiment_id, run_id = self._run()  # type: ignore[misc]
        refused = _ExportFailures(threading.get_ident())
        exporter = logging.getLogger(EXPORT_LOGGER)
        exporter.addHandler(refused)
        try:
            log_row_trace(row, experiment_id, run_id)
        except Exception as exc:  # noqa: BLE001 - the scores are in the table; say it on the run
            refused.messages.append(f"{type(exc).__name__}: {exc}")
        finally:
            exporter.removeHandler(refused)
        if refused.messages:
            self.trace_failures.append(refused.messages[0].splitlines()[0][:300])
        else:
            self.traced += 1


class _ExportFailures(logging.Handler):
    """The exporter's warnings and errors from one thread: a trace the store did not take."""

    def __init__(self, thread_id: int) -> None:
        super().__init__(logging.WARNING)
        self.thread_id = thread_id
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.messages.append(record.getMessage())
