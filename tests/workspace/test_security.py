"""The local workspace as safe as a Jupyter server (issue 19), over real HTTP.

Each finding refused (foreign Origin, foreign Host, no token: status named, nothing created),
$LLMOPS_HOME private whatever the umask, and every client (ours and databricks-sdk, MLflow's
deployment client, the OpenAI client) working with the token `llmops-nb workspace env` prints.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from databricks.sdk.service.serving import AiGatewayUsageTrackingConfig
from ws_helpers import chat, core, entity, post

from llmops_nb.testing import fake_workspace
from llmops_nb.workspace.api.token import read_token

ROOT = Path(__file__).resolve().parents[2]
API = "/api/2.0/serving-endpoints"
CREATE = {"name": "csrf-made", "config": {"served_entities": [{"entity_name": "main.default.m", "entity_version": "1"}]}}


def names(ws) -> list[str]:
    return [e.name for e in ws.client().serving_endpoints.list()]


def auth(ws) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.token}"}


# ---- the four findings, refused -------------------------------------------------------------


def test_a_cross_site_text_plain_create_is_403_and_creates_nothing(ws):
    """A page in the browser can send this 'simple' request without a CORS preflight."""
    r = requests.post(
        ws.host + API,
        data=json.dumps(CREATE),
        timeout=10,
        headers={**auth(ws), "Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    assert "http://evil.example" in r.json()["message"] and "\n" not in r.json()["message"]
    r = requests.post(
        f"{ws.host}/serving-endpoints/databricks-smollm2-135m-instruct/invocations",
        data=json.dumps(chat()),
        timeout=10,
        headers={**auth(ws), "Content-Type": "text/plain", "Origin": "null"},
    )
    assert r.status_code == 403
    assert "csrf-made" not in names(ws)
    assert [q for q in ws.requests() if q["method"] == "POST"] == []  # never ran


def test_the_workspace_s_own_origin_is_accepted(ws):
    r = requests.get(ws.host + API, timeout=10, headers={**auth(ws), "Origin": ws.host})
    assert r.status_code == 200


def test_a_foreign_host_header_is_403_even_with_the_token(ws):
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host."""
    for path in (API, "/.well-known/databricks-config"):
        r = requests.get(ws.host + path, timeout=10, headers={**auth(ws), "Host": "evil.example"})
        assert r.status_code == 403 and "'evil.example' is not allowed" in r.json()["message"]
    r = requests.post(ws.host + API, json=CREATE, timeout=10, headers={**auth(ws), "Host": f"evil.example:{ws.info.port}"})
    assert r.status_code == 403 and "csrf-made" not in names(ws)
    for host in (f"localhost:{ws.info.port}", f"127.0.0.1:{ws.info.port}"):
        assert requests.get(ws.host + API, timeout=10, headers={**auth(ws), "Host": host}).ok


def test_without_the_token_every_route_is_401_with_how_to_get_it(ws):
    for method, path, body in (
        ("GET", API, None),
        ("POST", API, CREATE),
        ("POST", "/serving-endpoints/x/invocations", chat()),
        ("POST", "/serving-endpoints/chat/completions", chat(model="x")),
        ("GET", "/_fake/requests", None),
        ("GET", "/nowhere", None),
    ):
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {ws.token}"},
            {"Authorization": f"Bearer {ws.token}:"},
            {"Authorization": f"Bearer {ws.token}x"},
        ):
            r = requests.request(method, ws.host + path, json=body, headers=headers, timeout=10)
            assert r.status_code == 401, (method, path, headers)
            message = r.json()["message"]
            assert "llmops-nb workspace env" in message and ws.token not in message
    assert "csrf-made" not in names(ws)
    # the discovery document databricks-sdk's Config fetches before it authenticates
    assert requests.get(ws.host + "/.well-known/databricks-config", timeout=10).status_code == 200
    # a requester name after the token is accepted (the `user` rate-limit key)
    assert requests.get(ws.host + API, headers={"Authorization": f"Bearer {ws.token}:alice"}, timeout=10).status_code == 200


