"""Gate, champion comparison, decision, and moving the alias in a real MLflow registry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.promotion import compare, decide, find_champion, gate, promote, record_decision

METRICS = {
    "contains_match": 0.6,
    "exact_match": 0.3,
    "latency_p95_ms": 900.0,
    "error_rate": 0.02,
    "tokens_per_second": 40.0,
    "wall_seconds": 12.0,
}


def test_gate_passes_when_every_bound_holds() -> None:
    decision = gate(METRICS, {"contains_match": 0.5, "latency_p95_ms": 1000, "error_rate": 0.05})
    assert decision.passed
    assert [c.direction for c in decision.checks] == [">=", "<=", "<="]
    assert all(c.shortfall == 0 for c in decision.checks)


def test_gate_reports_which_metric_fell_short_and_by_how_much() -> None:
    decision = gate(
        METRICS, {"contains_match": 0.75, "latency_p95_ms": 800, "error_rate": 0.01, "tokens_per_second": 30, "wall_seconds": 10}
    )
    assert not decision.passed
    short = {c.metric: c.shortfall for c in decision.checks if not c.ok}
    assert short == pytest.approx({"contains_match": 0.15, "latency_p95_ms": 100.0, "error_rate": 0.01, "wall_seconds": 2.0})
    lines = decision.summary()
    assert "FAIL contains_match = 0.6, needs >= 0.75 (short by 0.15)" in lines
    assert "FAIL latency_p95_ms = 900, needs <= 800 (over by 100)" in lines
    assert "ok   tokens_per_second = 40 >= 30" in lines


def test_a_missing_value_fails_and_an_unknown_metric_is_a_config_error() -> None:
    assert not gate({"latency_p50_ms": math.nan}, {"latency_p50_ms": 100}).passed
    with pytest.raises(ConfigError) as err:
        gate(METRICS, {"accuracy": 0.5})
    assert err.value.field == "thresholds.accuracy" and "contains_match" in str(err.value)
    assert gate(METRICS, {}).passed and gate(METRICS, {}).summary() == ["no thresholds set: the gate passes"]


CHAMPION = {"contains_match": 0.6, "exact_match": 0.3, "latency_p95_ms": 1000.0}


@pytest.mark.parametrize(
    ("candidate", "passed"),
    [
        ({"contains_match": 0.7, "exact_match": 0.35}, True),  # better
        ({"contains_match": 0.59, "exact_match": 0.3}, True),  # worse within margin 0.02
        ({"contains_match": 0.5, "exact_match": 0.3}, False),  # worse beyond margin
    ],
)
def test_compare_with_the_champion_within_the_margin(candidate: dict, passed: bool) -> None:
    comparison = compare(candidate, CHAMPION, 0.02)
    assert comparison.passed is passed
    table = comparison.table
    assert list(table.columns) == ["metric", "champion", "candidate", "delta", "ok"]
    assert table.loc[0, "delta"] == pytest.approx(candidate["contains_match"] - 0.6)
    assert decide(gate(candidate, {"contains_match": 0.4}), comparison).promote is passed


def test_lower_is_better_metrics_compare_with_a_relative_margin() -> None:
    assert compare({"latency_p95_ms": 1050.0}, CHAMPION, 0.1, metrics=["latency_p95_ms"]).passed
    assert not compare({"latency_p95_ms": 1200.0}, CHAMPION, 0.1, metrics=["latency_p95_ms"]).passed


def test_decide_explains_itself() -> None:
    failing = decide(gate(METRICS, {"contains_match": 0.9}), compare(METRICS, {"contains_match": 0.8}, 0.0))
    assert not failing.promote
    assert failing.reasons[0].startswith("FAIL contains_match = 0.6, needs >= 0.9")
    assert any("trails champion 0.8 by 0.2" in r for r in failing.reasons)
    first = decide(gate(METRICS, {"contains_match": 0.5}), None)
    assert first.promote and "no champion to compare with" in first.reasons
    other = compare(METRICS, CHAMPION, 0.02, candidate_digest="a", champion_digest="b")
    assert other.notes == ["note: the champion was evaluated on a different dataset"]
    with pytest.raises(ConfigError, match="^margin:"):
        compare(METRICS, CHAMPION, 1.5)


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
    decision = decide(gate({"contains_match": 0.5}, {"contains_match": 0.4}), None)
    promote("m", 2, tracking_uri=uri, registry_uri=uri, run_id=run.info.run_id, decision=decision)
    assert str(client.get_model_version_by_alias("m", "champion").version) == "2"
    champion = find_champion("m", tracking_uri=uri, registry_uri=uri)
    assert (champion.version, champion.run_id, champion.dataset_digest) == ("2", run.info.run_id, "abc")
    assert champion.metrics["contains_match"] == 0.5
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["llmops_nb.promoted"] == "true" and tags["llmops_nb.candidate_version"] == "2"
    assert "all 1 thresholds met" in tags["llmops_nb.decision"]
    record_decision(run.info.run_id, decide(gate({"x": 0.1}, {"x": 0.2}), None), alias="champion", version="1", tracking_uri=uri)
    assert client.get_run(run.info.run_id).data.tags["llmops_nb.promoted"] == "false"
