"""The evaluation's old import path: each name it had, now from :mod:`llmops_nb.evaluation`.

New code imports from :mod:`llmops_nb.evaluation` (one module per concern: rows, resume,
asking, metrics, scorers, plot, MLflow run, report, orchestration).
"""

from __future__ import annotations

from llmops_nb import evaluation as _evaluation
from llmops_nb.evaluation import *  # noqa: F403 - re-exported

__all__ = list(_evaluation.__all__)
