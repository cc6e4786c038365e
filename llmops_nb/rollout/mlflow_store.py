"""The rollout record and the applied-config history where any machine finds them: the endpoint's
tag names the rollout's MLflow run, and MLflow holds the record and every applied config.

On Databricks the deploy task runs on a job cluster: a local file (:mod:`.state`) is on its
driver and goes with it, so an interrupted job would leave a split that the next deploy (another
cluster, a laptop) could not own. Here:

- the endpoint tag ``llmops_rollout_run`` holds the run id of the endpoint's latest rollout
  (``PATCH /api/2.0/serving-endpoints/{name}/tags``, databricks-sdk ``serving_endpoints.patch``;
  ``EndpointTag`` has a ``key`` and an optional ``value``, a run id is 32 hex characters). It is
  set before the rollout's first split is written, so a split made by this project always names
  its owner; the split is owned while that run's record is ``in_progress``. Deploys neither
  compare nor delete the tag (:data:`llmops_nb.endpoints.normalize.STATE_TAGS`);
- the rollout's run holds the record as the artifact ``rollout_record.json`` (rewritten at each
  save) and its state as the tag ``rollout_state``; a record not yet tied to a run (before the
  rollout's run exists, nothing on the endpoint changed yet) is kept in memory only;
- every applied config is an artifact ``applied/<ns>-<hash>.json`` of the endpoint's history run
  (tag ``llmops_config_history`` = the endpoint, in the project's experiment), one file each so
  two writers never lose each other's line.

``interrupted``: nobody saved the record for over ``3 x interval_s + 5 s``: a live rollout saves it
at each read of live traffic and, while a config update waits for READY, at each poll (at most
once an interval), so only a rollout whose process is gone stops saving.
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, Final

from llmops_nb.endpoints.normalize import ROLLOUT_RUN_TAG
from llmops_nb.errors import EndpointError
from llmops_nb.rollout.state import IN_PROGRESS, ROLLED_BACK, AppliedConfig, RolloutRecord

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

RECORD_ARTIFACT: Final = "rollout_record.json"
HISTORY_TAG: Final = "llmops_config_history"
STALE_S: Final = 5.0  # over 3 intervals: a slow read of the inference table


class MlflowRolloutStore:
    """:class:`~llmops_nb.rollout.state.RolloutStore`'s interface over the endpoint's tag and MLflow
    (see the module docstring); ``experiment`` is where the history run is made if none exists."""

    def __init__(self, w: WorkspaceClient, tracking_uri: str, registry_uri: str, experiment: str) -> None:
        self.w = w
        self.tracking_uri, self.registry_uri, self.experiment = tracking_uri, registry_uri, experiment
        self._client: Any = None
        self._pending: dict[str, RolloutRecord] = {}
        self._tagged: dict[str, str] = {}
        self._states: dict[str, str] = {}
        self._history: dict[str, tuple[str | None, list[AppliedConfig]]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            from llmops_nb.tracking.client import mlflow_client

            self._client = mlflow_client(self.tracking_uri, self.registry_uri)
        return self._client

    # ------------------------------------------------------------------ the record

    def owner_run(self, endpoint: str, current: dict[str, Any] | None = None) -> str | None:
        """The run id the endpoint's tag names (its latest rollout), or None; ``current``: the
        endpoint as the caller just read it (else it is read)."""
        from llmops_nb.endpoints.ops import get_endpoint

        found = (current if current is not None else get_endpoint(self.w, endpoint)) or {}
        tags = {t.get("key"): t.get("value") for t in found.get("tags") or []}
        return tags.get(ROLLOUT_RUN_TAG) or None

    def latest(self, endpoint: str, current: dict[str, Any] | None = None) -> RolloutRecord | None:
        """The endpoint's latest rollout: the record on the run its tag names, or None
        (``current``: the endpoint as just read, its tags used instead of a GET)."""
        if endpoint in self._pending:
            return self._pending[endpoint]
        run_id = self.owner_run(endpoint, current)
        if run_id is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            data = self._load(run_id, RECORD_ARTIFACT)
        except (MlflowException, OSError):  # the run or its record is gone (deleted): nothing owns
            return None
        known = {f.name for f in fields(RolloutRecord)}
        return RolloutRecord(**{k: v for k, v in data.items() if k in known})

    def save(self, record: RolloutRecord) -> None:
        """Write the record on its run and make the endpoint's tag name that run (once)."""
        record.updated = time.time()
        if record.run_id is None:
            pending = self._pending.get(record.endpoint)
            if pending is not None and pending.id == record.id:  # saved again, before its first write, runless
                raise EndpointError(
                    f"endpoint {record.endpoint}: rollout {record.id} has no MLflow run to keep its record on "
                    "Databricks (the Canary needs tracking); nothing written"
                )
            self._pending[record.endpoint] = record
            return
        self._pending.pop(record.endpoint, None)
        run_id = record.run_id
        self.client.log_dict(run_id, asdict(record), RECORD_ARTIFACT)
        if self._states.get(run_id) != record.state:
            self.client.set_tag(run_id, "rollout_state", record.state)
            self.client.set_tag(run_id, "llmops_endpoint", record.endpoint)
            ended = record.state != IN_PROGRESS
            if ended and self.client.get_run(run_id).info.status == "RUNNING":  # its process gone (a rollback by hand)
                self.client.set_terminated(run_id, "FAILED" if record.state == ROLLED_BACK else "FINISHED")
            self._states[run_id] = record.state
        if self._tagged.get(record.endpoint) != run_id:
            if self.owner_run(record.endpoint) != run_id:
                from databricks.sdk.service import serving

                self.w.serving_endpoints.patch(
                    name=record.endpoint, add_tags=[serving.EndpointTag(key=ROLLOUT_RUN_TAG, value=run_id)]
                )
            self._tagged[record.endpoint] = run_id

    def interrupted(self, record: RolloutRecord) -> bool:
        """Whether an in-progress rollout looks abandoned (not saved for a while, see the module)."""
        return time.time() - record.updated > 3 * record.interval_s + STALE_S

    # ------------------------------------------------------------------ applied configs

    def _history_run(self, endpoint: str, *, create: bool) -> str | None:
        import mlflow

        from llmops_nb.tracking.uris import experiment_id, tracking_setup

        setup = tracking_setup(self.tracking_uri, self.registry_uri)
        if create:
            exp = experiment_id(self.experiment, setup.tracking_uri, setup.artifact_root)
        else:
            found = mlflow.get_experiment_by_name(self.experiment)
            if found is None:
                return None
            exp = found.experiment_id
        runs = self.client.search_runs(
            [exp], f"tags.{HISTORY_TAG} = '{endpoint}'", order_by=["attributes.start_time ASC"], max_results=1
        )
        if runs:
            return str(runs[0].info.run_id)
        if not create:
            return None
        tags = {HISTORY_TAG: endpoint, "llmops_endpoint": endpoint, "mlflow.runName": f"config history {endpoint}"}
        return str(self.client.create_run(exp, tags=tags, run_name=tags["mlflow.runName"]).info.run_id)

    def _load(self, run_id: str, path: str) -> dict[str, Any]:
        import json
        from pathlib import Path

        return dict(json.loads(Path(self.client.download_artifacts(run_id, path)).read_text()))

    def record_applied(self, endpoint: str, applied: AppliedConfig) -> None:
        """Keep one applied config as an artifact of the endpoint's history run."""
        run_id, history = self._history.get(endpoint) or (None, self.applied(endpoint))
        run_id = run_id or self._history_run(endpoint, create=True)
        self.client.log_dict(run_id, asdict(applied), f"applied/{time.time_ns():020d}-{applied.hash}.json")
        self._history[endpoint] = (run_id, [*history, applied])

    def applied(self, endpoint: str) -> list[AppliedConfig]:
        """Every config applied to the endpoint, oldest first (read once, then kept)."""
        if endpoint in self._history:
            return list(self._history[endpoint][1])
        run_id = self._history_run(endpoint, create=False)
        history: list[AppliedConfig] = []
        if run_id is not None:
            files = sorted(f.path for f in self.client.list_artifacts(run_id, "applied"))
            history = [AppliedConfig(**self._load(run_id, path)) for path in files]
        self._history[endpoint] = (run_id, history)
        return list(history)
