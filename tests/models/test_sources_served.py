"""Model sources served (issue 28): `llmops-nb run -c <config with source: gguf>` serves that file, and
a models-from-code source answers over HTTP, both on the local workspace with real MLflow serving."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from llmops_nb.workspace import launcher
from tests.models.conftest import ECHO_MODEL

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:  # noqa: ANN001
    """A project folder of its own (configs/, mlflow.db, .llmops/); its workspace stopped after."""
    folder = tmp_path_factory.mktemp("byom")
    (folder / "configs").mkdir()
    (folder / "configs" / "local.yml").write_text((ROOT / "configs" / "local.yml").read_text())
    try:
        yield folder
    finally:
        launcher.stop(folder / ".llmops")


def _env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(LLMOPS_PROJECT_DIR=str(project), PYTHONUNBUFFERED="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from llmops_nb.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=_env(project), cwd=project, timeout=1200, check=False)


def _config(project: Path, name: str, model: dict, endpoint: str) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "local.yml").read_text())
    config["model"] = {"name": name, "max_tokens": 8, "temperature": 0.0, **model}
    config["endpoint"]["name"] = endpoint
    config["endpoint"]["served_entities"][0]["entity_name"] = name
    path = project / "configs" / f"{endpoint}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _ask(project: Path, endpoint: str, text: str) -> dict:
    info = launcher.status(project / ".llmops")
    assert info is not None
    answer = requests.post(
        f"{info.host}/serving-endpoints/{endpoint}/invocations",
        json={"messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0.0},
        headers={"Authorization": f"Bearer {info.token}"},
        timeout=300,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_run_with_a_gguf_source_serves_that_file(project: Path, other_gguf: Path) -> None:
    from mlflow import MlflowClient

    config = _config(project, "other-llm", {"source": "gguf", "path": str(other_gguf)}, "other-chat")
    done = _cli(project, "run", "-c", str(config), "--steps", "register,deploy,serve")
    assert done.returncode == 0, done.stderr[-3000:]
    answer = _ask(project, "other-chat", "Say hello.")
    assert answer["model"] == "other-llm.Q4_0"  # the file's stem: this file answers, not the bundled one
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    (version,) = client.search_model_versions("name = 'other-llm'")
    run = client.get_run(version.run_id)
    assert run.data.tags["llmops_nb.source_sha256"] == hashlib.sha256(other_gguf.read_bytes()).hexdigest()


def test_a_code_source_is_registered_deployed_and_answers_over_http(project: Path) -> None:
    code = project / "echo_model.py"
    code.write_text(ECHO_MODEL)
    config = _config(project, "echo-llm", {"source": "code", "path": "echo_model.py"}, "echo-chat")  # relative: the project's
    done = _cli(project, "run", "-c", str(config), "--steps", "register,deploy")
    assert done.returncode == 0, done.stderr[-3000:]
    answer = _ask(project, "echo-chat", "hi there")
    assert answer["choices"][0]["message"]["content"] == "echo: hi there"
