"""Replay of an inference table (llmops_nb/evaluation/replay.py): parameters, filtering and deduplication,
the Databricks SQL path's parsing, and a replayed evaluation on the fake workspace that scores
exactly the deduplicated, filtered rows and logs the diff to its MLflow run."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation import replay
from llmops_nb.protocol import inference_table as pt

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def _rec(i: int, question: str, answer: str, *, status: int = 200, minutes: int = 0, system: str | None = None) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    response = (
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
        if status == 200
        else {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}
    )
    return {
        "request_id": f"id-{i}",
        "time": T0 + dt.timedelta(minutes=minutes),
        "status": status,
        "request": json.dumps({"messages": messages, "max_tokens": 8}),
        "response": json.dumps(response),
    }


# ---- parameters ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("", None),
        ("2025-01-31", T0.replace(hour=0)),
        ("2025-01-31T12:00:00Z", T0),
        ("2025-01-31T13:00:00+01:00", T0),
        ("24h", T0 - dt.timedelta(hours=24)),
        ("30m", T0 - dt.timedelta(minutes=30)),
        ("7d", T0 - dt.timedelta(days=7)),
    ],
)
def test_replay_since_forms(value, expected):
    assert replay.parse_since(value, now=T0) == expected


@pytest.mark.parametrize(
    "name, call, bad",
    [
        ("replay_since", replay.parse_since, "yesterday"),
        ("replay_status", replay.check_status, 700),
        ("replay_status", replay.check_status, True),
        ("dataset_source", replay.check_source, "production"),
    ],
)
def test_bad_replay_parameters_are_one_line_naming_the_field(name, call, bad):
    with pytest.raises(ConfigError) as err:
        call(bad)
    text = str(err.value)
    assert ("\n" not in text and text.startswith(name) and repr(bad) in text) or str(bad) in text


def test_notebook_and_chain_checks_take_the_new_parameters(tmp_path):
    from llmops_nb.chain import check as chain_check
    from llmops_nb.chain import inspect as chain_inspect
    from llmops_nb.chain import params
    from llmops_nb.chain import runner as chain_runner
    from llmops_nb.chain import table as chain_table

    got = params.notebook_params(
        {"dataset_source": "inference_table", "replay_since": "24h", "replay_status": 0},
        ["dataset_source", "replay_since", "replay_status"],
    )
    assert got == {"dataset_source": "inference_table", "replay_since": "24h", "replay_status": 0}
    with pytest.raises(ConfigError, match="^dataset_source"):
        params.notebook_params({"dataset_source": "prod"}, ["dataset_source"])
    notebook = chain_runner.notebooks_dir() / chain_table.NOTEBOOKS["evaluate"]
    declared = chain_inspect.declared_parameters(notebook)
    assert {"dataset_source", "replay_endpoint", "replay_since", "replay_status", "replay_warehouse_id"} <= set(declared)
    chain_check.check_parameters(
        "evaluate", notebook, {"dataset_source": "inference_table", "replay_since": "2025-01-31", "replay_status": 200}
    )
    for bad in ({"dataset_source": "prod"}, {"replay_since": "last week"}, {"replay_status": 42}, {"replay_status": "200"}):
        with pytest.raises(ConfigError) as err:
            chain_check.check_parameters("evaluate", notebook, bad)
        assert "\n" not in str(err.value)


# ---- records -> rows -------------------------------------------------------------------
def test_rows_are_filtered_by_time_and_status_and_deduplicated():
    records = [
        _rec(1, "old question", "old answer", minutes=-90),
        _rec(2, "what is 2+2?", "4"),
        _rec(3, "capital of France?", "Paris", minutes=1),
        _rec(4, "what is 2+2?", "four", minutes=2),  # same request: the first one is kept
        _rec(5, "failed question", "", status=503, minutes=3),
        _rec(6, "with a system prompt", "ok", minutes=4, system="be brief"),
    ]
    got = replay.to_rows(records, table="c.s.t_payload", since=T0 - dt.timedelta(minutes=30))
    assert [(r["question"], r["expected"]) for r in got.rows] == [("what is 2+2?", "4"), ("capital of France?", "Paris")]
    assert got.system is None and got.read == 6
    assert got.skipped == {"before replay_since": 1, "status not 200": 1, "duplicate request": 1, "another system prompt": 1}
    assert len({r["id"] for r in got.rows}) == 2 and all(r["id"].startswith("r-") for r in got.rows)
    # status 0 keeps every status (a failed call has no logged answer to compare with)
    assert replay.to_rows(records, table="t", status=0).skipped["no question or no logged answer"] == 1
    from llmops_nb.evaluation.datasets import dataset_digest

    assert dataset_digest(got.rows)  # valid dataset rows


# ---- the Databricks path ---------------------------------------------------------------
def test_sql_is_parameterized_and_the_table_name_checked():
    sql, params = replay.replay_sql(pt.GATEWAY, "main.llmops.chat_payload", T0, 200, 50)
    columns = "databricks_request_id, request_time, status_code, request, response"
    assert sql == (
        f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY "
        "get_json_object(request, '$.messages') ORDER BY request_time, databricks_request_id) AS replay_n "
        "FROM `main`.`llmops`.`chat_payload` WHERE get_json_object(request, '$.messages') IS NOT NULL AND "
        "get_json_object(response, '$.choices[0].message.content') IS NOT NULL AND request_time >= :since AND "
        "status_code = :status) AS logged WHERE replay_n = 1 ORDER BY request_time LIMIT 50"
    )
    assert params == [
        {"name": "since", "value": "2025-01-31T12:00:00+00:00", "type": "TIMESTAMP"},
        {"name": "status", "value": "200", "type": "INT"},
    ]
    legacy, _ = replay.replay_sql(pt.LEGACY, "main.old.ep_payload", None, 0)
    assert "timestamp_ms" in legacy and ":status" not in legacy and ":since" not in legacy and "LIMIT" not in legacy
    with pytest.raises(ValueError):
        replay.replay_sql(pt.GATEWAY, "main.x; DROP TABLE y.z", None, 200)
    with pytest.raises(ConfigError, match="max_rows: '5; DROP' is not allowed"):
        replay.replay_sql(pt.GATEWAY, "a.b.c", None, 200, "5; DROP")  # type: ignore[arg-type]


def _fill_inference_table(ws, name: str, questions: list[str]) -> str:  # noqa: ANN001
    """An endpoint whose AI gateway inference table logged ``questions`` (in order); its table name."""
    from databricks.sdk.service.serving import (
        AiGatewayInferenceTableConfig,
        ChatMessage,
        ChatMessageRole,
        EndpointCoreConfigInput,
        ServedEntityInput,
    )

    w = ws.client()
    w.serving_endpoints.create_and_wait(
        name=name,
        config=EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput(entity_name="m", entity_version="1")]),
    )
    w.serving_endpoints.put_ai_gateway(
        name, inference_table_config=AiGatewayInferenceTableConfig(catalog_name="main", schema_name="replay", enabled=True)
    )
    for q in questions:
        w.serving_endpoints.query(name, messages=[ChatMessage(role=ChatMessageRole.USER, content=q)], max_tokens=32)
    table = f"main.replay.{name}_payload"
    deadline = time.monotonic() + 30
    while len(
        replay.read_local(ws.home, pt.GATEWAY, table) if (pt.local_path(ws.home, table) / "_delta_log").is_dir() else []
    ) < len(questions):
        assert time.monotonic() < deadline, "the inference table did not fill"
        time.sleep(0.1)
    return table


def test_a_big_table_is_read_through_sql_in_external_link_chunks(fake_workspace):
    """Filters, de-duplication and LIMIT run in SQL; the result comes in EXTERNAL_LINKS chunks
    (INLINE FAILs past 25 MiB), each downloaded without the workspace token."""
    pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")
    ws = fake_workspace
    questions = [f"Question {i}?" for i in range(7)]
    table = _fill_inference_table(ws, "rp-big", [*questions, "Question 1?", "Question 3?"])  # two repeats
    ws.reset()
    ws.set_faults(sql_chunk_rows=2, sql_inline_limit_bytes=300)  # 3 chunks; more than 300 bytes fails INLINE
    w = ws.client()
    found = replay.load_replay(w, "rp-big", home=None, warehouse_id="wh-1", status=200, max_rows=5)
    assert [r["question"] for r in found.rows] == questions[:5]  # oldest first, each once, LIMIT 5
    assert found.read == 5 and found.table == table
    sent = [r for r in ws.requests() if r["path"] == "/api/2.0/sql/statements"]
    assert len(sent) == 1 and sent[0]["body"]["disposition"] == "EXTERNAL_LINKS"
    assert sent[0]["body"]["statement"].endswith("LIMIT 5") and "ROW_NUMBER() OVER" in sent[0]["body"]["statement"]
    chunks = [r["path"] for r in ws.requests() if "/result/chunks/" in r["path"]]
    downloads = [r for r in ws.requests() if r["path"].startswith("/_presigned/")]
    assert chunks == [f"/api/2.0/sql/statements/{sid}/result/chunks/{n}" for sid in [chunks[0].split("/")[5]] for n in (1, 2)]
    assert [r["status"] for r in downloads] == [200, 200, 200]  # a download with the token is refused (400)
    # the same statement INLINE: the result is over the (lowered) inline limit, the statement FAILs
    statement, params = replay.replay_sql(pt.GATEWAY, table, None, 200)
    from databricks.sdk.service.sql import Disposition, StatementParameterListItem, StatementState

    inline = w.statement_execution.execute_statement(
        statement=statement,
        warehouse_id="wh-1",
        parameters=[StatementParameterListItem(**p) for p in params],
        disposition=Disposition.INLINE,
    )
    assert inline.status.state == StatementState.FAILED and "Inline byte limit exceeded" in inline.status.error.message
    # a presigned link fetched with the Databricks token is refused, as cloud storage refuses it
    first = w.statement_execution.execute_statement(
        statement=statement,
        warehouse_id="wh-1",
        parameters=[StatementParameterListItem(**p) for p in params],
        disposition=Disposition.EXTERNAL_LINKS,
    )
    link = first.result.external_links[0].external_link
    import requests

    assert requests.get(link, headers={"Authorization": f"Bearer {ws.token}"}, timeout=10).status_code == 400
    assert len(requests.get(link, timeout=10).json()) == 2


def test_a_statement_execution_answer_is_parsed_from_the_sdk_dataclasses():
    from databricks.sdk.service.sql import ResultData, StatementParameterListItem, StatementResponse

    request = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    response = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hello"}}]})
    columns = [
        ("databricks_request_id", "STRING"),
        ("request_time", "TIMESTAMP"),
        ("status_code", "INT"),
        ("request", "STRING"),
        ("response", "STRING"),
    ]
    answer = StatementResponse.from_dict(
        {
            "statement_id": "01ef-0000-aaaa",
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "total_chunk_count": 2,
                "total_row_count": 2,
                "truncated": False,
                "schema": {
                    "column_count": 5,
                    "columns": [{"name": n, "type_name": t, "type_text": t, "position": i} for i, (n, t) in enumerate(columns)],
                },
            },
            "result": {
                "chunk_index": 0,
                "row_offset": 0,
                "row_count": 1,
                "next_chunk_index": 1,
                "data_array": [["a1", "2025-01-31T12:00:00.123Z", "200", request, response]],
            },
        }
    )
    more = ResultData.from_dict(
        {"chunk_index": 1, "row_offset": 1, "row_count": 1, "data_array": [["a2", "2025-01-31 12:05:00", "503", request, None]]}
    )
    records = replay.parse_statement(answer, pt.GATEWAY, [more.data_array])
    assert [(r["request_id"], r["status"], r["time"]) for r in records] == [
        ("a1", 200, T0 + dt.timedelta(milliseconds=123)),
        ("a2", 503, T0 + dt.timedelta(minutes=5)),
    ]
    rows = replay.to_rows(records, table="main.llmops.chat_payload").rows
    assert rows == [{"id": rows[0]["id"], "question": "hi", "expected": "hello", "aliases": []}]
    # the parameters replay_sql builds are what the SDK sends
    assert StatementParameterListItem(**replay.replay_sql(pt.GATEWAY, "a.b.c", T0, 200)[1][0]).as_dict() == {
        "name": "since",
        "value": "2025-01-31T12:00:00+00:00",
        "type": "TIMESTAMP",
    }
    failed = StatementResponse.from_dict(
        {
            "statement_id": "x",
            "status": {"state": "FAILED", "error": {"error_code": "BAD_REQUEST", "message": "TABLE_OR_VIEW_NOT_FOUND"}},
        }
    )
    with pytest.raises(ConfigError, match="TABLE_OR_VIEW_NOT_FOUND"):
        replay.parse_statement(failed, pt.GATEWAY)


def test_the_diff_summary():
    import pandas as pd

    table = pd.DataFrame(
        [
            {"id": "a", "question": "q1", "expected": "the sky is blue", "answer": "the sky is blue", "error": None},
            {"id": "b", "question": "q2", "expected": "it is four", "answer": "it is 4", "error": None},
        ]
    )
    diff = replay.diff_table(table)
    assert list(diff["same"]) == [True, False]
    m = replay.diff_metrics(diff)
    assert m["replay/rows"] == 2 and m["replay/changed_rows"] == 1
    assert m["replay/exact_match_rate"] == 0.5
    assert m["replay/token_similarity_mean"] == pytest.approx((1 + 2 * 2 / 6) / 2)


# ---- end to end on the fake workspace --------------------------------------------------
@pytest.mark.parametrize("engine", ["threads", pytest.param("spark", marks=pytest.mark.spark)])
def test_a_replayed_evaluation_scores_exactly_its_rows(tmp_path, monkeypatch, fake_workspace, engine, request):
    pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")
    if engine == "spark":
        request.getfixturevalue("spark")  # the tests' one SparkSession (tests/evaluation/conftest.py)
    from databricks.sdk.service.serving import (
        AiGatewayInferenceTableConfig,
        ChatMessage,
        ChatMessageRole,
        EndpointCoreConfigInput,
        ServedEntityInput,
    )
    from mlflow import MlflowClient

    from llmops_nb.backends import Backend
    from llmops_nb.config.project import load_project_config
    from llmops_nb.steps.evaluate import evaluate

    ws = fake_workspace
    w = ws.client()
    w.serving_endpoints.create_and_wait(
        name="rp-chat",
        config=EndpointCoreConfigInput(name="rp-chat", served_entities=[ServedEntityInput(entity_name="m", entity_version="1")]),
    )
    w.serving_endpoints.put_ai_gateway(
        "rp-chat", inference_table_config=AiGatewayInferenceTableConfig(catalog_name="main", schema_name="replay", enabled=True)
    )

    def ask(text: str, system: str | None = None) -> None:
        msgs = ([ChatMessage(role=ChatMessageRole.SYSTEM, content=system)] if system else []) + [
            ChatMessage(role=ChatMessageRole.USER, content=text)
        ]
        w.serving_endpoints.query("rp-chat", messages=msgs, max_tokens=32)

    ask("an old question")
    time.sleep(0.01)
    since = dt.datetime.now(UTC).isoformat()
    for q in ("What is MLflow?", "Name a colour.", "What is MLflow?", "Count to three."):
        ask(q)
    ask("Another prompt", system="be brief")
    path = pt.local_path(ws.home, "main.replay.rp-chat_payload")
    deadline = time.monotonic() + 30
    while not (path / "_delta_log").is_dir() or len(replay.read_local(ws.home, pt.GATEWAY, "main.replay.rp-chat_payload")) < 6:
        assert time.monotonic() < deadline, "the inference table did not fill"
        time.sleep(0.1)

    db = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path))
    config = tmp_path / "project.yml"
    config.write_text(
        "backend: local\nfoundation_endpoint: databricks-smollm2-135m-instruct\n"
        "model:\n  max_tokens: 32\n  temperature: 0.0\n"
        f"evaluation:\n  concurrency: 2\n  engine: {engine}\n"
    )
    project = load_project_config(config)
    backend = Backend(kind="local", host=ws.host, token=ws.token, tracking_uri=db, registry_uri=db, home=ws.home)
    ws.reset()
    evaluation = evaluate(
        project,
        backend,
        endpoint_name="rp-chat",
        promote=False,
        progress=False,
        dataset_source="inference_table",
        replay_since=since,
        replay_status=200,
    )
    asked = sorted(
        r["body"]["messages"][-1]["content"]
        for r in ws.requests()
        if r["path"].endswith("/invocations") and r.get("status") == 200
    )
    assert asked == ["Count to three.", "Name a colour.", "What is MLflow?"]  # deduplicated, filtered
    m = evaluation.metrics
    assert m["rows"] == 3 and m["replay/rows"] == 3
    assert m["replay/exact_match_rate"] == 1.0 and m["replay/changed_rows"] == 0  # the fake is deterministic
    assert m["exact_match"] == 1.0  # scored against the logged answers
    client = MlflowClient(db)
    run = client.get_run(evaluation.run_id)
    assert run.data.metrics["replay/exact_match_rate"] == 1.0
    assert run.data.params["dataset_source"] == "inference_table"
    assert run.data.params["replay_table"] == "main.replay.rp-chat_payload"
    assert run.data.params["engine"] == engine  # the spark engine replays the same rows to the same diff
    local = Path(client.download_artifacts(evaluation.run_id, replay.DIFF_ARTIFACT, str(tmp_path)))
    diff = json.loads(local.read_text())
    assert diff["columns"][:4] == ["id", "question", "logged_answer", "new_answer"]
    assert sorted(row[1] for row in diff["data"]) == asked
    assert all(row[2] == row[3] for row in diff["data"])

    # nothing in the window: one line, before any request
    with pytest.raises(ConfigError, match="nothing to replay"):
        evaluate(
            project,
            backend,
            endpoint_name="rp-chat",
            promote=False,
            progress=False,
            dataset_source="inference_table",
            replay_since="2999-01-01",
        )
