"""The evaluation's old import path: each name it had, now from :mod:`llmops_nb.evaluation`.

New code imports from :mod:`llmops_nb.evaluation` (one module per concern: rows, resume,
asking, metrics, scorers, plot, MLflow run, report, orchestration).
"""

from __future__ import annotations

from llmops_nb.bookkeeping import ROWS_ARTIFACT, Bookkeeper, RunningMetrics
from llmops_nb.evaluation import (
    DEFAULT_SYSTEM,
    KNOWN_METRICS,
    PLOT_ARTIFACT,
    TABLE_ARTIFACT,
    TABLE_COLUMNS,
    Asked,
    Champion,
    Comparison,
    EvalResult,
    Evaluation,
    GateDecision,
    PromotionDecision,
    SavedAnswers,
    StreamDigest,
    aggregate,
    compare,
    dataset_digest,
    decide,
    evaluate_and_promote,
    evaluate_endpoint,
    find_champion,
    gate,
    load_dataset,
    plot_results,
    promote,
    query_rows,
    read_resume,
    read_saved,
    read_table,
    record_decision,
    stream_rows,
    table_row,
)

__all__ = [
    "EvalResult", "evaluate_endpoint", "plot_results", "aggregate", "load_dataset", "dataset_digest",
    "gate", "GateDecision", "compare", "Comparison", "decide", "PromotionDecision", "promote",
    "record_decision", "find_champion", "Champion", "Evaluation", "evaluate_and_promote", "KNOWN_METRICS",
    "DEFAULT_SYSTEM", "TABLE_COLUMNS", "TABLE_ARTIFACT", "PLOT_ARTIFACT", "ROWS_ARTIFACT", "Bookkeeper",
    "RunningMetrics", "table_row", "SavedAnswers", "read_saved", "read_resume", "Asked", "stream_rows",
    "query_rows", "StreamDigest", "read_table",
]
