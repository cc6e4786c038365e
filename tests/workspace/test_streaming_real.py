"""Streaming with the real SmolLM2 on the local workspace: a registered version (MLflow's scoring
server with our streaming route beside it) and the foundation endpoint (slow)."""

from __future__ import annotations

import re
import time

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from ws_helpers import core, entity

from llmops_nb.workspace import launcher

pytestmark = pytest.mark.model

QUESTION = "Name three colors."
MAX_TOKENS = 32


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from llmops_nb.models.registry import register_model

    tmp = tmp_path_factory.mktemp("stream")
    tracking_uri = f"sqlite:///{tmp}/mlflow.db"
    model = register_model("smollm2-135m-instruct", tracking_uri=tracking_uri, registry_uri=tracking_uri)
    home = tmp / "ws"
    info = launcher.ensure_running(home, tracking_uri)
    try:
        w = WorkspaceClient(
            config=Config(host=info.host, token=info.token, auth_type="pat", retry_timeout_seconds=300, http_timeout_seconds=300)
        )
        ep = w.serving_endpoints.create_and_wait(name="real", config=core("real", entity(model.name, model.version)))
        assert ep.state.ready.value == "READY"
        _engine.home = home
        yield info, w, f"{model.name}-{model.version}"
    finally:
        launcher.stop(home)


def _openai(info):
    from openai import OpenAI

    return OpenAI(base_url=f"{info.host}/serving-endpoints", api_key=info.token)


def _messages():
    return [{"role": "user", "content": QUESTION}]


def test_openai_stream_equals_the_greedy_answer(local) -> None:
    info, _, _served = local
    client = _openai(info)
    whole = client.chat.completions.create(model="real", messages=_messages(), max_tokens=MAX_TOKENS, temperature=0.0)
    chunks = list(
        client.chat.completions.create(model="real", messages=_messages(), max_tokens=MAX_TOKENS, temperature=0.0, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.choices[0].message.content and text == whole.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert {c.object for c in chunks} == {"chat.completion.chunk"}


def test_sdk_openai_client_and_chat_stream_on_both_routes(local) -> None:
    from llmops_nb.chat.client import chat, chat_stream

    _info, w, served = local
    ref = chat(w, "real", QUESTION, max_tokens=MAX_TOKENS)
    oc = w.serving_endpoints.get_open_ai_client()
    text = "".join(
        c.choices[0].delta.content or ""
        for c in oc.chat.completions.create(
            model="real", messages=_messages(), max_tokens=MAX_TOKENS, temperature=0.0, stream=True
        )
        if c.choices
    )
    assert text == ref.content
    stream = chat_stream(w, "real", QUESTION, max_tokens=MAX_TOKENS)
    parts = list(stream)
    assert "".join(parts) == ref.content == stream.result.content
    assert stream.result.served_entity == served and stream.result.ttft_ms is not None
    assert stream.result.completion_tokens == ref.completion_tokens
    # the foundation endpoint streams too (the same registered SmolLM2)
    found = chat_stream(w, "databricks-smollm2-135m-instruct", QUESTION, max_tokens=MAX_TOKENS)
    assert "".join(found) == ref.content


def _engine(w, served: str) -> dict:
    """The engine's counters, from the scoring server (its port from the entity's own log)."""
    logs = (_engine.home / "logs" / "real" / f"{served}.log").read_text()
    port = re.findall(r"scoring server for \S+ on port (\d+)", logs)[-1]
    return requests.get(f"http://127.0.0.1:{port}/llmops/engine", timeout=10).json()


def test_a_client_that_goes_away_frees_its_sequence(local) -> None:
    from llmops_nb.chat.client import chat, chat_stream

    _info, w, served = local
    before = _engine(w, served)
    stream = chat_stream(w, "real", "Write a very long story about a dragon and a knight.", max_tokens=1500, temperature=0.0)
    it = iter(stream)
    got = [next(it) for _ in range(3)]
    stream.close()  # the connection drops: workspace -> scoring server -> engine
    deadline = time.monotonic() + 60
    stats = _engine(w, served)
    while stats["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = _engine(w, served)
    assert stats["cancelled"] == before["cancelled"] + 1  # it left the batch, not at max_tokens
    assert stream.result.content == "".join(got) and stream.result.finish_reason is None
    steps = stats["steps"]
    answer = chat(w, "real", "Say hello.", max_tokens=8)  # alone in the batch
    after = _engine(w, served)
    assert answer.content and after["active"] == 1
    # the aborted stream decoded a handful of steps beyond the 3 deltas, not ~1500
    assert steps - before["steps"] < 200


def test_structured_output_tools_n_and_logprobs_through_the_scoring_server(local) -> None:
    """Issue 29: the fields the GGUF model honours reach it through MLflow's scoring server (its
    signature declares them), plain and streamed; a field it does not honour is a 400 naming it
    and the served entity, before the model runs."""
    import json

    import jsonschema

    info, _, served = local
    client = _openai(info)
    schema = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "colour", "schema": schema}}
    kw = {"model": "real", "messages": _messages(), "max_tokens": 40, "temperature": 0.0}
    answer = client.chat.completions.create(**kw, n=2, response_format=fmt, logprobs=True, top_logprobs=2)
    assert len(answer.choices) == 2
    for choice in answer.choices:
        jsonschema.validate(json.loads(choice.message.content), schema)
        assert choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 2
    tool = {
        "type": "function",
        "function": {"name": "paint", "parameters": {"type": "object", "properties": {"colour": {"type": "string"}}}},
    }
    chunks = list(client.chat.completions.create(**kw, tools=[tool], tool_choice="required", stream=True))
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or "" for c in chunks if c.choices and c.choices[0].delta.tool_calls
    )
    assert isinstance(json.loads(args), dict)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    usage = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))[-1]
    assert usage.choices == [] and usage.usage.completion_tokens > 0
    r = requests.post(
        f"{info.host}/serving-endpoints/real/invocations",
        json={"messages": _messages(), "presence_penalty": 0.5},
        headers={"Authorization": f"Bearer {info.token}"},
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["message"].startswith("presence_penalty: 0.5 is not allowed for served entity")
    assert served in r.json()["message"]


def test_the_client_asks_for_a_schema_and_a_tool_call(local, tmp_path) -> None:
    """llmops-nb query --json-schema FILE --tool FILE: the answer parses against the schema, and a
    tool file gives tool_calls whose arguments parse against the tool's parameters."""
    import json

    import jsonschema

    from llmops_nb.chat.client import chat
    from llmops_nb.cli.lifecycle import _output_files

    _, w, _served = local
    schema = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"]}
    (tmp_path / "colour.json").write_text(json.dumps(schema))
    params = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    (tmp_path / "weather.json").write_text(json.dumps({"name": "weather", "parameters": params}))
    shaped = _output_files(tmp_path / "colour.json", (), False)
    result = chat(w, "real", QUESTION, max_tokens=40, **shaped)
    jsonschema.validate(json.loads(result.content), schema)
    called = chat(w, "real", "Weather in Rome?", max_tokens=40, **_output_files(None, (tmp_path / "weather.json",), False))
    (call,) = called.tool_calls or []
    assert call["function"]["name"] == "weather" and called.finish_reason == "tool_calls", called
    jsonschema.validate(json.loads(call["function"]["arguments"]), params)
