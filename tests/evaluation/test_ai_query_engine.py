"""The ai_query engine against the fake workspace: its statements on the fake's SQL warehouse ask the same rows
as the threads engine and give the same answers and metrics; a failing row is that row's error; bad input
is one line with nothing asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmops_nb.config.project import EvaluationConfig
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation import ai_query_sql as aq
from llmops_nb.evaluation.ai_query_engine import AiQueryEngine
from llmops_nb.evaluation.datasets import load_dataset
from llmops_nb.evaluation.orchestrate import evaluate_endpoint
from tests.evaluation.test_orchestrate import deploy

FOUNDATION = "databricks-smollm2-135m-instruct"
#: The fake answers "[<entity>] echo: <question>": one row matches exactly, one contains its answer.
CRAFTED = [
    {"id": "x1", "question": "Repeat", "expected": f"{FOUNDATION} echo: repeat", "aliases": []},
    {"id": "x2", "question": "Say the word blue.", "expected": "blue", "aliases": []},
]
#: What ai_query does not return (the answer's text alone), and what differs between two runs.
NOT_RETURNED = ("latency_ms", "tokens_per_second", "prompt_tokens", "completion_tokens", "served_entity")


def _answered(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics of the answers themselves (not their timing or token usage)."""
    timed = ("latency", "tokens", "seconds", "traced")
    return {k: v for k, v in metrics.items() if not any(t in k for t in timed)}


def _via_ai_query(ws) -> list[dict[str, Any]]:  # noqa: ANN001
    return [r for r in ws.requests() if r.get("via") == "ai_query"]


def _statements(ws) -> list[dict[str, Any]]:  # noqa: ANN001
    return [r for r in ws.requests() if r["path"] == "/api/2.0/sql/statements"]


