"""``model.interface: chat_model`` served by the local workspace (issue 31, item 4): MLflow's scoring
server with our streaming route, which calls ``ChatModel.predict_stream``; a field the ChatModel's
signature cannot carry at the top level is a plain 400 here (Databricks would drop it)."""

from __future__ import annotations

import json

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from ws_helpers import core, entity

from llmops_nb.workspace import launcher

pytestmark = pytest.mark.model

BODY = {"messages": [{"role": "user", "content": "Name three colors."}], "max_tokens": 16, "temperature": 0.0}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from llmops_nb.models.registry import register_model

    tmp = tmp_path_factory.mktemp("chat-model")
    uri = f"sqlite:///{tmp}/mlflow.db"
    model = register_model("smollm2-chat-model", interface="chat_model", tracking_uri=uri, registry_uri=uri)
    home = tmp / "ws"
    info = launcher.ensure_running(home, uri)
    try:
        w = WorkspaceClient(config=Config(host=info.host, token=info.token, auth_type="pat", retry_timeout_seconds=120))
        ep = w.serving_endpoints.create_and_wait(name="cm", config=core("cm", entity(model.name, model.version)))
        assert ep.state is not None and ep.state.ready is not None and ep.state.ready.value == "READY"
        yield info, model, uri
    finally:
        launcher.stop(home)


def _post(info, body: dict, **kwargs) -> requests.Response:  # noqa: ANN001
    url = f"{info.host}/serving-endpoints/cm/invocations"
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {info.token}"}, timeout=120, **kwargs)


def test_register_records_the_interface(served) -> None:
    from mlflow import MlflowClient

    _info, model, uri = served
    run = MlflowClient(uri, uri).get_run(model.run_id)
    assert run.data.params["interface"] == "chat_model" and run.data.tags["llmops_nb.interface"] == "chat_model"


def test_a_field_the_chat_model_cannot_carry_is_refused_plainly(served) -> None:
    info, _model, _uri = served
    refused = _post(info, {**BODY, "seed": 7})
    assert refused.status_code == 400
    message = refused.json()["message"]
    assert message.startswith("seed: 7 is not allowed at the top level for served entity smollm2-chat-model-1")
    assert "custom_inputs" in message and "\n" not in message
    carried = _post(info, {**BODY, "custom_inputs": {"seed": 7, "logprobs": True, "top_logprobs": 1}})
    assert carried.status_code == 200, carried.text
    assert carried.json()["choices"][0]["logprobs"]["content"]  # custom_inputs reached the model
    unknown = _post(info, {**BODY, "custom_inputs": {"colour": "red"}})
    assert unknown.status_code == 400 and "custom_inputs.colour: not allowed" in unknown.json()["message"]


def test_the_local_workspace_streams_it_through_chat_model_predict_stream(served) -> None:
    from llmops_nb.protocol.streaming import assemble

    info, _model, _uri = served
    whole = _post(info, BODY).json()
    with _post(info, {**BODY, "stream": True}, stream=True) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]"
    chunks = [json.loads(line[len(b"data: ") :]) for line in lines[:-1]]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) > 3
    # MLflow's ChatChoiceDelta (role defaults to "assistant") in every chunk: ChatModel.predict_stream's
    # chunks, not a whole answer cut into words (scoring_app.py's fallback names the role once)
    assert all(c["choices"][0]["delta"].get("role") == "assistant" for c in chunks if c["choices"])
    assert assemble(chunks)["choices"][0]["message"]["content"] == whole["choices"][0]["message"]["content"]


def test_a_client_that_goes_away_frees_its_sequence_through_the_chat_model_wrapper(served) -> None:
    """Closing the stream closes MLflow's ChatModel wrapper and ChatModel.predict_stream's generator
    with it: the sequence leaves the batch (the engine's counters, read through get_raw_model)."""
    import re
    import time

    info, model, _uri = served
    logs = (info.home / "logs" / "cm" / f"{model.name}-{model.version}.log").read_text()
    port = re.findall(r"scoring server for \S+ on port (\d+)", logs)[-1]

    def engine() -> dict:
        return requests.get(f"http://127.0.0.1:{port}/llmops/engine", timeout=10).json()

    before = engine()
    long = {**BODY, "messages": [{"role": "user", "content": "Write a very long story about a dragon."}], "max_tokens": 1500}
    with _post(info, {**long, "stream": True}, stream=True) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(3)]
    assert all(line.startswith(b"data: ") for line in got if line)
    deadline = time.monotonic() + 20
    while engine()["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.2)
    after = engine()
    assert after["cancelled"] == before["cancelled"] + 1 and after["active"] == 0
