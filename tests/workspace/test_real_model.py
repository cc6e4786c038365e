"""The real path: a registered SmolLM2 version served by MLflow's scoring server (slow)."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.service.serving import ChatMessage, ChatMessageRole
from ws_helpers import core, entity

from llmops_nb.protocol.streaming import WHOLE_ON_DATABRICKS
from llmops_nb.workspace import launcher

pytestmark = pytest.mark.model


def test_registered_model_is_served_by_the_scoring_server(tmp_path):
    pytest.importorskip("llama_cpp")
    from llmops_nb.models.registry import register_model

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    model = register_model("smollm2-135m-instruct", tracking_uri=tracking_uri, registry_uri=tracking_uri)
    home = tmp_path / "ws"
    info = launcher.ensure_running(home, tracking_uri)
    try:
        w = WorkspaceClient(
            config=Config(host=info.host, token=info.token, auth_type="pat", retry_timeout_seconds=300, http_timeout_seconds=300)
        )
        ep = w.serving_endpoints.create_and_wait(name="real", config=core("real", entity(model.name, model.version)))
        assert ep.state.ready.value == "READY", ep.config.served_entities[0].state
        r = w.serving_endpoints.query(
            name="real", messages=[ChatMessage(role=ChatMessageRole.USER, content="Say hello.")], max_tokens=16
        )
        assert r.choices[0].message.content
        assert r.served_model_name == f"{model.name}-{model.version}"
        # the build logs say plainly where this differs from Databricks (issue 31, item 4)
        logs = w.serving_endpoints.build_logs("real", r.served_model_name).logs or ""
        assert f"stream: true: streamed here through its predict_stream; {WHOLE_ON_DATABRICKS}" in logs
        children = json.loads((home / "server.json").read_text())["children"]
        assert children  # the scoring server runs as a child process group
        # the scoring server dies: NOT_READY, the supervisor restarts it, the SDK retries 503s
        os.killpg(children[0], signal.SIGKILL)
        ep = _wait(w, "real", lambda e: e.state.ready.value == "NOT_READY")
        assert ep.config.served_entities[0].state.deployment.value == "DEPLOYMENT_RECOVERING"
        r = w.serving_endpoints.query(
            name="real", messages=[ChatMessage(role=ChatMessageRole.USER, content="Again.")], max_tokens=8
        )
        assert r.choices[0].message.content
        assert w.serving_endpoints.get("real").state.ready.value == "READY"
        children = json.loads((home / "server.json").read_text())["children"]
        # an unknown version is refused before anything starts
        with pytest.raises(Exception) as err:
            w.serving_endpoints.create(name="nope", config=core("nope", entity(model.name, "99")))
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    finally:
        launcher.stop(home)
    for pid in children:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def _wait(w, name, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        ep = w.serving_endpoints.get(name)
        if predicate(ep) or time.monotonic() > deadline:
            return ep
        time.sleep(0.1)
