"""Candidates on the same rows: resolved before any row is sent, asked at once, one parent run, a child each."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.project import CandidateConfig, DecisionConfig, PriceConfig
from llmops_nb.endpoints.apply import deploy as apply_deploy
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.candidates import Target, cost_per_1k, resolve
from llmops_nb.evaluation.datasets import BUNDLED_PATH, load_dataset
from llmops_nb.evaluation.orchestrate import evaluate_candidates

#: entity m-1 answers all 20 rows right; m-2 misses every odd one (their expected answer is m-1's echo)
PAIRED = [
    {"id": f"p{i:02d}", "question": f"Say w{i}", "expected": f"w{i}" if i % 2 == 0 else f"m-1 echo: say w{i}", "aliases": []}
    for i in range(20)
]


@pytest.fixture
def two(fake_workspace):  # noqa: ANN001, ANN201
    """Endpoint ``pair`` serving versions 1 (all traffic) and 2 of ``m``, and ``solo`` serving version 1."""
    for name, versions, routes in (("pair", ["1", "2"], {"m-1": 100, "m-2": 0}), ("solo", ["1"], None)):
        body = {
            "name": name,
            "served_entities": [{"entity_name": "m", "entity_version": v, "scale_to_zero_enabled": False} for v in versions],
        }
        if routes:
            body["traffic_config"] = {"routes": [{"served_entity_name": k, "traffic_percentage": p} for k, p in routes.items()]}
        apply_deploy(fake_workspace.client(), EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
    fake_workspace.reset()
    return fake_workspace


def _registry(tmp_path: Path) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry.create_registered_model("m")
    for _ in range(2):
        registry.create_model_version("m", source=str(tmp_path))
    return uri


def test_candidates_resolve_to_what_answers_and_a_missing_one_is_one_line(two) -> None:  # noqa: ANN001
    w = two.client()
    cands = [
        CandidateConfig(name="new"),
        CandidateConfig(name="v1", endpoint="pair", served_entity="m-1"),
        CandidateConfig(name="solo", endpoint="solo"),
        CandidateConfig(name="one", version="1"),
    ]
    targets = resolve(w, cands, endpoint="pair", model_name="m", model_version="2")
    assert targets == [
        Target("new", "pair", "m-2", "2"),
        Target("v1", "pair", "m-1", "1"),
        Target("solo", "solo"),
        Target("one", "pair", "m-1", "1"),
    ]
    bad = [
        (CandidateConfig(name="x", endpoint="nope"), r"^evaluation\.candidates\[0\]\.endpoint: 'nope'"),
        (CandidateConfig(name="x", served_entity="m-9"), r"^evaluation\.candidates\[0\]\.served_entity: 'm-9'.*m-1, m-2"),
        (
            CandidateConfig(name="x", endpoint="solo", version="2"),
            r"^evaluation\.candidates\[0\]\.version: '2'.*not a served entity",
        ),
    ]
    for cand, message in bad:
        with pytest.raises(ConfigError, match=message):
            resolve(w, [cand], endpoint="pair", model_name="m", model_version="2")
    assert [r for r in two.requests() if r["path"].endswith("/invocations")] == []


def test_three_candidates_on_the_same_rows_one_parent_run_and_a_decision(two, tmp_path: Path) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    uri = _registry(tmp_path)
    targets = [Target("v1", "pair", "m-1", "1"), Target("new", "pair", "m-2", "2"), Target("solo", "solo")]
    evaluation = evaluate_candidates(
        two.client(),
        targets,
        PAIRED,
        model_name="m",
        thresholds={"contains_match": 0.2},
        baseline="v1",
        prices={"solo": PriceConfig(input_per_million=1.0, output_per_million=2.0)},
        tracking_uri=uri,
        registry_uri=uri,
        progress=False,
        mlflow_scoring=False,
        output_dir=tmp_path / "out",
    )
    served = [r for r in two.requests() if r["path"].endswith("/invocations") and r["status"] == 200]
    assert len(served) == 60  # every candidate asked every row once
    by_path = pd.Series([r["path"] for r in served]).value_counts().to_dict()
    assert by_path == {
        "/serving-endpoints/pair/served-models/m-1/invocations": 20,
        "/serving-endpoints/pair/served-models/m-2/invocations": 20,
        "/serving-endpoints/solo/invocations": 20,
    }
    # new (m-2) is wrong on the 10 odd rows: worse than v1 with McNemar p < 0.05; solo answers as v1 on every row
    assert evaluation.decision.action == "keep" and not evaluation.promoted
    table = evaluation.comparison_table.set_index(["candidate", "metric"])
    new = table.loc[("new", "contains_match")]
    assert new["diff"] == pytest.approx(-0.5) and new["p_value"] < 0.05
    assert table.loc[("solo", "contains_match"), "diff"] == 0
    assert all(d.p_raw is not None for d in evaluation.comparisons)  # two against the baseline: Holm
    record = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert [c["name"] for c in record["candidates"]] == ["v1", "new", "solo"]
    assert record["candidates"][2]["cost_per_1k"] > 0 and record["candidates"][0]["cost_per_1k"] is None
    assert record["decision"]["action"] == "keep" and record["rows"] == 20
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(evaluation.run_id)
    assert parent.data.tags["llmops_nb.decision_action"] == "keep" and parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["new", "solo", "v1"]
    assert all("contains_match/ci_low" in r.data.metrics for r in children)
    assert "decision.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert client.get_registered_model("m").aliases == {}
    assert evaluation.decision_plot == tmp_path / "out" / "decision_plot.png" and evaluation.decision_plot.stat().st_size > 0
    assert "decision_plot.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    differ = evaluation.disagreements
    assert list(differ["id"]) == [f"p{i:02d}" for i in range(1, 20, 2)]  # m-2 misses the odd rows, the others do not
    assert set(differ["new: contains_match"]) == {0.0} and set(differ["v1: contains_match"]) == {1.0}


def test_a_better_version_on_the_same_endpoint_takes_the_alias(two, tmp_path: Path) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    uri = _registry(tmp_path)
    targets = [Target("v2", "pair", "m-2", "2"), Target("v1", "pair", "m-1", "1")]
    evaluation = evaluate_candidates(
        two.client(), targets, PAIRED, model_name="m", thresholds={}, tracking_uri=uri, registry_uri=uri,
        progress=False, mlflow_scoring=False,
    )  # fmt: skip
    assert evaluation.decision.action == "promote" and evaluation.decision.winner == "v1" and evaluation.promoted
    assert str(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("m", "champion").version) == "1"
    assert evaluation.winner == "v1"


def test_cost_per_1k_from_tokens_and_from_hours() -> None:
    table = pd.DataFrame({"prompt_tokens": [100, 300], "completion_tokens": [10, 30], "error": [None, None]})
    tokens = cost_per_1k(PriceConfig(input_per_million=2.0, output_per_million=10.0), table, 4.0)
    assert tokens == pytest.approx(1000 * (200 * 2 + 20 * 10) / 1e6)
    hourly = cost_per_1k(PriceConfig(per_hour=36.0), table, 4.0)  # 2 s a request at this concurrency
    assert hourly == pytest.approx(36.0 * 2 * 1000 / 3600)
    assert cost_per_1k(None, table, 4.0) is None


#: The bundled rows, and the fake provider's external models answering them: ``right`` and ``twin``
#: say the expected answer on every row, ``half`` on the even rows only (every other row wrong).
BUNDLED_ROWS = load_dataset(BUNDLED_PATH)
EXPECTED = {r["question"]: (i, r["expected"]) for i, r in enumerate(BUNDLED_ROWS)}


def _answer(body: dict) -> str:
    index, expected = EXPECTED[body["messages"][-1]["content"]]
    return "I am not sure." if body["model"] == "half" and index % 2 else expected


@pytest.fixture
def bundled(tmp_path: Path, monkeypatch):  # noqa: ANN001, ANN201
    """A fake workspace with endpoints ``right``, ``twin`` and ``half``: external models on the fake provider."""
    from llmops_nb.testing import fake_workspace
    from llmops_nb.testing.provider import fake_provider

    monkeypatch.setenv("LLMOPS_SECRET_LLM_OPENAI", "sk-bundled-0123456789")
    with fake_provider() as provider, fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        provider.reply = _answer
        for name in ("right", "twin", "half"):
            external = {"name": name, "provider": "openai", "task": "llm/v1/chat",
                        "openai_config": {"openai_api_key": "{{secrets/llm/openai}}", "openai_api_base": provider.base_url}}  # fmt: skip
            body = {"name": name, "served_entities": [{"name": name, "external_model": external}]}
            apply_deploy(ws.client(), EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
        yield ws


def test_bundled_rows_half_wrong_is_refused_at_p_005_and_a_twin_never_wins(bundled, tmp_path: Path) -> None:  # noqa: ANN001
    assert len(BUNDLED_ROWS) == 52
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = {"model_name": None, "thresholds": {}, "baseline": "right", "tracking_uri": uri, "progress": False,
              "mlflow_scoring": False}  # fmt: skip
    half = evaluate_candidates(bundled.client(), [Target("right", "right"), Target("half", "half")], BUNDLED_ROWS, **common)
    assert half.estimates["right"]["contains_match"].value == 1.0  # the provider really answered every row
    diff = half.comparison_table.set_index(["candidate", "metric"]).loc[("half", "contains_match")]
    assert diff["diff"] == pytest.approx(-0.5) and diff["test"] == "mcnemar exact" and diff["n"] == 52
    assert diff["p_value"] < 0.05 and diff["ci_high"] < 0  # 26 discordant rows, all one way: p = 2 / 2**26
    assert half.decision.action == "keep" and half.decision.winner is None and not half.promoted
    assert half.decision.verdicts[0].verdict == "fail" and "worse than right" in half.decision.reason
    assert len(half.disagreements) == 26

    for mode in ("non_inferiority", "superiority"):
        twins = evaluate_candidates(
            bundled.client(), [Target("right", "right"), Target("twin", "twin")], BUNDLED_ROWS,
            decision=DecisionConfig(mode=mode, margin=0.05), **common,
        )  # fmt: skip
        same = twins.comparison_table.set_index(["candidate", "metric"]).loc[("twin", "contains_match")]
        assert same["diff"] == 0 and next(d for d in twins.comparisons if d.metric == "contains_match").identical, mode
        assert twins.decision.action in ("keep", "inconclusive") and twins.decision.winner is None, mode
        assert len(twins.disagreements) == 0
