"""Issue 9, faults: each injected, each survived or reported cleanly; nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest
import requests

from llmops_nb.chain import runner as chain_runner
from llmops_nb.chat import client
from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.ops import get_endpoint, state_of
from llmops_nb.errors import QueryError
from llmops_nb.evaluation import datasets
from llmops_nb.evaluation.orchestrate import evaluate_endpoint

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "configs" / "fake-databricks.yml"


def chat_config(name: str = "chat", **extra) -> EndpointConfig:  # noqa: ANN003
    body = {"name": name, "served_entities": [{"entity_name": "m", "entity_version": "1", "scale_to_zero_enabled": False}]}
    return EndpointConfig.model_validate({**body, **extra})


def test_half_of_all_calls_failing_with_429_or_503_is_survived(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    fake_workspace.set_faults(rate_429=0.25, rate_503=0.25, retry_after=0.1, routes=["api", "invocations"], seed=3)
    w = fake_workspace.client(retry_timeout_seconds=120)
    deployed = deploy(w, chat_config(), progress=False, poll_interval=0.1)  # deploy
    assert deployed.ready == "READY"
    assert client.chat(w, "chat", "one question").content == "[m-1] echo: one question"  # query
    rows = datasets.load_dataset(max_rows=20)
    result = evaluate_endpoint(
        w, "chat", rows, concurrency=4, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", progress=False, mlflow_scoring=False
    )  # evaluation
    assert result.metrics["rows"] == 20 and result.metrics["error_rate"] == 0
    assert sorted(result.table["id"]) == sorted(r["id"] for r in rows)
    calls = fake_workspace.requests()
    failed = [c for c in calls if c.get("status") in (429, 503)]
    answered = [c for c in calls if c["path"].endswith("/invocations") and c.get("status") == 200]
    assert len(failed) > 0.3 * len(calls)  # the faults really happened, about half the time
    assert len(answered) == 1 + 20  # each row answered exactly once


def test_a_request_that_hangs_past_its_timeout_is_reported_then_recovers(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    deploy(w, chat_config(), progress=False, poll_interval=0.1)
    fake_workspace.set_faults(hang_seconds=30)
    impatient = fake_workspace.client(retry_timeout_seconds=3, http_timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(QueryError) as err:
        client.chat(impatient, "chat", "are you there?")
    assert time.monotonic() - started < 20
    assert str(err.value).startswith("endpoint chat:") and "\n" not in str(err.value)
    fake_workspace.set_faults(hang_seconds=0)
    assert client.chat(w, "chat", "now?").content == "[m-1] echo: now?"
    assert state_of(get_endpoint(w, "chat")) == ("READY", "NOT_UPDATING")


def test_two_deploys_of_the_same_endpoint_at_once_end_consistent(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    """Two `llmops-nb deploy` processes against the Databricks API: one creates, the other waits and finds it."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    config = tmp_path / "configs" / "two.yml"
    config.write_text(
        CONFIG.read_text().replace("scale_to_zero_enabled: false", 'scale_to_zero_enabled: false\n      entity_version: "1"')
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "LLMOPS_"))},
        **fake_workspace.env(),
        "LLMOPS_PROJECT_DIR": str(tmp_path),
    }
    fake_workspace.set_faults(ready_seconds=1.0)
    cmd = [sys.executable, "-m", "llmops_nb.cli.main", "deploy", "--backend", "databricks", "--config", str(config)]
    procs = [
        subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(o[0].split(":", 1)[1].split(";")[0].strip() for o in outs) in (["created", "unchanged"], ["created", "created"])
    w = fake_workspace.client()
    final = get_endpoint(w, "smollm2-chat")
    assert state_of(final) == ("READY", "NOT_UPDATING")
    assert [e["name"] for e in final["config"]["served_entities"]] == ["main-llmops-smollm2_135m_instruct-1"]
    created = [c for c in fake_workspace.write_calls() if c["method"] == "POST" and c.get("status") == 200]
    assert len(created) == 1


def test_200_concurrent_requests_under_a_rate_limit_get_an_answer_or_a_429(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    deploy(
        w,
        chat_config(ai_gateway={"rate_limits": [{"calls": 60, "key": "endpoint", "renewal_period": "minute"}]}),
        progress=False,
        poll_interval=0.1,
    )
    url = f"{fake_workspace.host}/serving-endpoints/chat/invocations"
    statuses: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        r = requests.post(
            url,
            json={"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8},
            headers={"Authorization": f"Bearer {fake_workspace.token}"},
            timeout=60,
        )
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(statuses) == 200  # none dropped
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) == 60 and statuses.count(429) == 140
    assert state_of(get_endpoint(w, "chat")) == ("READY", "NOT_UPDATING")  # still up


@pytest.mark.model
def test_the_chain_killed_in_evaluate_resumes_without_asking_scored_rows_again(
    fake_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "LLMOPS_", "MLFLOW_"))},
        **fake_workspace.env(),
        "LLMOPS_PROJECT_DIR": str(tmp_path),
        "MLFLOW_TRACKING_URI": db,
        "MLFLOW_REGISTRY_URI": db,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    chain_runner.run(CONFIG, steps="register,deploy", progress=False, log=lambda _: None)
    fake_workspace.reset()
    fake_workspace.set_faults(latency_ms=300)
    cmd = [sys.executable, "-m", "llmops_nb.cli.main", "run", "--config", str(CONFIG), "--steps", "evaluate", "--max-rows", "32"]
    resume_file = tmp_path / ".llmops" / "eval" / "smollm2-chat-v1.jsonl"
    first = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120

    def answered_lines() -> list[dict]:  # the resume file notes each row asked and each answer
        lines = resume_file.read_text().splitlines() if resume_file.exists() else []
        return [json.loads(line) for line in lines if line.strip().endswith("}") and '"row"' in line]

    while time.monotonic() < deadline and len(answered_lines()) < 6:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the chain dies in the middle of evaluate (kernel included)
    first.wait(30)
    time.sleep(1.0)  # requests already in flight at the fake finish
    scored = [saved["row"]["question"] for saved in answered_lines()]
    assert 6 <= len(scored) < 32
    fake_workspace.reset()  # count only what the resumed run asks
    second = subprocess.run([*cmd, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    asked = [
        r["body"]["messages"][-1]["content"]
        for r in fake_workspace.requests()
        if r["path"].endswith("/invocations") and r.get("status") == 200
    ]
    assert not set(asked) & set(scored)  # no scored row asked again
    assert len(asked) == 32 - len(scored)
    run_dir = Path(second.stdout.split("run folder: ", 1)[1].splitlines()[0])
    outputs = json.loads((run_dir / "summary.json").read_text())["outputs"]["evaluate"]
    assert outputs["metrics"]["rows"] == 32 and outputs["metrics"]["error_rate"] == 0


def test_an_endpoint_latency_fault_slows_that_endpoint_only_and_is_checked(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    for name in ("slow", "quick"):
        deploy(w, chat_config(name), progress=False, poll_interval=0.1)
    with pytest.raises(urllib.error.HTTPError) as bad:
        fake_workspace.set_faults(endpoint_latency_ms={"slow": -1})
    assert "faults.endpoint_latency_ms.slow: -1 is not allowed" in bad.value.read().decode()
    with pytest.raises(urllib.error.HTTPError) as bad:
        fake_workspace.set_faults(gateway_minute_seconds=0)
    assert "faults.gateway_minute_seconds: 0 is not allowed" in bad.value.read().decode()
    fake_workspace.set_faults(latency_ms=0, endpoint_latency_ms={"slow": 400})
    started = time.monotonic()
    assert client.chat(w, "slow", "q").content == "[m-1] echo: q"
    assert time.monotonic() - started >= 0.4  # a lower bound the fake's sleep guarantees, not a speed assertion
    faults = fake_workspace.set_faults()
    assert faults["endpoint_latency_ms"] == {"slow": 400} and faults["latency_ms"] == 0
