"""The spark engine (pyspark local mode) against the fake workspace: the same rows, answers and metrics
as the threads engine; exactly once under a task retry and a resume; bad input in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmops_nb.config.project import EvaluationConfig
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.datasets import load_dataset
from llmops_nb.evaluation.orchestrate import evaluate_endpoint
from llmops_nb.evaluation.spark_engine import SparkEngine, result_files, result_rows
from tests.evaluation.test_orchestrate import CRAFTED, asked, deploy

pytestmark = pytest.mark.spark

#: What differs between two runs of the same rows: the time each answer took.
TIMED = ("latency_ms", "tokens_per_second")


@pytest.fixture
def chat(fake_workspace):  # noqa: ANN001, ANN201
    deploy(fake_workspace, "chat")
    fake_workspace.reset()
    return fake_workspace


def _untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not any(t in k for t in ("latency", "tokens_per_second", "seconds", "traced"))}


def test_spark_and_threads_give_the_same_rows_answers_and_metrics(chat, spark, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    rows = load_dataset() + CRAFTED  # 54 rows, one exact and one contained match among them
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common: dict[str, Any] = {"concurrency": 4, "tracking_uri": uri, "progress": False, "trace_rows": 2}
    threads = evaluate_endpoint(chat.client(), "chat", rows, output_dir=tmp_path / "t", **common)
    engine = SparkEngine(partitions=3, spark=spark, results=tmp_path / "results")
    on_spark = evaluate_endpoint(chat.client(), "chat", rows, output_dir=tmp_path / "s", engine=engine, **common)
    assert len(asked(chat)) == 2 * len(rows)  # each engine asked each row once
    columns = [c for c in threads.table.columns if c not in TIMED]
    assert list(on_spark.table["id"]) == [r["id"] for r in rows]
    assert on_spark.table[columns].equals(threads.table[columns])
    assert on_spark.metrics["exact_match"] > 0 and on_spark.metrics["contains_match"] > on_spark.metrics["exact_match"]
    assert _untimed(on_spark.metrics) == _untimed(threads.metrics)
    run = mlflow.MlflowClient(uri).get_run(on_spark.run_id)
    assert run.data.params["engine"] == "spark" and run.data.params["rows"] == str(len(rows))
    assert mlflow.MlflowClient(uri).get_run(threads.run_id).data.params["engine"] == "threads"
    assert not any(chat.token in v for v in run.data.params.values())
    assert len(result_files(tmp_path / "results")) == 3  # one file a partition


def _ask(engine: SparkEngine, ws, rows: list[dict[str, Any]], progress: bool = False) -> list[tuple[int, dict[str, Any]]]:  # noqa: ANN001
    """The engine's (position, table row) hand-overs for ``rows`` (no MLflow run: the engine alone)."""
    handed: list[tuple[int, dict[str, Any]]] = []
    settings: dict[str, Any] = {"max_tokens": 16, "temperature": 0.0, "system": None, "progress": progress, "resume_path": None}
    engine.stream_rows(ws.client(), "chat", rows, lambda k, row: handed.append((k, row)), concurrency=8, **settings)
    return handed


def test_a_failed_task_is_retried_and_leaves_each_of_2000_ids_once(chat, spark, tmp_path: Path) -> None:  # noqa: ANN001
    rows = [{"id": f"r{i:04d}", "question": f"Say {i}.", "expected": str(i)} for i in range(2000)]

    def fail_once(attempt: int, row: dict[str, Any]) -> None:  # one task's first attempt dies mid-partition
        if attempt == 0 and row["id"] == "r1234":
            raise RuntimeError("injected task failure")

    handed = _ask(SparkEngine(partitions=4, spark=spark, results=tmp_path / "results", hook=fail_once), chat, rows)
    ids = [row["id"] for _, row in handed]
    assert len(ids) == 2000 and len(set(ids)) == 2000
    assert sorted(handed, key=lambda h: h[0]) == sorted(handed, key=lambda h: h[1]["id"])  # positions are the dataset's
    assert not any(row["error"] for _, row in handed)
    names = sorted(p.name for p in (tmp_path / "results").glob("gen-0/part-*"))
    assert len(names) == 4 and any("-a1-" in n for n in names)  # the failed partition's file is its second attempt
    assert len(asked(chat)) > 2000  # what the failed attempt had answered was asked again


