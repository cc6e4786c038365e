"""Evaluation of a serving endpoint, one concern per module (imports point down this list):

- :mod:`~llmops_nb.evaluation.orchestrate`: :func:`evaluate_endpoint` and
  :func:`evaluate_and_promote`, the phases in order;
- :mod:`~llmops_nb.evaluation.asking`: ask each row once, concurrently, resumable;
- :mod:`~llmops_nb.evaluation.bookkeeping`: each answer as it arrives: the rows file, the running
  metrics, the traces of the rows that matter (one thread, a bounded queue);
- :mod:`~llmops_nb.evaluation.mlflow_run`: the evaluation's MLflow run (experiment, params,
  metrics, table, artifacts);
- :mod:`~llmops_nb.evaluation.report`: :class:`EvalResult`, :class:`Evaluation` and the summary
  the evaluate notebook shows;
- :mod:`~llmops_nb.evaluation.rows`: the per-row result table;
- :mod:`~llmops_nb.evaluation.resume`: the saved answers a killed run resumes from;
- :mod:`~llmops_nb.evaluation.plot`: the match-rate and latency plot;
- :mod:`~llmops_nb.evaluation.scorers`: the metrics as MLflow GenAI scorers, and the judge;
- :mod:`~llmops_nb.evaluation.metrics`: the answer metrics (exact and contains match, ...)
  and the run-level figures.

Gating and promotion live in :mod:`llmops_nb.promotion` and are re-exported here. The old
paths :mod:`llmops_nb.evaluate` and :mod:`llmops_nb.scoring` re-export these names.
"""

from __future__ import annotations

from llmops_nb.datasets import dataset_digest, load_dataset
from llmops_nb.evaluation.asking import DEFAULT_SYSTEM, Asked, query_rows, stream_rows
from llmops_nb.evaluation.bookkeeping import ROWS_ARTIFACT, Bookkeeper
from llmops_nb.evaluation.metrics import (
    KNOWN_METRICS,
    RunningMetrics,
    aggregate,
    contains_match,
    exact_match,
    normalize,
    response_length,
    score_answer,
    tokens_per_second,
)
from llmops_nb.evaluation.mlflow_run import TABLE_ARTIFACT
from llmops_nb.evaluation.orchestrate import evaluate_and_promote, evaluate_endpoint
from llmops_nb.evaluation.plot import PLOT_ARTIFACT, plot_results
from llmops_nb.evaluation.report import EvalResult, Evaluation
from llmops_nb.evaluation.resume import SavedAnswers, read_resume, read_saved
from llmops_nb.evaluation.rows import TABLE_COLUMNS, StreamDigest, read_table, table_row
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

__all__ = [
    "EvalResult", "evaluate_endpoint", "plot_results", "aggregate", "load_dataset", "dataset_digest",
    "gate", "GateDecision", "compare", "Comparison", "decide", "PromotionDecision", "promote",
    "record_decision", "find_champion", "Champion", "Evaluation", "evaluate_and_promote", "KNOWN_METRICS",
    "DEFAULT_SYSTEM", "TABLE_ARTIFACT", "TABLE_COLUMNS", "PLOT_ARTIFACT", "Asked", "stream_rows", "query_rows",
    "SavedAnswers", "read_saved", "read_resume", "StreamDigest", "read_table", "table_row",
    "ROWS_ARTIFACT", "Bookkeeper", "RunningMetrics",
    "normalize", "exact_match", "contains_match", "response_length", "tokens_per_second", "score_answer",
]
