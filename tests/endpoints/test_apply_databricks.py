"""The databricks backend through the CLI against the fake started from the CLI, every kind of endpoint.

A canary key travels as a secret reference: it must reach the provider and nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops_nb.chat import client
from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-8f3a1c-not-a-real-key"


@pytest.fixture
def cli_fake(tmp_path: Path, fake_provider) -> Iterator[dict]:  # noqa: ANN001
    """`llmops-nb workspace start --fake`, with DATABRICKS_HOST pointing at it for later commands."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(
        LLMOPS_PROJECT_DIR=str(tmp_path),
        LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY=CANARY,  # the value of {{secrets/llmops/openai_api_key}}
        LLMOPS_SECRET_LLMOPS_ANTHROPIC_API_KEY=CANARY,
        LLMOPS_OPENAI_API_BASE=fake_provider.base_url,  # stands in for api.openai.com, offline
        LLMOPS_ANTHROPIC_API_BASE=fake_provider.base_url,
        LLMOPS_RETRY_TIMEOUT_SECONDS="30",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "llmops_nb.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        state["outputs"].append(done.stdout + done.stderr)
        return done

    state: dict = {"outputs": [], "run": run, "home": tmp_path / ".llmops", "provider": fake_provider, "root": tmp_path}
    started = run("workspace", "start", "--fake")
    assert started.returncode == 0, started.stderr
    exports = run("workspace", "env").stdout  # the lines a user evals: host and the workspace's token
    host = exports.split("export DATABRICKS_HOST=", 1)[1].split()[0]
    token = exports.split("export DATABRICKS_TOKEN=", 1)[1].split()[0]
    env.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN=token)
    state["host"], state["token"] = host, token
    yield state
    run("workspace", "stop")


def test_external_openai_endpoint_deploys_and_answers_through_the_cli(cli_fake: dict) -> None:
    run = cli_fake["run"]
    deployed = run("deploy", "--backend", "databricks", "--config", "configs/databricks-external-openai.yml")
    assert deployed.returncode == 0, deployed.stderr
    assert "endpoint openai-chat: created; state READY" in deployed.stdout
    assert f"{cli_fake['host']}/serving-endpoints/openai-chat/invocations" in deployed.stdout
    # the fake serves no MLflow API: the deploy stands, and says on stderr what rollback will not know (one line)
    (kept,) = [line for line in deployed.stderr.splitlines() if "rollout history" in line]
    assert kept.startswith("warning: openai-chat: config ") and "will not restore it" in kept, kept
    again = run("deploy", "--backend", "databricks", "--config", "configs/databricks-external-openai.yml")
    assert "openai-chat: unchanged" in again.stdout

    answer = run("query", "--backend", "databricks", "openai-chat", "Hello")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "[provider:gpt-4o-mini] Hello"
    # the key reached the provider, resolved from the reference at request time ...
    assert cli_fake["provider"].authorizations()[-1] == f"Bearer {CANARY}"
    # ... and nothing else: not the CLI's output, not a request the workspace recorded, not a file
    assert all(CANARY not in out for out in cli_fake["outputs"])
    import requests

    from llmops_nb.testing import FakeWorkspace  # noqa: F401  (the admin API is plain HTTP)

    recorded = requests.get(
        f"{cli_fake['host']}/_fake/requests", timeout=10, headers={"Authorization": f"Bearer {cli_fake['token']}"}
    ).text
    assert "{{secrets/llmops/openai_api_key}}" in recorded and CANARY not in recorded
    for path in cli_fake["root"].rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_azure_openai_and_anthropic_endpoints_answer(cli_fake: dict) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    w = WorkspaceClient(config=Config(host=cli_fake["host"], token=cli_fake["token"], auth_type="pat", retry_timeout_seconds=30))
    root = cli_fake["provider"].base_url.rsplit("/v1", 1)[0]
    azure = EndpointConfig.model_validate(
        {
            "name": "azure-chat",
            "served_entities": [
                {
                    "external_model": {
                        "name": "gpt-4o",
                        "provider": "openai",
                        "task": "llm/v1/chat",
                        "openai_config": {
                            "openai_api_type": "azure",
                            "openai_api_key": "{{secrets/llmops/openai_api_key}}",
                            "openai_api_base": root,
                            "openai_api_version": "2024-06-01",
                            "openai_deployment_name": "prod-gpt4o",
                        },
                    }
                }
            ],
        }
    )
    anthropic = EndpointConfig.model_validate(
        {
            "name": "claude-chat",
            "served_entities": [
                {
                    "external_model": {
                        "name": "claude-3-5-haiku",
                        "provider": "anthropic",
                        "task": "llm/v1/chat",
                        "anthropic_config": {"anthropic_api_key": "{{secrets/llmops/anthropic_api_key}}"},
                    }
                }
            ],
        }
    )
    for cfg in (azure, anthropic):
        assert deploy(w, cfg, progress=False, poll_interval=0.2).ready == "READY"
    assert client.chat(w, "azure-chat", "Hi Azure").content == "[provider:prod-gpt4o] Hi Azure"
    provider = cli_fake["provider"].requests[-1]
    assert provider["path"] == "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-06-01"
    assert provider["x_api_key"] == CANARY
    reply = client.chat(w, "claude-chat", "Hi Claude")
    assert reply.content == "[provider:claude-3-5-haiku] Hi Claude" and reply.completion_tokens > 0
    assert cli_fake["provider"].requests[-1]["path"] == "/v1/messages"


def test_a_foundation_model_endpoint_is_listed_and_queried_never_created(cli_fake: dict) -> None:
    run = cli_fake["run"]
    listed = run("endpoints", "list", "--backend", "databricks")
    assert "databricks-smollm2-135m-instruct\tREADY" in listed.stdout
    answer = run("query", "--backend", "databricks", "databricks-smollm2-135m-instruct", "Hello")
    assert answer.returncode == 0 and "Hello" in answer.stdout
    stopped = run("endpoints", "stop", "--backend", "databricks", "databricks-smollm2-135m-instruct")
    assert stopped.returncode == 1 and "error:" in stopped.stderr  # a system endpoint cannot be deleted
    (cli_fake["root"] / "configs" / "fm.yml").write_text(
        "backend: databricks\nmodel:\n  name: main.llmops.smollm2\nfoundation_endpoint: databricks-smollm2-135m-instruct\n"
    )
    from llmops_nb.backends import Backend
    from llmops_nb.config.project import load_project_config
    from llmops_nb.steps.query import query

    project = load_project_config(cli_fake["root"] / "configs" / "fm.yml")
    backend = Backend(kind="databricks", host=cli_fake["host"], token=cli_fake["token"], tracking_uri="", registry_uri="")
    served = query(project, backend, ["Name a color."])
    assert served["endpoint_name"] == "databricks-smollm2-135m-instruct" and served["answers"][0]["content"]
    assert "$DATABRICKS_TOKEN" in served["curl"]