def test_a_resumed_run_asks_only_what_is_missing(chat, spark, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    rows = [{"id": f"q{i}", "question": f"Say {i}.", "expected": str(i)} for i in range(40)]
    folder = tmp_path / "results"
    engine = SparkEngine(partitions=2, spark=spark, results=folder)
    _ask(engine, chat, rows[:25])
    chat.reset()
    capsys.readouterr()
    handed = _ask(engine, chat, rows, progress=True)
    assert "15/15" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]  # the bar: rows of written partitions
    assert sorted(asked(chat)) == sorted(r["question"] for r in rows[25:])
    assert sorted(k for k, _ in handed) == list(range(40))
    assert sorted(row["id"] for _, row in result_rows(folder)) == sorted(r["id"] for r in rows)


def test_bad_engine_settings_are_one_line() -> None:
    for bad, says in ({"engine": "dask"}, "'threads', 'spark'"), ({"spark": {"partitions": 0}}, "spark.partitions: 0"):
        with pytest.raises(ConfigError, match=says) as caught:
            EvaluationConfig.model_validate(bad)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="evaluation.spark.partitions: 0") as caught:
        SparkEngine(partitions=0)  # before any session, run or request
    assert "\n" not in str(caught.value)


def test_the_evaluate_step_on_engine_spark_matches_threads_and_resumes(chat, spark, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    from llmops_nb.backends import Backend
    from llmops_nb.config.project import load_project_config
    from llmops_nb.steps.evaluate import evaluate

    db = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    backend = Backend(kind="local", host=chat.host, token=chat.token, tracking_uri=db, registry_uri=db, home=chat.home)
    head = "backend: local\nfoundation_endpoint: chat\nmodel:\n  max_tokens: 32\n  temperature: 0.0\n"
    tables = {}
    for engine in ("threads", "spark"):
        config = tmp_path / f"{engine}.yml"
        config.write_text(head + f"evaluation:\n  max_rows: 12\n  engine: {engine}\n  spark: {{partitions: 3}}\n")
        evaluation = evaluate(load_project_config(config), backend, endpoint_name="chat", promote=False, progress=False)
        tables[engine] = evaluation.table.drop(columns=list(TIMED))
        assert MlflowClient(db).get_run(evaluation.run_id).data.params["engine"] == engine
    assert tables["spark"].equals(tables["threads"]) and len(tables["spark"]) == 12
    assert len(asked(chat)) == 24
    chat.reset()
    again = evaluate(
        load_project_config(tmp_path / "spark.yml"), backend, endpoint_name="chat", promote=False, progress=False, resume=True
    )
    assert asked(chat) == [] and again.table.drop(columns=list(TIMED)).equals(tables["spark"])  # all 12 from the results

    # the same rows as a Parquet file (relative to the config), read on Spark; a table name stays a name
    import pandas as pd

    from llmops_nb.evaluation.checks import check_evaluation

    pd.DataFrame(load_dataset(max_rows=12)).to_parquet(tmp_path / "qa.parquet")
    config = tmp_path / "parquet.yml"
    config.write_text(head + "evaluation:\n  dataset: qa.parquet\n  engine: spark\n")
    project = load_project_config(config)
    assert any(line.startswith(f"dataset: {tmp_path / 'qa.parquet'} read on Spark") for line in check_evaluation(project))
    from_parquet = evaluate(project, backend, endpoint_name="chat", promote=False, progress=False)
    assert from_parquet.table.drop(columns=list(TIMED)).equals(tables["threads"])
    config.write_text(head + "evaluation:\n  dataset: main.eval.qa\n  engine: spark\n")
    assert load_project_config(config).evaluation.dataset == "main.eval.qa"
    with pytest.raises(ConfigError, match="evaluation.dataset: 'main.eval.qa' is not allowed; an existing table"):
        check_evaluation(load_project_config(config))


def test_where_the_results_go_is_checked_for_where_it_runs(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    from llmops_nb.config.project import SparkConfig
    from llmops_nb.evaluation.spark_engine import engine_for

    assert engine_for("threads") is None
    with pytest.raises(ConfigError, match="evaluation.spark.results_table: 'main.eval.answers'.*Databricks") as caught:
        engine_for("spark", SparkConfig(results_table="main.eval.answers"))  # locally: Parquet files
    assert "\n" not in str(caught.value)
    engine = engine_for("spark", SparkConfig(results_path=str(tmp_path / "r"), partitions=3))
    assert engine is not None and engine.partitions == 3
    assert engine.run_params(tmp_path / "chat-v1.jsonl") == {"engine": "spark", "results": str(tmp_path / "r" / "chat-v1.spark")}
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")  # on a cluster: a folder every node sees
    with pytest.raises(ConfigError, match=r"evaluation.spark.results_path: None.*/Volumes/"):
        engine_for("spark", SparkConfig())
    on_cluster = engine_for("spark", SparkConfig(results_path="/Volumes/main/eval/v", results_table="main.eval.answers"))
    assert on_cluster is not None and on_cluster.run_params(None)["results"] == "main.eval.answers"
