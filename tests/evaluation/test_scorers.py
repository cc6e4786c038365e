"""Answer scores on hand-made answers, and the same scores through mlflow.genai.evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_nb.evaluation import scorers
from llmops_nb.evaluation.metrics import contains_match, exact_match, normalize, response_length, tokens_per_second


def test_normalize_drops_case_punctuation_accents_and_articles() -> None:
    assert normalize("The  Café, in PARIS!") == ["cafe", "in", "paris"]


@pytest.mark.parametrize(
    ("answer", "expected", "aliases", "exact", "contains"),
    [
        ("The capital of France is Paris.", "Paris", [], 0.0, 1.0),
        ("paris", "Paris", [], 1.0, 1.0),
        ("The Sun.", "Sun", [], 1.0, 1.0),
        ("four", "4", ["four"], 1.0, 1.0),
        ("It is 14.", "4", ["four"], 0.0, 0.0),
        ("Shakespeare wrote it", "William Shakespeare", ["Shakespeare"], 0.0, 1.0),
        ("William Shakespeare", "William Shakespeare", [], 1.0, 1.0),
        ("Leonardo painted it", "Leonardo da Vinci", [], 0.0, 0.0),
        ("", "blue", [], 0.0, 0.0),
    ],
)
def test_exact_and_contains_match(answer: str, expected: str, aliases: list[str], exact: float, contains: float) -> None:
    assert exact_match(answer, expected, aliases) == exact
    assert contains_match(answer, expected, aliases) == contains


def test_length_and_token_rate() -> None:
    assert response_length("The capital is Paris.") == 4
    assert response_length("") == 0
    assert tokens_per_second(10, 500.0) == 20.0
    assert tokens_per_second(10, None) is None and tokens_per_second(None, 5.0) is None


def test_mlflow_genai_evaluate_gives_the_same_scores_offline(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    rows = [
        {
            "question": "Capital of France?",
            "expected": "Paris",
            "aliases": [],
            "answer": "It is Paris.",
            "error": None,
            "latency_ms": 200.0,
            "completion_tokens": 4,
        },
        {
            "question": "2+2?",
            "expected": "4",
            "aliases": ["four"],
            "answer": "four",
            "error": None,
            "latency_ms": 100.0,
            "completion_tokens": 1,
        },
        {
            "question": "Colour of snow?",
            "expected": "white",
            "aliases": [],
            "answer": "",
            "error": "endpoint chat: 503",
            "latency_ms": None,
            "completion_tokens": None,
        },
    ]
    with mlflow.start_run():
        metrics = scorers.run_mlflow_scorers([scorers.mlflow_record(r) for r in rows], uri)
    assert metrics["exact_match/mean"] == pytest.approx(1 / 3)
    assert metrics["contains_match/mean"] == pytest.approx(2 / 3)
    assert metrics["latency_ms/mean"] == pytest.approx(150.0)  # the failed row has no latency
    assert metrics["tokens_per_second/mean"] == pytest.approx(15.0)


def test_register_and_evaluate_runs_share_one_experiment_rule(tmp_path: Path) -> None:
    """tracking.uris.experiment_id (used by both steps) puts a new local experiment's artifacts next to the store."""
    import mlflow

    from llmops_nb.tracking import uris

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        made = uris.experiment_id("team/evals", uri)
        assert uris.experiment_id("team/evals", uri) == made  # found, not made again
        location = mlflow.get_experiment(made).artifact_location
    finally:
        mlflow.set_tracking_uri(before)
    assert location == (tmp_path / "mlruns" / "team_evals").as_uri()


def test_the_judge_reports_its_agreement_with_contains_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge (an external-model endpoint on the fake provider) that says yes on rows 0-9 of 20,
    where contains_match holds on the even rows: it agrees on 10 of 20, kappa 0."""
    import json
    import re

    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.endpoints.apply import deploy
    from llmops_nb.evaluation.orchestrate import evaluate_endpoint
    from llmops_nb.testing import fake_workspace
    from llmops_nb.testing.provider import fake_provider

    with fake_provider() as provider:
        provider.reply = lambda body: (
            '{"result": "%s", "rationale": "fake judge"}'
            % ("yes" if int(re.search(r"question (\d+)", json.dumps(body)).group(1)) < 10 else "no")
        )
        monkeypatch.setenv("LLMOPS_SECRET_JUDGE_OPENAI", "sk-judge-canary-0123456789")
        with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
            for key, value in ws.env().items():
                monkeypatch.setenv(key, value)
            w = ws.client()
            for body in (
                {
                    "name": "answers",
                    "served_entities": [{"entity_name": "m", "entity_version": "1", "scale_to_zero_enabled": False}],
                },
                {
                    "name": "judge",
                    "served_entities": [
                        {
                            "name": "judge",
                            "external_model": {
                                "name": "gpt-judge",
                                "provider": "openai",
                                "task": "llm/v1/chat",
                                "openai_config": {
                                    "openai_api_key": "{{secrets/judge/openai}}",
                                    "openai_api_base": provider.base_url,
                                },
                            },
                        }
                    ],
                },
            ):
                deploy(w, EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
            rows = [
                {"id": f"r{i}", "question": f"question {i}", "expected": "question" if i % 2 == 0 else "x", "aliases": []}
                for i in range(20)
            ]
            result = evaluate_endpoint(
                w, "answers", rows, judge_endpoint="judge", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", progress=False,
                mlflow_scoring=False, output_dir=tmp_path / "out",
            )  # fmt: skip
    m = result.metrics
    assert m["contains_match"] == 0.5 and m["correctness/mean"] == 0.5
    assert m["correctness/kappa_contains_match"] == pytest.approx(0.0)
    assert m["correctness/kappa_contains_match/ci_low"] < 0 < m["correctness/kappa_contains_match/ci_high"]
