"""The evaluation's MLflow run: created while the endpoint answers, filled in at the end.

:func:`prepare_run` makes a RUNNING run with the evaluation's params (in a worker thread,
while the first answers arrive); :func:`end_prepared` marks it failed if the evaluation
stops; :func:`reopened_run` reopens it with its experiment active, and :func:`log_outputs`
logs the metrics, the per-row table and the artifacts. The experiment is found or created
by :func:`llmops_nb.tracking.uris.experiment_id`, the one rule the register step uses too.
mlflow is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.evaluation.plot import use_headless_backend
from llmops_nb.tracking.uris import experiment_id

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from mlflow.entities import Run

TABLE_ARTIFACT = "eval_table.json"


@contextlib.contextmanager
def active_experiment(experiment: str) -> Iterator[None]:
    """Make ``experiment`` (an id) mlflow's active experiment, then restore the caller's.

    genai.evaluate writes its traces to the active experiment, not the active run's; left
    set, it would break the caller's next run on another tracking store.
    """
    import mlflow
    from mlflow.tracking import fluent

    before, env = fluent._active_experiment_id, os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_experiment(experiment_id=experiment)
    try:
        yield
    finally:
        fluent._active_experiment_id = before
        if env is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = env


def prepare_run(
    tracking_uri: str, experiment: str, run_name: str | None, tags: Mapping[str, str], params: Mapping[str, Any]
) -> tuple[str, str]:
    """(experiment id, run id) of a new RUNNING run with ``params``; warms pandas and matplotlib."""
    import mlflow
    import pandas  # noqa: F401 - imported here, off the critical path
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.tracking.context.registry import resolve_tags

    use_headless_backend()
    import matplotlib.pyplot  # noqa: F401

    mlflow.set_tracking_uri(tracking_uri)
    found = experiment_id(experiment, tracking_uri)
    client = MlflowClient(tracking_uri)
    # resolve_tags adds what mlflow.start_run records (source, user, git commit)
    run = client.create_run(found, run_name=run_name, tags=resolve_tags(dict(tags)))
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return found, run.info.run_id


def end_prepared(prepared: Any, tracking_uri: str, status: str) -> None:
    """Mark the run made by :func:`prepare_run` (a future) ``status`` once it exists, quietly."""
    from mlflow import MlflowClient

    try:
        _, run_id = prepared.result()
        MlflowClient(tracking_uri).set_terminated(run_id, status)
    except Exception:  # noqa: BLE001 - the querying error is the one to report
        pass


@contextlib.contextmanager
def reopened_run(tracking_uri: str, experiment: str, run_id: str) -> Iterator[Run]:
    """The prepared run, active (its experiment too) until the block ends, then finished."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with active_experiment(experiment), mlflow.start_run(run_id=run_id) as run:
        yield run


def log_outputs(
    metrics: Mapping[str, float], table: pd.DataFrame, artifacts: Sequence[Path], trace_failures: Sequence[str]
) -> None:
    """In the active run: the metrics, the per-row table, the artifacts, and a tag if row traces failed."""
    import mlflow

    if trace_failures:
        mlflow.set_tag("llmops_nb.mlflow_scoring", f"{len(trace_failures)} row traces failed: {trace_failures[0]}"[:500])
    mlflow.log_metrics(dict(metrics))
    mlflow.log_table(data=table, artifact_file=TABLE_ARTIFACT)
    for path in artifacts:
        mlflow.log_artifact(str(path))
