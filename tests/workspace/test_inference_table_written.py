"""Inference tables on the local workspace (workspace/inference_table.py, payload_table.py).

Invocations made through the real databricks-sdk (and raw HTTP) against the fake workspace land
in a real Delta table with Databricks' payload columns, read back by pandas (deltalake) and by
DuckDB; a plaintext key configured on an external-model endpoint appears in none of its files.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from databricks.sdk.service.serving import AiGatewayInferenceTableConfig, ChatMessage, ChatMessageRole
from ws_helpers import chat, core, entity, post

from llmops_nb.protocol import inference_table as pt
from llmops_nb.testing import fake_workspace

deltalake = pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")

KEY = "sk-plaintext-0123456789abcdefTABLESECRET"
GATEWAY_COLUMNS = [
    "databricks_request_id",
    "request_date",
    "client_request_id",
    "request_time",
    "status_code",
    "sampling_fraction",
    "execution_duration_ms",
    "request",
    "response",
    "logging_error_codes",
    "served_entity_id",
    "requester",
]
LEGACY_COLUMNS = [
    "databricks_request_id",
    "client_request_id",
    "date",
    "timestamp_ms",
    "status_code",
    "sampling_fraction",
    "execution_time_ms",
    "request",
    "response",
    "request_metadata",
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with fake_workspace(tmp_path_factory.mktemp("itws"), ready_seconds=0.1) as workspace:
        yield workspace


def table_rows(ws, full_name: str, n: int, timeout: float = 30.0):
    """The table as pandas once it holds ``n`` rows (the writer flushes about every second)."""
    path = pt.local_path(ws.home, full_name)
    deadline = time.monotonic() + timeout
    while True:
        if (path / "_delta_log").is_dir():
            df = deltalake.DeltaTable(str(path)).to_pandas()
            if len(df) >= n:
                return df
        if time.monotonic() > deadline:
            raise AssertionError(f"{full_name}: fewer than {n} rows after {timeout} s")
        time.sleep(0.1)


def _ask(w, name: str, text: str):
    return w.serving_endpoints.query(name, messages=[ChatMessage(role=ChatMessageRole.USER, content=text)], max_tokens=16)


def test_every_invocation_is_a_row_with_databricks_columns(ws):
    import json

    w = ws.client()
    w.serving_endpoints.create_and_wait(name="it-chat", config=core("it-chat", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        "it-chat",
        inference_table_config=AiGatewayInferenceTableConfig(
            catalog_name="main", schema_name="llmops", table_name_prefix="chat", enabled=True
        ),
    )
    answers = [_ask(w, "it-chat", f"question {i}") for i in range(3)]
    assert all(a.choices for a in answers)
    r = post(ws, "/serving-endpoints/it-chat/invocations", chat("from alice", client_request_id="req-42"), user="alice")
    assert r.status_code == 200
    df = table_rows(ws, "main.llmops.chat_payload", 4)

    # the columns of Databricks' AI gateway payload table, in its order, with its types
    assert list(df.columns) == GATEWAY_COLUMNS == list(pt.COLUMNS[pt.GATEWAY])
    schema = deltalake.DeltaTable(str(pt.local_path(ws.home, "main.llmops.chat_payload"))).schema()
    types = {f.name: str(f.type) for f in schema.fields}
    assert types["status_code"].lower().startswith('primitivetype("integer')
    assert "timestamp" in types["request_time"].lower() and "date" in types["request_date"].lower()
    assert "array" in types["logging_error_codes"].lower()

    ok = df[df["status_code"] == 200].sort_values("request_time")
    assert len(ok) == 4
    first = json.loads(ok.iloc[0]["request"])
    assert first["messages"] == [{"role": "user", "content": "question 0"}]
    assert json.loads(ok.iloc[0]["response"])["choices"][0]["message"]["content"] == answers[0].choices[0].message.content
    assert ok["databricks_request_id"].is_unique
    assert set(ok["served_entity_id"]) == {ok.iloc[0]["served_entity_id"]}
    assert len(ok.iloc[0]["served_entity_id"]) == 32
    assert (ok["sampling_fraction"] == 1.0).all() and (ok["execution_duration_ms"] >= 0).all()
    alice = ok[ok["client_request_id"] == "req-42"]
    assert list(alice["requester"]) == ["alice"]
    assert set(ok["requester"]) == {"alice", "local-user@localhost"}
    assert str(ok.iloc[0]["request_date"]) == ok.iloc[0]["request_time"].strftime("%Y-%m-%d")

    # DuckDB reads the same table (over deltalake's Arrow dataset, no extension download)
    duckdb = pytest.importorskip("duckdb", reason="the dev extra (duckdb) is required")
    dataset = deltalake.DeltaTable(str(pt.local_path(ws.home, "main.llmops.chat_payload"))).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("payload", dataset)
    got = con.execute("SELECT count(*), count(DISTINCT databricks_request_id) FROM payload WHERE status_code = 200").fetchone()
    assert got == (4, 4)
    described = [row[0] for row in con.execute("DESCRIBE payload").fetchall()]
    assert described == GATEWAY_COLUMNS

    # private files, as everything under $LLMOPS_HOME
    root = pt.local_path(ws.home, "main.llmops.chat_payload")
    modes = {p: stat.S_IMODE(os.stat(p).st_mode) for p in root.rglob("*")}
    assert {str(p): oct(m) for p, m in modes.items() if p.is_file() and m & 0o077} == {}


def test_legacy_auto_capture_config_writes_the_legacy_columns(ws):
    w = ws.client()
    r = post(
        ws,
        "/api/2.0/serving-endpoints",
        {
            "name": "it-legacy",
            "config": {
                "served_entities": [{"entity_name": "m", "entity_version": "3"}],
                "auto_capture_config": {"catalog_name": "main", "schema_name": "old", "enabled": True},
            },
        },
    )
    assert r.status_code == 200, r.text
    assert not r.json().get("warnings")
    w.serving_endpoints.wait_get_serving_endpoint_not_updating("it-legacy")
    _ask(w, "it-legacy", "legacy question")
    df = table_rows(ws, "main.old.it-legacy_payload", 1)
    assert list(df.columns) == LEGACY_COLUMNS
    row = df.iloc[0]
    assert dict(row["request_metadata"]) == {"endpoint_name": "it-legacy", "model_name": "m", "model_version": "3"}
    assert row["status_code"] == 200 and row["timestamp_ms"] > 1_600_000_000_000


def test_a_plaintext_key_never_reaches_the_table(ws, monkeypatch):
    from llmops_nb.testing import fake_provider

    with fake_provider() as provider:
        r = post(
            ws,
            "/api/2.0/serving-endpoints",
            {
                "name": "it-ext",
                "config": {
                    "served_entities": [
                        {
                            "external_model": {
                                "name": "gpt-x",
                                "provider": "openai",
                                "task": "llm/v1/chat",
                                "openai_config": {"openai_api_key_plaintext": KEY, "openai_api_base": provider.base_url},
                            }
                        }
                    ]
                },
                "ai_gateway": {"inference_table_config": {"catalog_name": "main", "schema_name": "ext", "enabled": True}},
            },
        )
        assert r.status_code == 200, r.text
        ws.client().serving_endpoints.wait_get_serving_endpoint_not_updating("it-ext")
        # a body field that looks like a key is masked too; the provider's error is logged
        ok = post(
            ws, "/serving-endpoints/it-ext/invocations", chat("hello", extra_params={"my_api_key": "sk-from-the-body-SECRET2"})
        )
        assert ok.status_code == 200, ok.text
        provider.fail_status = 500
        failed = post(ws, "/serving-endpoints/it-ext/invocations", chat("again"))
        assert failed.status_code == 503
    df = table_rows(ws, "main.ext.it-ext_payload", 2)
    assert sorted(df["status_code"]) == [200, 503]
    assert "TEMPORARILY_UNAVAILABLE" in df[df["status_code"] == 503].iloc[0]["response"]
    assert provider.authorizations()[0] == f"Bearer {KEY}"  # the key was used...
    files = [p for p in pt.local_path(ws.home, "main.ext.it-ext_payload").rglob("*") if p.is_file()]
    assert files
    for path in files:  # ...and is in no byte of the table
        data = Path(path).read_bytes()
        assert KEY.encode() not in data and b"SECRET2" not in data, path


def test_payload_writer_masks_secret_fields_and_oversized_payloads(tmp_path):
    from llmops_nb.workspace.serving import inference_table as it

    assert it.scrub(
        {
            "openai_api_key": "k",
            "Authorization": "Bearer x",
            "max_tokens": 3,
            "nested": [{"token_plaintext": "t", "content": "hi"}],
        }
    ) == {
        "openai_api_key": "***",
        "Authorization": "***",
        "max_tokens": 3,
        "nested": [{"token_plaintext": "***", "content": "hi"}],
    }
    rec = {
        "id": "e1",
        "ai_gateway": {"inference_table_config": {"catalog_name": "c", "schema_name": "s", "enabled": True}},
        "config": {"served_entities": [{"name": "a", "entity_name": "m", "entity_version": "1"}]},
    }
    writer = it.PayloadWriter(tmp_path)
    big = "x" * (it.MAX_PAYLOAD_BYTES + 1)
    writer.add(
        "ep",
        pt.enabled_tables("ep", rec),
        {
            "request_id": "r1",
            "client_request_id": None,
            "ts": time.time(),
            "status": 200,
            "duration_ms": 5,
            "request": {"messages": [{"role": "user", "content": big}]},
            "response": {"ok": True},
            "entity": it.entity_facts(rec, "a"),
            "requester": "me",
        },
    )
    writer.close()
    df = deltalake.DeltaTable(str(pt.local_path(tmp_path, "c.s.ep_payload"))).to_pandas()
    assert df["request"].isna().all()  # null, as Databricks logs an oversized payload
    assert list(df.iloc[0]["logging_error_codes"]) == ["MAX_REQUEST_SIZE_EXCEEDED"]
    assert df.iloc[0]["response"] == '{"ok":true}'


def test_a_streamed_answer_is_logged_assembled(ws):
    import json

    import requests

    w = ws.client()
    w.serving_endpoints.create_and_wait(name="it-stream", config=core("it-stream", entity("m")))
    w.serving_endpoints.put_ai_gateway(
        "it-stream", inference_table_config=AiGatewayInferenceTableConfig(catalog_name="main", schema_name="stream", enabled=True)
    )
    with requests.post(
        f"{ws.host}/serving-endpoints/it-stream/invocations",
        stream=True,
        timeout=10,
        headers={"Authorization": f"Bearer {ws.token}"},
        json=chat("stream these words please", stream=True),
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    streamed = "".join(
        (json.loads(e[6:])["choices"][0]["delta"].get("content") or "") for e in events[:-1] if json.loads(e[6:]).get("choices")
    )
    df = table_rows(ws, "main.stream.it-stream_payload", 1)
    logged = json.loads(df.iloc[0]["response"])
    assert logged["object"] == "chat.completion"
    assert logged["choices"][0]["message"]["content"] == streamed != ""
    assert json.loads(df.iloc[0]["request"])["stream"] is True
