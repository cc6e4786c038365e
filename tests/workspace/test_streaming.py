"""Streaming on the fake workspace: the wire format, deterministic chunks, bad values, external
providers' streams (OpenAI passed through, Anthropic's events translated), assemble()."""

from __future__ import annotations

import json

import pytest
import requests
from ws_helpers import chat, core, entity, post, ready, wait_until

from llmops_nb.protocol.streaming import assemble
from llmops_nb.testing import fake_workspace

KEY = "sk-test-0123456789abcdefSECRET"
FOUNDATION = "databricks-smollm2-135m-instruct"


def _events(r: requests.Response) -> list[dict | str]:
    out: list[dict | str] = []
    for line in r.iter_lines():
        if line.startswith(b"data: "):
            data = line[6:].decode()
            out.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == b"", line  # nothing but data lines and the blank separators
    return out


def _stream(ws, path: str, body: dict) -> requests.Response:
    return requests.post(f"{ws.host}{path}", json=body, stream=True, timeout=30, headers={"Authorization": f"Bearer {ws.token}"})


def test_fake_stream_is_the_fake_answer_word_by_word(ws, w) -> None:
    w.serving_endpoints.create(name="st", config=core("st", entity("m", "1")))
    wait_until(w, "st", ready)
    body = chat("alpha beta gamma", max_tokens=5)
    whole = post(ws, "/serving-endpoints/st/invocations", body).json()
    r = _stream(ws, "/serving-endpoints/st/invocations", {**body, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["served-model-name"] == "m-1"
    events = _events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["[m-1]", " echo:", " alpha", " beta", " gamma"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["usage"] == whole["usage"]
    built = assemble(chunks)
    assert built["choices"] == whole["choices"] and built["usage"] == whole["usage"]
    assert built["object"] == "chat.completion" and built["id"] == whole["id"]
    # again: deterministic, and the same through the OpenAI-compatible route
    again = _events(_stream(ws, "/serving-endpoints/chat/completions", {**body, "stream": True, "model": "st"}))
    assert [c["choices"] for c in again[:-1]] == [c["choices"] for c in chunks]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"stream": "yes"}, "stream: 'yes' is not allowed; true or false"),
        ({"stream": 1}, "stream: 1 is not allowed; true or false"),
        ({"stream": True, "stream_options": "usage"}, "stream_options: 'usage' is not allowed"),
    ],
)
def test_bad_stream_values_are_400_with_one_line(ws, bad, message) -> None:
    r = post(ws, f"/serving-endpoints/{FOUNDATION}/invocations", {**chat("x"), **bad})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert r.json()["message"].startswith(message)


def test_stream_false_answers_plainly_and_dataframes_do_not_stream(ws) -> None:
    r = post(ws, f"/serving-endpoints/{FOUNDATION}/invocations", {**chat("x"), "stream": False})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    r = post(ws, f"/serving-endpoints/{FOUNDATION}/invocations", {"dataframe_records": [{"a": 1}], "stream": True})
    assert r.status_code == 400 and "only chat bodies (messages) stream" in r.json()["message"]


def test_errors_before_the_first_chunk_are_http_errors(ws) -> None:
    r = _stream(ws, "/serving-endpoints/nope/invocations", {**chat("x"), "stream": True})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    ws.set_faults(rate_429=1.0)
    r = _stream(ws, f"/serving-endpoints/{FOUNDATION}/invocations", {**chat("x"), "stream": True})
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_client_chat_stream_and_openai_client_on_the_fake(ws, w) -> None:
    from openai import OpenAI

    from llmops_nb.chat.client import chat as ask
    from llmops_nb.chat.client import chat_stream

    stream = chat_stream(w, FOUNDATION, "one two three", max_tokens=4)
    parts = list(stream)
    ref = ask(w, FOUNDATION, "one two three", max_tokens=4)
    assert "".join(parts) == ref.content == stream.result.content
    assert len(parts) == 4 and stream.result.finish_reason == "length"
    assert stream.result.completion_tokens == 4 and stream.result.ttft_ms is not None
    client = OpenAI(base_url=f"{ws.host}/serving-endpoints", api_key=ws.token)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=FOUNDATION, messages=[{"role": "user", "content": "one two three"}], max_tokens=4, stream=True
        )
    )
    assert text == ref.content


# ---- external models -----------------------------------------------------------------------
@pytest.fixture
def ext_ws(tmp_path, monkeypatch, fake_provider):
    monkeypatch.setenv("LLMOPS_ANTHROPIC_API_BASE", fake_provider.base_url)
    monkeypatch.setenv("LLMOPS_SECRET_LLM_KEY", KEY)
    with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ext:
        yield ext


def _external(ws, name: str, external_model: dict) -> None:
    body = {
        "name": name,
        "config": {"served_entities": [{"external_model": external_model}]},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    assert post(ws, "/api/2.0/serving-endpoints", body).status_code == 200
    ep = ws.client().serving_endpoints.wait_get_serving_endpoint_not_updating(name)
    assert ep.state.ready.value == "READY"


def test_openai_provider_stream_is_passed_through(ext_ws, fake_provider) -> None:
    _external(
        ext_ws,
        "ext-o",
        {
            "name": "gpt-x",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": "{{secrets/llm/key}}", "openai_api_base": fake_provider.base_url},
        },
    )
    events = _events(_stream(ext_ws, "/serving-endpoints/ext-o/invocations", {**chat("ping pong"), "stream": True}))
    sent = fake_provider.requests[-1]["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert events[-1] == "[DONE]"
    # the provider's own chunks, unchanged (its id, its usage chunk with no choices)
    assert {c["id"] for c in events[:-1]} == {"chatcmpl-fake"}
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 3
    built = assemble(events[:-1])
    assert built["choices"][0]["message"]["content"] == "[provider:gpt-x] ping pong"
    assert built["choices"][0]["finish_reason"] == "stop"
    usage = (ext_ws.home / "usage" / "ext-o.jsonl").read_text().splitlines()
    assert json.loads(usage[-1])["completion_tokens"] == 3  # counted from the stream
    assert KEY not in json.dumps(events)


def test_anthropic_stream_is_translated_to_chunks(ext_ws, fake_provider) -> None:
    _external(
        ext_ws,
        "ext-a",
        {
            "name": "claude-x",
            "provider": "anthropic",
            "task": "llm/v1/chat",
            "anthropic_config": {"anthropic_api_key": "{{secrets/llm/key}}"},
        },
    )
    body = {
        "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there"}],
        "max_tokens": 10,
        "stream": True,
    }
    events = _events(_stream(ext_ws, "/serving-endpoints/ext-a/invocations", body))
    sent = fake_provider.requests[-1]
    assert sent["path"] == "/v1/messages" and sent["body"]["stream"] is True
    assert sent["body"]["system"] == "be nice"
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {"msg_fake"}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["[provider:claude-x]", " hello", " there"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_provider_errors_before_the_stream_keep_their_status(ext_ws, fake_provider) -> None:
    _external(
        ext_ws,
        "ext-e",
        {
            "name": "gpt-x",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": "{{secrets/llm/key}}", "openai_api_base": fake_provider.base_url},
        },
    )
    fake_provider.fail_status = 429
    r = _stream(ext_ws, "/serving-endpoints/ext-e/invocations", {**chat("x"), "stream": True})
    assert r.status_code == 429 and KEY not in r.text
