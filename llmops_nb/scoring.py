"""The answer metrics' old import path (and the MLflow scorers'), now in :mod:`llmops_nb.evaluation`.

The answer metrics are :mod:`llmops_nb.evaluation.metrics` ("scoring" also names MLflow's
scoring server); their MLflow GenAI scorers and the judge are
:mod:`llmops_nb.evaluation.scorers`. Every name this module had is re-exported here.
"""

from __future__ import annotations

from llmops_nb.evaluation import metrics as _metrics
from llmops_nb.evaluation import scorers as _scorers
from llmops_nb.evaluation.metrics import *  # noqa: F403 - re-exported
from llmops_nb.evaluation.scorers import *  # noqa: F403 - re-exported

__all__ = [*_metrics.__all__, *_scorers.__all__]
