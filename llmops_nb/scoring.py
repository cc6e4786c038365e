"""The answer metrics' old import path (and the MLflow scorers'), now in :mod:`llmops_nb.evaluation`.

The answer metrics are :mod:`llmops_nb.evaluation.metrics` ("scoring" also names MLflow's
scoring server); their MLflow GenAI scorers and the judge are
:mod:`llmops_nb.evaluation.scorers`. Every name this module had is re-exported here.
"""

from __future__ import annotations

from llmops_nb.evaluation.metrics import (
    ARTICLES,
    contains_match,
    exact_match,
    normalize,
    response_length,
    score_answer,
    tokens_per_second,
)
from llmops_nb.evaluation.scorers import (
    SCORERS,
    SQLITE_EVAL_ENV,
    judge_rows,
    mlflow_record,
    mlflow_scorers,
    run_mlflow_scorers,
    sqlite_safe_env,
)

__all__ = [
    "ARTICLES", "SCORERS", "SQLITE_EVAL_ENV", "normalize", "exact_match", "contains_match", "response_length",
    "tokens_per_second", "score_answer", "mlflow_record", "mlflow_scorers", "sqlite_safe_env",
    "run_mlflow_scorers", "judge_rows",
]
