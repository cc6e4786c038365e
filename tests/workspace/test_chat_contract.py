"""The chat contract on the fake workspace (issue 29): answers carry OpenAI's nullable fields,
``stream_options.include_usage`` ends with the usage chunk, and every request field is honoured
or refused with a 400 naming it and the served entity; bad bytes are a 400 on every POST route."""

from __future__ import annotations

import json

import pytest
import requests
from ws_helpers import chat, post, serve_fake

INVOKE = "/serving-endpoints/cc/invocations"


@pytest.fixture(scope="module")
def served(ws):
    return serve_fake(ws, "cc")


def _events(r: requests.Response) -> list:
    return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: {")]


def test_answer_has_the_nullable_fields_openai_requires(served) -> None:
    answer = post(served, INVOKE, chat("hi there", n=2)).json()
    assert len(answer["choices"]) == 2
    for choice in answer["choices"]:
        assert "logprobs" in choice and choice["logprobs"] is None
        assert "refusal" in choice["message"] and choice["message"]["refusal"] is None


def test_stop_is_honoured_by_the_fake(served) -> None:
    answer = post(served, INVOKE, chat("alpha beta gamma", stop=["gamma"])).json()
    assert answer["choices"][0]["message"]["content"] == "[m-1] echo: alpha beta "
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_include_usage_ends_with_a_usage_chunk(served) -> None:
    headers = {"Authorization": f"Bearer {served.token}"}
    body = chat("one two", stream=True, stream_options={"include_usage": True})
    r = requests.post(served.host + INVOKE, json=body, headers=headers, stream=True, timeout=30)
    events = _events(r)
    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] > 0
    assert all(e["usage"] is None for e in events[:-1])
    plain = _events(requests.post(served.host + INVOKE, json=chat("one two", stream=True), headers=headers, timeout=30))
    assert plain[-1]["choices"] and plain[-1]["usage"] == events[-1]["usage"]


def test_n_streams_every_choice_to_its_finish(served) -> None:
    headers = {"Authorization": f"Bearer {served.token}"}
    events = _events(requests.post(served.host + INVOKE, json=chat("x", n=2, stream=True), headers=headers, timeout=30))
    finished = [c["index"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finished == [0, 1]


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}, "tool_choice"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"logit_bias": {"12": 3}}, "logit_bias"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"store": True}, "store"),
    ],
)
def test_a_field_the_entity_cannot_honour_is_400_naming_it(served, extra, field) -> None:
    for path, body in ((INVOKE, chat(**extra)), ("/serving-endpoints/chat/completions", {"model": "cc", **chat(**extra)})):
        r = post(served, path, body)
        assert r.status_code == 400, r.text
        message = r.json()["message"]
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert message.startswith(f"{field}: ") and "m-1" in message, message
        s = post(served, path, {**body, "stream": True})
        assert s.status_code == 400 and s.json()["message"] == message


@pytest.mark.parametrize(
    "body,field",
    [
        ({"messages": [{"role": "function", "content": None, "name": "f"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(stream=True, stream_options={"include_usage": "yes"}), "stream_options"),
        (chat(logprobs="yes"), "logprobs"),
        (chat(top_p=1.5), "top_p"),
        (chat(seed="7"), "seed"),
        (chat(max_completion_tokens=0), "max_completion_tokens"),
        (chat(top_logprobs=3), "top_logprobs"),
        (chat(logprobs=True, top_logprobs=21), "top_logprobs"),
        (chat(response_format={"type": "xml"}), "response_format"),
        (chat(response_format={"type": "json_schema"}), "response_format.json_schema"),
        (chat(tools=[{"type": "function"}]), "tools[0]"),
        (chat(tool_choice="required"), "tool_choice"),
        (chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice={"type": "function"}), "tool_choice"),
    ],
)
def test_a_malformed_field_is_400_before_routing(served, body, field) -> None:
    r = post(served, INVOKE, body)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(f"{field}: "), r.json()["message"]


def test_neutral_values_are_accepted(served) -> None:
    body = chat("x", n=1, logprobs=False, presence_penalty=0, frequency_penalty=0.0, tools=[], store=False, user="u1")
    r = post(served, INVOKE, body)
    assert r.status_code == 200, r.text


ROUTES = ["/api/2.0/serving-endpoints", INVOKE, "/serving-endpoints/chat/completions", "/api/2.0/serving-endpoints/cc/config"]


@pytest.mark.parametrize("path", ROUTES)
def test_bytes_that_are_not_utf8_are_400_on_every_route(served, path) -> None:
    headers = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    method = requests.put if path.endswith("/config") else requests.post
    r = method(served.host + path, data=b"\xc3\x28", headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("request body: not UTF-8 text")
    assert post(served, INVOKE, chat("still up")).status_code == 200


def test_bytes_that_are_not_utf8_are_never_a_server_error_on_any_write_route(tmp_path) -> None:
    """Every POST, PUT and PATCH route of the workspace app, enumerated from the app itself (so a
    new route is covered too), answers bad bytes with a 4xx and one line, never a 500."""
    from fastapi.routing import APIRoute
    from fastapi.testclient import TestClient

    from llmops_nb.workspace.api.app import create_app
    from llmops_nb.workspace.runners.base import RunnerContext
    from llmops_nb.workspace.runners.faults import FaultInjector

    ctx = RunnerContext(home=tmp_path, tracking_uri=None, faults=FaultInjector(), fake=True)
    app = create_app(ctx, token="t0k3n")
    routes = [
        (m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in sorted(r.methods) if m in ("POST", "PUT", "PATCH")
    ]
    assert len(routes) > 20
    # the guard answers only its loopback Host with the server's port (TestClient's is 80)
    headers = {"Authorization": "Bearer t0k3n", "Content-Type": "application/json", "Host": "127.0.0.1:80"}
    seen = {}
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path in routes:
            url = path.replace("{path:path}", "nowhere").replace("{securable_type}", "catalog")
            for param in ("{name}", "{entity}", "{full_name}", "{alias}", "{statement_id}"):
                url = url.replace(param, "x")
            r = client.request(method, url, content=b"\xc3\x28", headers=headers)
            seen[(method, path)] = r.status_code
            assert r.status_code < 500, (method, path, r.status_code, r.text[:200])
            if r.status_code == 400 and "error_code" in r.json():
                assert r.json()["message"].startswith("request body: not UTF-8 text"), (method, path, r.text[:200])
    # the body is read first on every serving route, control plane and invocations alike
    assert all(seen[k] == 400 for k in seen if "serving-endpoints" in k[1]), seen
    assert sum(code == 400 for code in seen.values()) >= 20, seen
