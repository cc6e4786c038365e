"""The MLflow experiment: configurable, absolute under the current user on Databricks, refused when relative."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmops_nb.backends import Backend
from llmops_nb.config.project import ProjectConfig
from llmops_nb.errors import ConfigError
from llmops_nb.tracking.uris import resolve_experiment

ME = "/api/2.0/preview/scim/v2/Me"


class _Scim(BaseHTTPRequestHandler):
    """Answers ``current_user.me()`` as Databricks does; 404 for anything else."""

    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.paths.append(self.path)
        if self.path != ME:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"id": "42", "userName": "ada@example.com", "active": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scim_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scim)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_locally_the_default_is_llmops_nb_and_any_name_is_kept() -> None:
    assert resolve_experiment(None, "sqlite:///tmp/mlflow.db") == "llmops-nb"
    assert resolve_experiment("mine", "sqlite:///tmp/mlflow.db") == "mine"


def test_on_databricks_a_relative_name_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_experiment("llmops-nb", "databricks")
    text = str(err.value)
    assert text.startswith("experiment: 'llmops-nb' is not allowed;") and "/Users/" in text and "\n" not in text
    assert resolve_experiment("/Shared/llmops-nb", "databricks://prod") == "/Shared/llmops-nb"


def test_on_databricks_the_default_is_under_the_current_user(scim_host: str) -> None:
    backend = Backend(
        kind="databricks", host=scim_host, token="dapi-test", tracking_uri="databricks", registry_uri="databricks-uc"
    )
    _Scim.paths.clear()
    assert backend.experiment() == "/Users/ada@example.com/llmops-nb"
    assert ME in _Scim.paths  # asked the workspace through databricks-sdk's current_user.me()
    assert backend.experiment("/Shared/team") == "/Shared/team"
    local = Backend(kind="local", host=None, token=None, tracking_uri="sqlite:///x.db", registry_uri="sqlite:///x.db")
    assert local.experiment() == "llmops-nb"


def test_the_project_config_takes_an_experiment_and_checks_it_for_databricks() -> None:
    endpoint = {"name": "chat", "served_entities": [{"entity_name": "main.default.m", "entity_version": "1"}]}
    base = {"backend": "databricks", "model": {"name": "main.default.m"}, "endpoint": endpoint}
    assert ProjectConfig.model_validate({**base, "experiment": "/Shared/x"}).experiment == "/Shared/x"
    assert ProjectConfig.model_validate(base).experiment is None
    with pytest.raises(ConfigError, match=r"^experiment: 'x' is not allowed; Databricks takes an absolute"):
        ProjectConfig.model_validate({**base, "experiment": "x"})


def test_register_and_evaluate_refuse_a_relative_name_on_databricks_before_anything(fake_workspace) -> None:  # noqa: ANN001
    from llmops_nb.evaluation.orchestrate import evaluate_endpoint
    from llmops_nb.models.registry import register_model

    with pytest.raises(ConfigError, match="^experiment: 'llmops-nb'"):
        register_model("main.default.m", experiment="llmops-nb", tracking_uri="databricks", registry_uri="databricks-uc")
    rows = [{"inputs": {"question": "hi"}, "expectations": {"expected_response": "hi"}}]
    with pytest.raises(ConfigError, match="^experiment: 'runs'"):
        evaluate_endpoint(fake_workspace.client(), "chat", rows, tracking_uri="databricks", experiment="runs", progress=False)
    assert fake_workspace.requests() == []  # no chat request was sent
