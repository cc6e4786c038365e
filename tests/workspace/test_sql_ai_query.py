"""ai_query(...) in the workspace's SQL statements: each row asked through the workspace's own invocation
path (faults, routing, rate limits, inference-table logging), errors per row with failOnError false,
and what it does not implement refused as a FAILED statement."""

from __future__ import annotations

import json
import time

import pytest
from ws_helpers import post

from llmops_nb.testing import fake_workspace

FOUNDATION = "databricks-smollm2-135m-instruct"
KEY = "sk-" + "test-0123456789abcdef"
PARAMS = "modelParameters => named_struct('max_tokens', 5, 'temperature', 0.0)"


def _sql(rows: int, call: str) -> tuple[str, list[dict[str, str]]]:
    values = ", ".join(f"(:id_{i}, :request_{i})" for i in range(rows))
    statement = f"WITH eval_rows(id, request) AS (VALUES {values}) SELECT id, {call} AS response FROM eval_rows ORDER BY id"
    return statement, []


def _run(ws, statement: str, params: list[dict[str, str]]):  # noqa: ANN001, ANN202
    from databricks.sdk.service.sql import Disposition, StatementParameterListItem

    return ws.client().statement_execution.execute_statement(
        statement=statement,
        warehouse_id="wh-1",
        parameters=[StatementParameterListItem(**p) for p in params],
        disposition=Disposition.INLINE,
    )


def _values(questions: list[str]) -> list[dict[str, str]]:
    params = []
    for i, q in enumerate(questions):
        params += [{"name": f"id_{i}", "value": f"r{i}"}, {"name": f"request_{i}", "value": q}]
    return params


def test_each_row_is_asked_and_a_failing_row_is_its_own_error(ws) -> None:  # noqa: ANN001
    ws.set_faults(fail_questions=["Break here."])
    questions = ["What is two plus two?", "Break here.", "Say blue please now and then."]
    statement, _ = _sql(3, f"ai_query('{FOUNDATION}', request, {PARAMS}, failOnError => false)")
    answer = _run(ws, statement, _values(questions))
    assert answer.status.state.value == "SUCCEEDED", answer.status
    got = {row[0]: json.loads(row[1]) for row in answer.result.data_array}
    assert got["r0"] == {"result": f"[{FOUNDATION}] echo: What is two", "errorMessage": None}  # max_tokens 5 applied
    assert got["r1"]["result"] is None and "500 INTERNAL_ERROR" in got["r1"]["errorMessage"]
    assert got["r2"]["result"].endswith("echo: Say blue please")
    asked = [r for r in ws.requests() if r.get("via") == "ai_query"]
    assert sorted(r["body"]["messages"][0]["content"] for r in asked) == sorted(questions)
    assert all(r["body"]["max_tokens"] == 5 and r["body"]["temperature"] == 0.0 for r in asked)
    assert sorted(r["status"] for r in asked) == [200, 200, 500]
    # failOnError true (the default): the failing row fails the statement
    statement, _ = _sql(3, f"ai_query('{FOUNDATION}', request, {PARAMS})")
    failed = _run(ws, statement, _values(questions))
    assert failed.status.state.value == "FAILED" and "INTERNAL_ERROR" in failed.status.error.message
    # a NULL request is NULL, not asked
    none = _run(ws, f"SELECT ai_query('{FOUNDATION}', NULL, failOnError => false) AS r", [])
    assert none.status.state.value == "SUCCEEDED" and none.result.data_array == [[None]]


def test_a_request_repeated_on_several_rows_is_asked_once_per_row(ws) -> None:  # noqa: ANN001
    """ai_query invokes the endpoint per row: three rows with one question are three invocations
    (three inference-table rows, three times the cost), each row its own answer."""
    questions = ["Same question?", "Same question?", "Same question?", "Another one?"]
    statement, _ = _sql(4, f"ai_query('{FOUNDATION}', request, {PARAMS}, failOnError => false)")
    answer = _run(ws, statement, _values(questions))
    assert answer.status.state.value == "SUCCEEDED", answer.status
    assert [row[0] for row in answer.result.data_array] == ["r0", "r1", "r2", "r3"]
    assert all(json.loads(row[1])["errorMessage"] is None for row in answer.result.data_array)
    asked = [r["body"]["messages"][0]["content"] for r in ws.requests() if r.get("via") == "ai_query"]
    assert sorted(asked) == sorted(questions)


