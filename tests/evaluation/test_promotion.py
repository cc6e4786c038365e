"""Threshold names, the decision recorded on the run, and moving the alias in a real MLflow registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.metrics import KNOWN_METRICS
from llmops_nb.evaluation.promotion import PromotionDecision, check_threshold_names, find_champion, promote, record_decision


def test_an_unknown_threshold_metric_is_one_config_error_line() -> None:
    check_threshold_names({"contains_match": 0.5, "latency_p95_ms": 900}, KNOWN_METRICS)
    with pytest.raises(ConfigError) as err:
        check_threshold_names({"contains_mach": 0.5}, KNOWN_METRICS)
    assert err.value.field == "thresholds.contains_mach" and "contains_match" in str(err.value)


def test_promote_moves_the_alias_and_links_the_eval_run(tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", source=str(tmp_path), run_id=None)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        mlflow.log_metrics({"contains_match": 0.5})
        mlflow.log_param("dataset_digest", "abc")
    assert find_champion("m", tracking_uri=uri, registry_uri=uri) is None
    decision = PromotionDecision(True, ["all 1 thresholds met"], "promote", "new")
    promote("m", 2, tracking_uri=uri, registry_uri=uri, run_id=run.info.run_id, decision=decision)
    assert str(client.get_model_version_by_alias("m", "champion").version) == "2"
    champion = find_champion("m", tracking_uri=uri, registry_uri=uri)
    assert (champion.version, champion.run_id, champion.dataset_digest) == ("2", run.info.run_id, "abc")
    assert champion.metrics["contains_match"] == 0.5
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["llmops_nb.promoted"] == "true" and tags["llmops_nb.candidate_version"] == "2"
    assert "all 1 thresholds met" in tags["llmops_nb.decision"]
    assert (tags["llmops_nb.decision_action"], tags["llmops_nb.decision_winner"]) == ("promote", "new")
    record_decision(run.info.run_id, PromotionDecision(False, ["keep"], "keep"), alias="champion", version="1", tracking_uri=uri)
    assert client.get_run(run.info.run_id).data.tags["llmops_nb.promoted"] == "false"