def test_a_body_without_content_type_is_json_as_on_databricks(ws):
    """curl -d '{...}' sends no JSON content type; Databricks parses the body all the same."""
    body = {**CREATE, "name": "sec-curl"}
    r = requests.post(ws.host + API, data=json.dumps(body).encode(), headers=auth(ws), timeout=10)
    assert r.status_code == 200, r.text
    assert "sec-curl" in names(ws)


def test_the_token_is_random_kept_private_and_kept_across_restarts(tmp_path):
    with fake_workspace(tmp_path / "a") as a, fake_workspace(tmp_path / "b") as b:
        assert a.token != b.token and len(a.token) >= 32
        assert read_token(a.home) == a.token
        assert stat.S_IMODE(os.stat(a.home / "token").st_mode) == 0o600
        before = a.token
        a.restart()
        assert a.token == before and a.client().serving_endpoints.list()


def test_a_token_set_by_the_user_is_used_and_checked(tmp_path, monkeypatch):
    from llmops_nb.errors import ConfigError
    from llmops_nb.workspace import launcher

    with fake_workspace(tmp_path / "ws", token="team-token-1") as ws:
        assert ws.token == read_token(ws.home) == "team-token-1"
        assert requests.get(ws.host + API, headers=auth(ws), timeout=10).ok
    with pytest.raises(ConfigError, match="LLMOPS_WORKSPACE_TOKEN") as info:
        launcher.ensure_running(tmp_path / "bad", None, fake=True, token="has a:colon")
    assert "colon" not in str(info.value)
    assert not (tmp_path / "bad").exists()


def _modes(home: Path) -> dict[str, int]:
    """Every path's mode; a file that vanishes between listing and stat (an atomic write's
    temporary, renamed meanwhile by the running workspace) is skipped."""
    modes = {}
    for p in [home, *home.rglob("*")]:
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(st.st_mode):
            modes[str(p.relative_to(home))] = stat.S_IMODE(st.st_mode)
    return modes


def test_home_is_private_after_a_run_whatever_the_umask(tmp_path):
    """Folders 0700 and files 0600: an existing home made world-readable is closed too."""
    home = tmp_path / "ws"
    (home / "logs").mkdir(parents=True)
    os.chmod(home, 0o755)
    os.chmod(home / "logs", 0o755)
    (home / "secrets.yml").write_text("llmops:\n  k: v\n")
    os.chmod(home / "secrets.yml", 0o644)
    old = os.umask(0o022)
    try:
        with fake_workspace(home) as ws:
            w = ws.client()
            w.serving_endpoints.create_and_wait(name="sec-modes", config=core("sec-modes", entity("m")))
            w.serving_endpoints.put_ai_gateway(name="sec-modes", usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True))
            assert post(ws, "/serving-endpoints/sec-modes/invocations", chat()).status_code == 200
            r = requests.post(
                ws.host + API,
                headers=auth(ws),
                timeout=10,
                json={
                    "name": "sec-plain",
                    "config": {
                        "served_entities": [
                            {
                                "name": "ext",
                                "external_model": {
                                    "name": "gpt-4o-mini",
                                    "provider": "openai",
                                    "task": "llm/v1/chat",
                                    "openai_config": {"openai_api_key_plaintext": "sk-plain"},
                                },
                            }
                        ]
                    },
                },
            )
            assert r.status_code == 200, r.text
            modes = _modes(home)
    finally:
        os.umask(old)
    assert {"token", "server.json", "secrets.yml", "logs/workspace.log"} <= set(modes)
    assert any(k.startswith("usage/") for k in modes) and any(k.startswith("state") for k in modes)
    assert "state/endpoint-secrets.json" in modes  # the plaintext key, kept by the workspace
    dirs = {k for k in modes if (home / k).is_dir()}
    assert {k: oct(v) for k, v in modes.items() if k in dirs and v != 0o700} == {}
    assert {k: oct(v) for k, v in modes.items() if k not in dirs and v != 0o600} == {}


