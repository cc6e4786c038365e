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
- :mod:`~llmops_nb.evaluation.statistics`: intervals, paired differences and p-values over the
  per-row scores (numpy, scipy);
- :mod:`~llmops_nb.evaluation.metrics`: the answer metrics (exact and contains match, ...)
  and the run-level figures.

Gating and promotion live in :mod:`llmops_nb.evaluation.promotion`; datasets in
:mod:`~llmops_nb.evaluation.datasets`; inference-table replay in :mod:`~llmops_nb.evaluation.replay`.
"""
