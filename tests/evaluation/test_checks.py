"""The evaluation section checked up front: dataset, threshold names, candidates; relative paths from the config's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_nb.chain.runner import prepare
from llmops_nb.config.project import load_project_config
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.checks import check_evaluation

ENDPOINT = "endpoint:\n  name: chat\n  served_entities: [{entity_name: m, entity_version: '1'}]\n"


def _config(folder: Path, evaluation: str) -> Path:
    path = folder / "project.yml"
    path.write_text(f"model: {{name: m}}\n{ENDPOINT}evaluation:\n{evaluation}")
    return path


def test_a_relative_dataset_is_read_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.jsonl").write_text(json.dumps({"id": "a", "question": "q?", "expected": "x"}) + "\n")
    project = load_project_config(_config(tmp_path, "  dataset: data/qa.jsonl\n"))
    monkeypatch.chdir(tmp_path / "data")  # wherever it runs from (04_evaluate runs in notebooks/)
    assert project.evaluation.dataset == str(tmp_path / "data" / "qa.jsonl")
    assert check_evaluation(project)[0].startswith("dataset: 1 rows in ")


@pytest.mark.parametrize(
    ("evaluation", "line"),
    [
        ("  dataset: nowhere.jsonl\n", "dataset: '"),
        ("  dataset: bad.jsonl\n", "bad.jsonl:1.expected: None is not allowed; expected a non-empty string"),
        ("  thresholds: {contains_mach: 0.5}\n", "thresholds.contains_mach: 'contains_mach' is not allowed; known metrics: "),
        (
            "  candidates: [{name: v9, served_entity: m-9}]\n",
            "evaluation.candidates[0].served_entity: 'm-9' is not allowed; a served entity of chat: m-1",
        ),
        (
            "  engine: spark\n  spark: {results_table: main.eval.answers}\n",
            "evaluation.spark.results_table: 'main.eval.answers' is not allowed; a Databricks Delta table",
        ),
    ],
)
def test_the_chain_refuses_a_bad_evaluation_section_before_any_step(tmp_path: Path, evaluation: str, line: str) -> None:
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "a", "question": "q?"}) + "\n")
    path = _config(tmp_path, evaluation)
    with pytest.raises(ConfigError) as err:
        prepare(path, "deploy,evaluate", "local", {})
    assert str(err.value).startswith(line) and "\n" not in str(err.value)
    assert prepare(path, "deploy", "local", {}).steps == ["deploy"]  # no evaluate, nothing to check


def test_engine_spark_is_checked_and_said(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    lines = check_evaluation(load_project_config(_config(tmp_path, "  engine: spark\n  spark: {partitions: 4}\n")))
    assert "engine: spark (pyspark and Java found; 4 tasks, concurrency 8 split between them)" in lines


def test_a_judge_leaves_threshold_names_open_and_a_replay_needs_no_dataset(tmp_path: Path) -> None:
    path = _config(tmp_path, "  dataset: nowhere.jsonl\n  judge_endpoint: judge\n  thresholds: {correctness/mean: 0.5}\n")
    project = load_project_config(path)
    lines = check_evaluation(project, replay=True)
    assert lines == ["thresholds: not checked by name (the judge judge adds its own metrics)"]
    assert prepare(path, "evaluate", "local", {"evaluate": {"dataset_source": "inference_table"}}).steps == ["evaluate"]


def test_candidates_on_other_endpoints_are_asked_of_the_workspace(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    project = load_project_config(_config(tmp_path, "  candidates: [{name: gpt, endpoint: gpt-4o-external}]\n"))
    assert check_evaluation(project, deploying=True)[-1].startswith("candidates: gpt")  # no workspace: not asked
    with pytest.raises(ConfigError, match=r"^evaluation\.candidates\[0\]\.endpoint: 'gpt-4o-external' is not allowed"):
        check_evaluation(project, w=fake_workspace.client(), deploying=True)


def test_the_runs_dataset_and_threshold_overrides_are_checked_too(tmp_path: Path) -> None:
    from llmops_nb.config.project import parse_thresholds, with_evaluation

    path = _config(tmp_path, "  thresholds: {contains_match: 0.2}\n")
    with pytest.raises(ConfigError, match=r"^thresholds\.contains_mach: 'contains_mach' is not allowed"):
        prepare(path, "evaluate", "local", {"evaluate": {"thresholds": "contains_mach=0.5"}})
    with pytest.raises(ConfigError, match=r"^dataset: '.*nowhere\.jsonl' is not allowed"):
        prepare(path, "evaluate", "local", {"evaluate": {"dataset": str(tmp_path / "nowhere.jsonl")}})
    assert parse_thresholds("contains_match=0.3, latency_p95_ms=30000") == {"contains_match": 0.3, "latency_p95_ms": 30000.0}
    with pytest.raises(ConfigError, match=r"^thresholds: 'contains_match' is not allowed; metric=value items"):
        parse_thresholds("contains_match")
    with pytest.raises(ConfigError, match=r"^thresholds: 'x=high' is not allowed"):
        parse_thresholds("x=high")
    project = with_evaluation(load_project_config(path), thresholds="exact_match=0.1")
    assert project.evaluation.thresholds == {"exact_match": 0.1}
