"""Issue 9 on the local workspace with the real model: a killed scoring server, a prompt longer
than the context, loopback-only listening."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.ops import get_endpoint, state_of
from llmops_nb.evaluation import datasets
from llmops_nb.evaluation.orchestrate import evaluate_endpoint
from llmops_nb.workspace import launcher

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict]:  # noqa: ANN001
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from llmops_nb.models.registry import register_model

    root = tmp_path_factory.mktemp("local")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    model = register_model("smollm2-135m-instruct", tracking_uri=uri, registry_uri=uri)
    home = root / ".llmops"
    info = launcher.ensure_running(home, uri)
    w = WorkspaceClient(
        config=Config(host=info.host, token=info.token, auth_type="pat", retry_timeout_seconds=300, http_timeout_seconds=300)
    )
    cfg = EndpointConfig.model_validate(
        {
            "name": "chat",
            "served_entities": [{"entity_name": model.name, "entity_version": model.version, "scale_to_zero_enabled": False}],
        }
    )
    deploy(w, cfg, progress=False, poll_interval=0.5, timeout=600)
    try:
        yield {"w": w, "home": home, "info": info, "uri": uri, "root": root}
    finally:
        launcher.stop(home)


def _children(home: Path) -> list[int]:
    return json.loads((home / "server.json").read_text())["children"]


def test_a_scoring_server_killed_mid_evaluation_loses_no_row(served: dict) -> None:
    w, home = served["w"], served["home"]
    rows = datasets.load_dataset(max_rows=10)
    states: list[str] = []
    result: dict = {}
    progress_file = served["root"] / "killed-resume.jsonl"

    def run() -> None:
        result["eval"] = evaluate_endpoint(
            w,
            "chat",
            rows,
            concurrency=2,
            max_tokens=16,
            tracking_uri=served["uri"],
            progress=False,
            mlflow_scoring=False,
            output_dir=served["root"],
            resume_path=progress_file,
        )

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not progress_file.exists() or len(progress_file.read_text().splitlines()) < 2):
        time.sleep(0.05)  # wait until a few rows are done while others are in flight
    assert worker.is_alive()
    victim = _children(home)[0]
    os.killpg(victim, signal.SIGKILL)
    while worker.is_alive() and time.monotonic() < deadline + 300:
        states.append(state_of(get_endpoint(w, "chat"))[0])
        time.sleep(0.2)
    worker.join(600)
    evaluation = result["eval"]
    assert "NOT_READY" in states  # the endpoint said so while the server was down
    assert evaluation.metrics["rows"] == 10 and evaluation.metrics["error_rate"] == 0
    assert list(evaluation.table["id"]) == [r["id"] for r in rows]  # every row scored exactly once
    assert all(a.strip() for a in evaluation.table["answer"])
    assert victim not in _children(home)  # restarted: a new process group
    assert state_of(get_endpoint(w, "chat")) == ("READY", "NOT_UPDATING")


def test_a_prompt_longer_than_the_context_is_a_clear_400_and_the_endpoint_stays_up(served: dict) -> None:
    url = f"{served['info'].host}/serving-endpoints/chat/invocations"
    auth = {"Authorization": f"Bearer {served['info'].token}"}
    huge = "word " * 5000
    r = requests.post(url, json={"messages": [{"role": "user", "content": huge}], "max_tokens": 8}, headers=auth, timeout=120)
    assert r.status_code == 400
    body = r.json()
    assert body["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST")
    assert "context" in body["message"] and len(body["message"]) < 600
    ok = requests.post(url, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, headers=auth, timeout=120)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] > 0
    bad = requests.post(url, data=b"{not json", headers={"Content-Type": "application/json", **auth}, timeout=30)
    assert bad.status_code == 400 and "JSON" in bad.json()["message"]


def test_the_workspace_and_its_scoring_servers_listen_on_loopback_only(served: dict) -> None:
    pids = [served["info"].pid]
    for pgid in _children(served["home"]):
        pids += [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid]
    listening = [c for pid in pids for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening  # the workspace and at least one scoring server
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
