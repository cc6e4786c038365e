"""A canary rollout on the local workspace with the real model (slow, marked model): two registered
versions of the bundled SmolLM2, each in its own MLflow scoring server; an equal challenger is
promoted under real traffic and no request is dropped when the champion's server is stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.rollout import RolloutConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.ops import get_endpoint
from llmops_nb.rollout.canary import Canary
from llmops_nb.rollout.state import PROMOTED, RolloutStore
from llmops_nb.rollout.traffic import UsageRecords
from llmops_nb.testing.load import LoadGenerator

pytestmark = pytest.mark.model
NAME = "canary-real"


def _endpoint(model: str, version: str) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {
            "name": NAME,
            "served_entities": [{"entity_name": model, "entity_version": version, "workload_size": "Small"}],
            "ai_gateway": {"usage_tracking_config": {"enabled": True}},
        }
    )


def test_an_equal_version_is_promoted_on_the_local_workspace_with_no_request_dropped(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from llmops_nb.models.registry import register_model
    from llmops_nb.workspace import launcher

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = register_model("smollm2-135m-instruct", tracking_uri=uri, registry_uri=uri)
    second = register_model("smollm2-135m-instruct", tracking_uri=uri, registry_uri=uri)
    home = tmp_path / "ws"
    info = launcher.ensure_running(home, uri)
    try:
        w = WorkspaceClient(config=Config(host=info.host, token=info.token, auth_type="pat", retry_timeout_seconds=300,
                                          http_timeout_seconds=300))  # fmt: skip
        deploy(w, _endpoint(first.name, first.version), timeout=600, poll_interval=0.5, progress=False)
        rc = RolloutConfig(strategy="canary", steps=[50, 100], min_requests=4, interval_s=1.0, max_wait_s=300, max_error_rate=0.6)
        canary = Canary(w, _endpoint(second.name, second.version), rc, store=RolloutStore(tmp_path / "rollouts"),
                        reader=UsageRecords(home), timeout=600, poll_interval=0.5, progress=False, log=None)  # fmt: skip
        with LoadGenerator(info.host, str(info.token), NAME, threads=2, pause=0.05) as load:
            outcome = canary.deploy()
        assert outcome.state == PROMOTED, outcome.reason
        served = [e["name"] for e in (get_endpoint(w, NAME) or {})["config"]["served_entities"]]
        assert served == [f"{second.name}-{second.version}"]
        assert load.dropped == []
        assert load.answers and all(a.status == 200 for a in load.answers), [a for a in load.answers if a.status != 200][:3]
        assert {a.entity for a in load.answers} == {f"{first.name}-{first.version}", f"{second.name}-{second.version}"}
    finally:
        launcher.stop(home)