# ---- every client works with the token `workspace env` prints --------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Iterator[dict]:
    """A project folder and the CLI run in it, with no Databricks/MLflow/llmops settings."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(LLMOPS_PROJECT_DIR=str(tmp_path), LLMOPS_RETRY_TIMEOUT_SECONDS="30")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmops_nb.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    yield {"root": tmp_path, "env": env, "cli": cli}
    cli("workspace", "stop")


def exports(text: str) -> dict[str, str]:
    return dict(line[len("export ") :].split("=", 1) for line in text.splitlines() if line.startswith("export "))


def test_third_party_clients_work_with_the_exported_token(project, monkeypatch):
    cli = project["cli"]
    assert cli("workspace", "env").returncode == 3  # none runs yet: says how to start one
    started = cli("workspace", "start", "--fake")
    assert started.returncode == 0, started.stderr
    env = exports(cli("workspace", "env").stdout)
    assert env == exports(started.stdout) and set(env) == {"DATABRICKS_HOST", "DATABRICKS_TOKEN"}
    assert env["DATABRICKS_TOKEN"] == read_token(project["root"] / ".llmops")
    for var in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_AUTH_TYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient()  # databricks-sdk, from the environment
    w.serving_endpoints.create_and_wait(name="sec-clients", config=core("sec-clients", entity("m")))
    from mlflow.deployments import get_deploy_client

    answer = get_deploy_client("databricks").predict(endpoint="sec-clients", inputs=chat("hi mlflow"))
    assert answer["choices"][0]["message"]["content"] == "[m-1] echo: hi mlflow"
    from openai import OpenAI

    openai = OpenAI(base_url=f"{env['DATABRICKS_HOST']}/serving-endpoints", api_key=env["DATABRICKS_TOKEN"], max_retries=0)
    r = openai.chat.completions.create(model="sec-clients", messages=chat("hi openai")["messages"])
    assert r.choices[0].message.content == "[m-1] echo: hi openai"
    # our CLI on the databricks backend reads the same variables
    project["env"].update(env)
    queried = cli("query", "--backend", "databricks", "sec-clients", "hi cli")
    assert queried.returncode == 0 and queried.stdout.strip() == "[m-1] echo: hi cli", queried.stderr

    # and without the token, each of them is refused
    monkeypatch.setenv("DATABRICKS_TOKEN", "not-the-token")
    from databricks.sdk.errors import DatabricksError

    with pytest.raises(DatabricksError, match="llmops-nb workspace env"):
        WorkspaceClient().serving_endpoints.get("sec-clients")
    with pytest.raises(Exception, match="401|llmops-nb workspace env"):
        OpenAI(
            base_url=f"{env['DATABRICKS_HOST']}/serving-endpoints", api_key="not-the-token", max_retries=0
        ).chat.completions.create(model="sec-clients", messages=chat()["messages"])


def test_our_clients_read_the_token_by_themselves(project, monkeypatch):
    """The local backend (CLI, notebooks, widgets) and llmops_nb.testing need nothing exported."""
    cli = project["cli"]
    started = cli("workspace", "start")  # the real workspace: no model loads until asked
    assert started.returncode == 0, started.stderr
    token = exports(started.stdout)["DATABRICKS_TOKEN"]
    listed = cli("endpoints", "list")
    assert listed.returncode == 0 and "databricks-smollm2-135m-instruct" in listed.stdout, listed.stderr
    for key in [k for k in os.environ if k.startswith(("DATABRICKS_", "LLMOPS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(project["root"]))
    from llmops_nb.backends import resolve_backend
    from llmops_nb.steps.query import curl_command

    backend = resolve_backend("local", start=False)
    assert backend.token == token
    assert "databricks-smollm2-135m-instruct" in [e.name for e in backend.workspace_client().serving_endpoints.list()]
    curl = curl_command(backend.endpoint_url("x"), backend)
    assert f'-H "Authorization: Bearer $(cat {project["root"] / ".llmops" / "token"})"' in curl
    assert token not in curl
