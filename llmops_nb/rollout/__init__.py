"""Canary rollouts (issue 33): steps of traffic to the new version, each judged on live traffic,
advancing or rolling back by itself; every config applied to an endpoint kept.

- :mod:`~llmops_nb.rollout.state`: the rollout record, the applied-config history and the store
  interface; locally, JSON files (the configs also go to the rollout's MLflow run, with their hash);
- :mod:`~llmops_nb.rollout.mlflow_store`: the same on Databricks, where any machine finds it: the
  endpoint's tag names the rollout's MLflow run, MLflow holds the record and every applied config;
- :mod:`~llmops_nb.rollout.stores`: the backend's store (:func:`llmops_nb.backends.state_is_local`);
- :mod:`~llmops_nb.rollout.traffic`: what each served entity did (the workspace's usage records);
- :mod:`~llmops_nb.rollout.inference_table`: the same on Databricks, from the endpoint's inference
  table joined to ``system.serving.served_entities`` through a SQL warehouse (rows land late);
- :mod:`~llmops_nb.rollout.judge`: a step's decision with intervals (:mod:`llmops_nb.evaluation.statistics`);
- :mod:`~llmops_nb.rollout.plot`: traffic share and error rate over time per entity;
- :mod:`~llmops_nb.rollout.canary`: the steps, the watch, promote and rollback.
"""