def test_ai_query_and_threads_give_the_same_answers_and_metrics(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    ws = fake_workspace
    rows = load_dataset() + CRAFTED  # 54 rows
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common: dict[str, Any] = {"concurrency": 4, "tracking_uri": uri, "progress": False, "trace_rows": 2, "system": None}
    threads = evaluate_endpoint(ws.client(), FOUNDATION, rows, output_dir=tmp_path / "t", **common)
    ws.reset()
    ws.set_faults(sql_chunk_rows=7)  # each statement's result in several EXTERNAL_LINKS chunks
    engine = AiQueryEngine(warehouse_id="wh-1", rows_per_statement=20)
    sql = evaluate_endpoint(ws.client(), FOUNDATION, rows, output_dir=tmp_path / "a", engine=engine, **common)
    assert engine.statements == 3  # 54 rows, 20 a statement
    sent = _statements(ws)
    assert len(sent) == 3 and all(s["body"]["disposition"] == "EXTERNAL_LINKS" for s in sent)
    assert all("ai_query('databricks-smollm2-135m-instruct', request" in s["body"]["statement"] for s in sent)
    assert not any(r["question"] in s["body"]["statement"] for s in sent for r in rows)  # rows are parameters
    assert [r for r in ws.requests() if "/result/chunks/" in r["path"]]  # chunks after the first were read
    asked = _via_ai_query(ws)
    assert sorted(a["body"]["messages"][-1]["content"] for a in asked) == sorted(r["question"] for r in rows)
    assert all(a["body"]["max_tokens"] == 64 and a["body"]["temperature"] == 0.0 for a in asked)
    columns = [c for c in threads.table.columns if c not in NOT_RETURNED]
    assert list(sql.table["id"]) == [r["id"] for r in rows]
    assert sql.table[columns].equals(threads.table[columns])
    assert sql.metrics["exact_match"] > 0 and sql.metrics["contains_match"] > sql.metrics["exact_match"]
    assert _answered(sql.metrics) == _answered(threads.metrics)
    assert sql.table["latency_ms"].isna().all() and sql.table["served_entity"].isna().all()  # not returned by ai_query
    run = mlflow.MlflowClient(uri).get_run(sql.run_id)
    assert run.data.params["engine"] == "ai_query" and run.data.params["ai_query_warehouse_id"] == "wh-1"
    assert mlflow.MlflowClient(uri).get_run(threads.run_id).data.params["engine"] == "threads"


def test_a_failing_row_is_that_rows_error_and_a_resume_asks_only_it(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    ws = fake_workspace
    rows = [{"id": f"q{i}", "question": f"Say {i}.", "expected": str(i)} for i in range(12)]
    ws.set_faults(fail_questions=["Be brief.\n\nSay 5."])
    uri, resume = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "answers.jsonl"
    common: dict[str, Any] = {"tracking_uri": uri, "progress": False, "resume_path": resume, "system": "Be brief."}
    engine = AiQueryEngine(warehouse_id="wh-1", rows_per_statement=5)
    result = evaluate_endpoint(ws.client(), FOUNDATION, rows, engine=engine, **common)
    failed = result.table[result.table["error"].notna()]
    assert list(failed["id"]) == ["q5"] and "500 INTERNAL_ERROR" in failed["error"].iloc[0]
    assert failed["error"].iloc[0].startswith(f"endpoint {FOUNDATION} (ai_query):")
    assert result.metrics["error_rate"] == pytest.approx(1 / 12) and result.metrics["rows"] == 12
    ok = result.table[result.table["error"].isna()]
    assert ok["answer"].str.startswith(f"[{FOUNDATION}] echo: Be brief.").all()  # the system prompt in front of the question
    # resumed: only the failed row is asked again, in one statement
    ws.reset()
    again = evaluate_endpoint(ws.client(), FOUNDATION, rows, engine=engine, **common)
    assert [a["body"]["messages"][-1]["content"] for a in _via_ai_query(ws)] == ["Be brief.\n\nSay 5."]
    assert len(_statements(ws)) == 1 and again.metrics["error_rate"] == 0.0


def test_bad_input_is_one_line_and_nothing_is_asked(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    ws = fake_workspace
    for bad, says in (
        ({"engine": "ai_query"}, "ai_query.warehouse_id: None"),
        ({"engine": "ai_query", "ai_query": {"warehouse_id": "a b"}}, "warehouse_id"),
        ({"engine": "ai_query", "ai_query": {"warehouse_id": "w", "rows_per_statement": 0}}, "rows_per_statement"),
        (
            {"engine": "ai_query", "ai_query": {"warehouse_id": "w"}, "candidates": [{"name": "a", "served_entity": "m-1"}]},
            r"candidates\[0\]\.served_entity",
        ),
        ({"engine": "ai_query", "ai_query": {"warehouse_id": "w"}, "json_schema": "s.json"}, "json_schema"),
    ):
        with pytest.raises(ConfigError, match=says) as caught:
            EvaluationConfig.model_validate(bad)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="evaluation.ai_query.warehouse_id") as caught:
        AiQueryEngine(warehouse_id="")
    deploy(ws, "chat")  # a custom model endpoint
    ws.reset()
    rows = load_dataset(max_rows=3)
    for endpoint, says in (("chat", "serves a custom model"), ("nope", "an existing serving endpoint")):
        with pytest.raises(ConfigError, match=says) as caught:
            AiQueryEngine(warehouse_id="wh-1").stream_rows(
                ws.client(), endpoint, rows, lambda k, r: None, concurrency=1, max_tokens=8, temperature=0.0,
                system=None, progress=False, resume_path=None,
            )  # fmt: skip
        assert "\n" not in str(caught.value)
    assert not _statements(ws) and not _via_ai_query(ws)


def _backend(ws, tmp_path: Path, monkeypatch):  # noqa: ANN001, ANN202
    from llmops_nb.backends import Backend

    db = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    return Backend(kind="local", host=ws.host, token=ws.token, tracking_uri=db, registry_uri=db, home=ws.home), db


def test_the_evaluate_step_takes_engine_ai_query_from_the_config(fake_workspace, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    from llmops_nb.config.project import load_project_config
    from llmops_nb.steps.evaluate import evaluate

    ws = fake_workspace
    backend, db = _backend(ws, tmp_path, monkeypatch)
    head = f"backend: local\nfoundation_endpoint: {FOUNDATION}\nmodel:\n  max_tokens: 32\n"
    tables = {}
    for engine in ("threads", "ai_query"):
        config = tmp_path / f"{engine}.yml"
        config.write_text(head + f"evaluation:\n  max_rows: 12\n  engine: {engine}\n  ai_query: {{warehouse_id: wh-1}}\n")
        evaluation = evaluate(load_project_config(config), backend, promote=False, progress=False)
        tables[engine] = evaluation.table.drop(columns=list(NOT_RETURNED))
        assert MlflowClient(db).get_run(evaluation.run_id).data.params["engine"] == engine
    same = ["id", "question", "expected", "error"]
    assert tables["ai_query"][same].equals(tables["threads"][same]) and len(tables["ai_query"]) == 12
    # the step's system prompt: a system message for threads, in front of the question for ai_query (its one
    # STRING request); the fake echoes the last user message (its first 200 characters, 32 words at most)
    system = "Answer with a single word or number."
    echo = [" ".join(f"[{FOUNDATION}] echo: {aq.prompt(q, system)[:200]}".split()[:32]) for q in tables["threads"]["question"]]
    assert list(tables["ai_query"]["answer"]) == echo
    assert list(tables["threads"]["answer"]) == [f"[{FOUNDATION}] echo: {q}" for q in tables["threads"]["question"]]
    # a custom model endpoint: refused before any run or request
    deploy(ws, "chat")
    ws.reset()
    config = tmp_path / "custom.yml"
    config.write_text(
        "backend: local\nfoundation_endpoint: chat\nevaluation:\n  engine: ai_query\n  ai_query: {warehouse_id: wh-1}\n"
    )
    runs = len(MlflowClient(db).search_runs([e.experiment_id for e in MlflowClient(db).search_experiments()]))
    with pytest.raises(ConfigError, match="endpoint chat serves a custom model") as caught:
        evaluate(load_project_config(config), backend, promote=False, progress=False)
    assert "\n" not in str(caught.value)
    assert not _statements(ws) and not _via_ai_query(ws)
    assert len(MlflowClient(db).search_runs([e.experiment_id for e in MlflowClient(db).search_experiments()])) == runs


def test_a_unity_catalog_table_is_the_statements_source(fake_workspace, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")
    import pyarrow as pa
    from deltalake import write_deltalake

    from llmops_nb.config.project import load_project_config
    from llmops_nb.protocol import inference_table as pt
    from llmops_nb.steps.evaluate import evaluate

    ws = fake_workspace
    backend, _ = _backend(ws, tmp_path, monkeypatch)
    rows = load_dataset(max_rows=8)
    table = pa.table({k: [r[k] for r in rows] for k in ("id", "question", "expected")})
    write_deltalake(str(pt.local_path(ws.home, "main.evals.qa")), table)
    config = tmp_path / "table.yml"
    config.write_text(
        f"backend: local\nfoundation_endpoint: {FOUNDATION}\n"
        "evaluation:\n  dataset: main.evals.qa\n  max_rows: 6\n  engine: ai_query\n  ai_query: {warehouse_id: wh-1}\n"
    )
    ws.reset()
    evaluation = evaluate(load_project_config(config), backend, promote=False, progress=False)
    first = sorted(rows, key=lambda r: r["id"])[:6]
    assert list(evaluation.table["id"]) == [r["id"] for r in first]
    sent = [s["body"]["statement"] for s in _statements(ws)]
    assert len(sent) == 2 and sent[0].startswith("SELECT * FROM `main`.`evals`.`qa`")  # read, then asked
    assert "FROM `main`.`evals`.`qa` ORDER BY id LIMIT 6" in sent[1] and "VALUES" not in sent[1]
    assert sorted(a["body"]["messages"][-1]["content"] for a in _via_ai_query(ws)) == sorted(
        f"{aq.prompt(r['question'], 'Answer with a single word or number.')}" for r in first
    )
    assert evaluation.table["error"].isna().all()


def test_rows_are_cut_into_statements_under_the_size_limit() -> None:
    rows = [(f"r{i}", "x" * 100) for i in range(10)]
    assert [len(b) for b in aq.batches(rows, 4)] == [4, 4, 2]
    assert [len(b) for b in aq.batches(rows, 100, budget=3 * 200)] == [3, 3, 3, 1]  # ~200 bytes a row
    with pytest.raises(ConfigError, match="does not fit a statement"):
        list(aq.batches([("big", "x" * 1000)], 10, budget=500))
    statement, params = aq.values_statement(aq.ai_query_call("ep", 8, 0.5), rows[:2])
    assert statement.startswith("WITH eval_rows(id, request) AS (VALUES (:id_0, :request_0), (:id_1, :request_1))")
    assert "named_struct('max_tokens', CAST(8 AS INT), 'temperature', CAST(0.5 AS DOUBLE)), failOnError => false" in statement
    assert params[1] == {"name": "request_0", "value": "x" * 100, "type": "STRING"}
    with pytest.raises(ConfigError, match="endpoint"):
        aq.ai_query_call("ep'; DROP", 8, 0.0)
    assert aq.parse_response(json.dumps({"result": "a", "errorMessage": None})) == ("a", None)
    assert aq.parse_response(json.dumps({"result": "a", "errorMessage": ""})) == ("a", None)
    assert aq.parse_response(json.dumps({"result": None, "errorMessage": "boom\nmore"})) == (None, "boom")
    assert aq.parse_response(None)[0] is None and aq.parse_response("not json")[0] is None


def test_the_checks_before_any_step_say_the_engine_and_refuse_a_custom_endpoint(fake_workspace) -> None:  # noqa: ANN001
    from llmops_nb.config.project import ProjectConfig
    from llmops_nb.evaluation.checks import check_evaluation

    ws = fake_workspace
    evaluation = {"engine": "ai_query", "ai_query": {"warehouse_id": "wh-1"}}
    lines = check_evaluation(
        ProjectConfig.model_validate({"foundation_endpoint": FOUNDATION, "evaluation": evaluation}), w=ws.client()
    )
    assert any(line.startswith("engine: ai_query (SQL warehouse wh-1, 1000 rows a statement") for line in lines)
    table = {**evaluation, "dataset": "main.none.qa"}
    assert (
        "dataset: main.none.qa, a table read on the SQL warehouse"
        in check_evaluation(ProjectConfig.model_validate({"foundation_endpoint": FOUNDATION, "evaluation": table}))[0]
    )
    with pytest.raises(ConfigError, match="a readable table"):  # read on the warehouse: it does not exist
        check_evaluation(ProjectConfig.model_validate({"foundation_endpoint": FOUNDATION, "evaluation": table}), w=ws.client())
    deploy(ws, "chat")
    with pytest.raises(ConfigError, match="endpoint chat serves a custom model"):
        check_evaluation(ProjectConfig.model_validate({"foundation_endpoint": "chat", "evaluation": evaluation}), w=ws.client())
    with pytest.raises(ConfigError, match="serves a registered \\(custom\\) model") as caught:  # the config's own endpoint
        ProjectConfig.model_validate(
            {
                "endpoint": {"name": "e", "served_entities": [{"entity_name": "m", "entity_version": "1"}]},
                "evaluation": evaluation,
            }
        )
    assert "\n" not in str(caught.value)
