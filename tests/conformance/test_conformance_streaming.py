"""Streaming, on every target (the live one too): ``stream: true`` answers ``text/event-stream``
with ``chat.completion.chunk`` events ending in ``data: [DONE]``; the OpenAI client streams, and
so does our ``client.chat_stream``, on an external-model endpoint and the foundation endpoint."""

from __future__ import annotations

import json
import time

import pytest
import requests
from conformance_targets import FAKE, Target
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

from llmops_nb.chat.client import chat_stream
from llmops_nb.protocol.streaming import assemble

MESSAGES = [{"role": "user", "content": "Say hello."}]


def _raw_stream(target: Target, model: str) -> list:
    """One streamed call, retried while the endpoint answers 503 with Retry-After as any client
    must: the local workspace starts its foundation model at the first call (503
    TEMPORARILY_UNAVAILABLE "starting the model" until it is READY)."""
    deadline = time.monotonic() + target.ready_timeout
    while True:
        r = requests.post(
            f"{target.host}/serving-endpoints/{model}/invocations",
            json={"messages": MESSAGES, "max_tokens": 8, "stream": True},
            headers=target.headers(),
            stream=True,
            timeout=300,
        )
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/event-stream")
    return [line[6:].decode() for line in r.iter_lines() if line.startswith(b"data: ")]


def test_streaming_on_external_and_foundation_endpoints(target: Target, names) -> None:
    from openai import OpenAI

    name = names("stream")
    target.client().serving_endpoints.create(
        name=name,
        config=EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput.from_dict(target.external_entity())]),
    )
    target.wait_ready(name)
    client = OpenAI(base_url=f"{target.host}/serving-endpoints", api_key=target.token(), timeout=300.0, max_retries=10)
    w = target.client()
    for model in (name, target.foundation()):
        data = _raw_stream(target, model)
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        answer = assemble(chunks)
        assert answer["choices"][0]["message"]["content"]
        assert answer["choices"][0]["finish_reason"] in ("stop", "length")
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, stream=True)
            if c.choices
        )
        assert text
        stream = chat_stream(w, model, "Say hello.", max_tokens=8)
        assert "".join(stream) == stream.result.content and stream.result.content
        assert stream.result.ttft_ms is not None


@pytest.mark.targets(
    FAKE,
    reason="needs a served model that cannot stream: the fake's stream_as_json fault answers as MLflow's scoring "
    "server does for a plain pyfunc (mlflow#12439); the local workspace and Databricks stream their models",
)
def test_a_model_that_does_not_stream_is_read_whole_by_content_type(target: Target, names) -> None:
    names("json")  # resets the fault afterwards
    target.fake.set_faults(stream_as_json=True)
    r = requests.post(
        f"{target.host}/serving-endpoints/{target.foundation()}/invocations",
        json={"messages": MESSAGES, "max_tokens": 8, "stream": True},
        headers=target.headers(),
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    whole = r.json()["choices"][0]["message"]["content"]
    stream = chat_stream(target.client(), target.foundation(), "Say hello.", max_tokens=8)
    assert list(stream) == [whole] and stream.result.content == whole
