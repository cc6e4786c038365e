"""evaluation.json_schema (issue 29): rows ask for structured output and score json_schema_match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.project import load_project_config
from llmops_nb.endpoints.apply import deploy as apply_deploy
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.datasets import load_dataset, load_json_schema
from llmops_nb.evaluation.metrics import aggregate, json_schema_match
from llmops_nb.evaluation.orchestrate import evaluate_endpoint
from llmops_nb.evaluation.rows import read_table

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ('{"answer": "Paris"}', 1.0),
        ('{"answer": "Paris", "confidence": 0.9}', 1.0),
        ('{"answer": 3}', 0.0),  # wrong type
        ('{"confidence": 0.9}', 0.0),  # required field missing
        ('{"answer": "Paris", "city": "x"}', 0.0),  # additionalProperties
        ("Paris", 0.0),  # not JSON
        ('```json\n{"answer": "Paris"}\n```', 0.0),  # JSON in a fence is not a JSON answer
        ("", 0.0),
    ],
)
def test_json_schema_match_is_one_only_for_json_the_schema_validates(answer: str, score: float) -> None:
    assert json_schema_match(answer, SCHEMA) == score


def test_a_bad_schema_file_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"^evaluation\.json_schema: .* an existing JSON Schema file"):
        load_json_schema(missing)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON list"):
        load_json_schema(str(tmp_path / "list.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"type": "no-such-type"}))
    with pytest.raises(ConfigError, match="a valid JSON Schema") as e:
        load_json_schema(str(tmp_path / "bad.json"))
    assert "\n" not in str(e.value)


def test_a_relative_schema_path_is_from_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "answer.schema.json").write_text(json.dumps(SCHEMA))
    cfg = tmp_path / "configs" / "p.yml"
    cfg.write_text("foundation_endpoint: some-endpoint\nevaluation:\n  json_schema: answer.schema.json\n")
    project = load_project_config(cfg)
    assert project.evaluation.json_schema == str(tmp_path / "configs" / "answer.schema.json")
    assert load_json_schema(project.evaluation.json_schema) == SCHEMA


def test_without_a_schema_nothing_changes() -> None:
    rows = [{"response_length": 1, "exact_match": 1.0, "contains_match": 1.0, "error": None, "latency_ms": 1.0,
             "completion_tokens": 1, "tokens_per_second": 1.0}]  # fmt: skip
    assert "json_schema_match" not in aggregate(rows)


def test_an_evaluation_asks_for_the_schema_and_scores_the_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An external model on the fake provider answers JSON on every other row: the request carries
    the schema as response_format, and json_schema_match is 0.5, with its interval."""
    from llmops_nb.testing import fake_workspace
    from llmops_nb.testing.provider import fake_provider

    rows = load_dataset(max_rows=6)
    monkeypatch.setenv("LLMOPS_SECRET_LLM_OPENAI", "sk-schema-0123456789")
    with fake_provider() as provider, fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        answers = {r["question"]: i for i, r in enumerate(rows)}

        def reply(body: dict) -> str:
            index = answers.get(body["messages"][-1]["content"], 0)
            return json.dumps({"answer": "x"}) if index % 2 == 0 else "plain text"

        provider.reply = reply
        external = {"name": "gpt", "provider": "openai", "task": "llm/v1/chat",
                    "openai_config": {"openai_api_key": "{{secrets/llm/openai}}", "openai_api_base": provider.base_url}}  # fmt: skip
        body = {"name": "json-chat", "served_entities": [{"name": "gpt", "external_model": external}]}
        apply_deploy(ws.client(), EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
        result = evaluate_endpoint(
            ws.client(),
            "json-chat",
            rows,
            concurrency=2,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            progress=False,
            mlflow_scoring=False,
            output_dir=tmp_path / "out",
            json_schema=SCHEMA,
        )
        sent = [r["body"].get("response_format") for r in provider.requests]
    assert len(sent) == 6 and all(
        f == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}} for f in sent
    )
    assert result.metrics["json_schema_match"] == 0.5 and result.metrics["json_schema_match/mean"] == 0.5
    table = read_table(tmp_path / "out" / "eval_rows.jsonl")
    assert list(table["json_schema_match"]) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
