"""Evaluation and registration against a real remote tracking server (``mlflow server``, 20 ms proxy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops_nb import endpoints
from llmops_nb.config import EndpointConfig
from llmops_nb.datasets import load_dataset
from llmops_nb.evaluate import TABLE_ARTIFACT, evaluate_and_promote
from llmops_nb.testing.tracking_server import TrackingServer, tracking_server


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """One ``mlflow server`` for this module, behind a proxy adding 20 ms per request."""
    with tracking_server(tmp_path_factory.mktemp("tracking"), delay_ms=20) as server:
        yield server


def test_the_default_evaluation_logs_to_a_remote_server(remote: TrackingServer, fake_workspace,  # noqa: ANN001
                                                        tmp_path: Path) -> None:
    import mlflow

    cfg = EndpointConfig.model_validate({"name": "chat", "served_entities": [
        {"entity_name": "m", "entity_version": "1", "scale_to_zero_enabled": False}]})
    endpoints.deploy(fake_workspace.client(), cfg, progress=False, poll_interval=0.1)
    client = mlflow.MlflowClient(tracking_uri=remote.uri, registry_uri=remote.uri)
    client.create_registered_model("remote-m")
    source_run = client.create_run("0")
    client.create_model_version("remote-m", source=f"runs:/{source_run.info.run_id}/model",
                                run_id=source_run.info.run_id)
    rows = load_dataset(max_rows=6)
    before = remote.proxy.requests
    evaluation = evaluate_and_promote(
        fake_workspace.client(), "chat", rows, model_name="remote-m", model_version="1",
        thresholds={"error_rate": 0.0}, tracking_uri=remote.uri, registry_uri=remote.uri, progress=False,
        output_dir=tmp_path, experiment="remote-eval")
    assert evaluation.promoted and evaluation.metrics["rows"] == 6
    assert remote.proxy.requests > before  # it went through the proxy
    run = client.get_run(evaluation.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["error_rate"] == 0
    table = json.loads(Path(client.download_artifacts(evaluation.run_id, TABLE_ARTIFACT, str(tmp_path))).read_text())
    assert len(table["data"]) == 6
    traces = mlflow.MlflowClient(tracking_uri=remote.uri).search_traces(
        locations=[run.info.experiment_id], filter_string=f"metadata.`mlflow.sourceRun` = '{evaluation.run_id}'")
    assert len(traces) == 6 and "llmops_nb.mlflow_scoring" not in run.data.tags  # no trace failed
    full = [client.get_trace(t.info.trace_id) for t in traces]  # search results may leave assessments out
    assert all({"exact_match", "contains_match"} <= {a.name for a in t.info.assessments} for t in full)
    assert str(client.get_model_version_by_alias("remote-m", "champion").version) == "1"


def test_register_to_a_remote_server(remote: TrackingServer) -> None:
    import mlflow

    from llmops_nb.registry import register_model

    model = register_model("remote-smollm2", tracking_uri=remote.uri, registry_uri=remote.uri)
    client = mlflow.MlflowClient(tracking_uri=remote.uri, registry_uri=remote.uri)
    version = client.get_model_version_by_alias("remote-smollm2", "challenger")
    assert str(version.version) == str(model.version)
    assert {a.path for a in client.list_artifacts(version.run_id)} or version.source  # logged through the server