@pytest.mark.parametrize(
    ("call", "says"),
    [
        ("ai_query('chat', request, " + PARAMS + ")", "UNSUPPORTED_ENDPOINT_TYPE"),
        ("ai_query('chat', request)", "custom model"),
        ("ai_query('nope', request)", "'nope' does not exist"),
        (f"ai_query('{FOUNDATION}', request, returnType => 'STRING')", "returnType: not implemented"),
        (f"ai_query('{FOUNDATION}', request, responseFormat => 'x')", "responseFormat: not implemented"),
        (f"ai_query('{FOUNDATION}', request, modelParameters => named_struct('max_tokens', request))", "numeric literal"),
        (f"ai_query('{FOUNDATION}', request, modelParameters => named_struct('messages', 1))", "FOUND_RESERVED"),
        (f"ai_query('{FOUNDATION}', request, failOnError => maybe)", "BOOLEAN literal"),
        (f"ai_query(endpoint => '{FOUNDATION}', request => request)", "positional"),
        (f"ai_query('{FOUNDATION}', request", "not closed"),
    ],
)
def test_what_it_does_not_implement_fails_the_statement_and_asks_nothing(ws, call, says) -> None:  # noqa: ANN001
    from tests.evaluation.test_orchestrate import deploy

    if "chat" not in [e.name for e in ws.client().serving_endpoints.list()]:
        deploy(ws, "chat")  # a custom model endpoint
    ws.reset()
    statement, _ = _sql(1, call)
    answer = _run(ws, statement, _values(["hello"]))
    assert answer.status.state.value == "FAILED" and says in answer.status.error.message
    assert "\n" not in answer.status.error.message
    assert not [r for r in ws.requests() if r.get("via") == "ai_query"]


def test_an_external_endpoint_is_rate_limited_retried_and_logged_to_its_inference_table(
    tmp_path, monkeypatch, fake_provider
) -> None:  # noqa: ANN001
    pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")
    from llmops_nb.evaluation import replay
    from llmops_nb.protocol import inference_table as pt

    monkeypatch.setenv("LLMOPS_SECRET_LLM_OPENAI", KEY)
    with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        body = {
            "name": "ext",
            "config": {
                "served_entities": [
                    {
                        "external_model": {
                            "name": "gpt-4o-mini",
                            "provider": "openai",
                            "task": "llm/v1/chat",
                            "openai_config": {
                                "openai_api_key": "{{secrets/llm/openai}}",
                                "openai_api_base": fake_provider.base_url,
                            },
                        }
                    }
                ]
            },
            "ai_gateway": {
                "rate_limits": [{"calls": 2, "key": "endpoint", "renewal_period": "minute"}],
                "inference_table_config": {"catalog_name": "main", "schema_name": "aiq", "enabled": True},
            },
        }
        r = post(ws, "/api/2.0/serving-endpoints", body)
        assert r.status_code == 200, r.text
        ws.client().serving_endpoints.wait_get_serving_endpoint_not_updating("ext")
        ws.set_faults(gateway_minute_seconds=1.0)  # the gateway's minute renews in 1 s: the 429s are retried
        questions = [f"Question {i}?" for i in range(4)]
        statement, _ = _sql(4, "ai_query('ext', request, " + PARAMS + ", failOnError => false)")
        answer = _run(ws, statement, _values(questions))
        assert answer.status.state.value == "SUCCEEDED", answer.status
        results = [json.loads(row[1]) for row in answer.result.data_array]
        assert [r["result"] for r in results] == [f"[provider:gpt-4o-mini] {q}" for q in questions]
        statuses = [r["status"] for r in ws.requests() if r.get("via") == "ai_query"]
        assert statuses.count(200) == 4 and 429 in statuses  # rate limited, then retried
        table = "main.aiq.ext_payload"
        deadline = time.monotonic() + 30
        while True:
            logged = (
                replay.read_local(ws.home, pt.GATEWAY, table) if (pt.local_path(ws.home, table) / "_delta_log").is_dir() else []
            )
            if len([x for x in logged if x["status"] == 200]) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sorted(json.loads(x["request"])["messages"][0]["content"] for x in logged if x["status"] == 200) == questions
        assert KEY not in json.dumps(ws.requests())
