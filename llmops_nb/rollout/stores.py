"""The rollout store of a backend: local JSON files (:class:`~.state.RolloutStore`) on the local
backend, the endpoint's tag and MLflow (:class:`~.mlflow_store.MlflowRolloutStore`) on Databricks,
as :func:`llmops_nb.backends.state_is_local` says."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmops_nb.backends import state_is_local
from llmops_nb.rollout.state import Store, default_store

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.backends import Backend


def store_for(backend: Backend, w: WorkspaceClient | None = None, *, experiment: str | None = None) -> Store:
    """The store of ``backend`` (``w``: its client; ``experiment``: the project's, where the
    endpoint's history run is made on Databricks)."""
    if state_is_local(backend.kind):
        return default_store()
    from llmops_nb.rollout.mlflow_store import MlflowRolloutStore
    from llmops_nb.tracking.uris import resolve_experiment

    client = w or backend.workspace_client()
    name = resolve_experiment(experiment, backend.tracking_uri, client)
    return MlflowRolloutStore(client, backend.tracking_uri, backend.registry_uri, name)


def store_of_kind(kind: str, *, experiment: str | None = None) -> Store:
    """:func:`store_for` by backend kind, without starting the local workspace (``rollout status``)."""
    if state_is_local(kind):
        return default_store()
    from llmops_nb.backends import resolve_backend

    return store_for(resolve_backend(kind), experiment=experiment)
